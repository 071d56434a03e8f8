"""Settings read from the environment: defaults, secrets (files, development values, rotation), and errors that
name the variable, never the secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.shared.settings import (
    DEVELOPMENT_SECRETS,
    MIN_SECRET_BYTES,
    Env,
    PlatformSettings,
    SettingsError,
    StorageSettings,
    TokenPair,
)

STRONG = "a-strong-secret-0123456789abcdef-xyz"
S3 = {"S3_ACCESS_KEY": "platform-0123", "S3_SECRET_KEY": STRONG}


def test_storage_and_temporal_defaults() -> None:
    settings = PlatformSettings.from_env(Env(S3))
    assert (settings.temporal.address, settings.temporal.namespace) == ("127.0.0.1:7233", "default")
    assert (settings.storage.endpoint, settings.storage.bucket, settings.storage.secure) == (
        "127.0.0.1:9000",
        "task-results",
        False,
    )
    assert settings.storage.public_endpoint == "127.0.0.1:9000"
    assert STRONG not in repr(settings)


@pytest.mark.parametrize("value", sorted(DEVELOPMENT_SECRETS))
def test_a_published_development_secret_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="S3_SECRET_KEY is a published development value") as refused:
        StorageSettings.from_env(Env({**S3, "S3_SECRET_KEY": value}))
    assert value not in str(refused.value)


@pytest.mark.parametrize("value", ["", "tiny", "x" * (MIN_SECRET_BYTES - 1)])
def test_an_empty_or_short_secret_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="S3_SECRET_KEY") as refused:
        StorageSettings.from_env(Env({**S3, "S3_SECRET_KEY": value}))
    assert not value or value not in str(refused.value)


def test_the_access_key_may_be_short_but_not_a_published_default() -> None:
    assert StorageSettings.from_env(Env({**S3, "S3_ACCESS_KEY": "ab"})).access_key == "ab"
    with pytest.raises(SettingsError, match="S3_ACCESS_KEY is a published development value"):
        StorageSettings.from_env(Env({**S3, "S3_ACCESS_KEY": "minioadmin"}))


def test_development_mode_accepts_development_and_short_secrets() -> None:
    env = Env({"DEVELOPMENT_MODE": "true", "S3_ACCESS_KEY": "minioadmin", "S3_SECRET_KEY": "minioadmin"})
    assert StorageSettings.from_env(env).secret_key == "minioadmin"
    assert Env({"DEVELOPMENT_MODE": "true"}).secret("X", default="sim-ark-key") == "sim-ark-key"
    with pytest.raises(SettingsError, match="X is a published development value"):
        Env({}).secret("X", default="sim-ark-key")


def test_a_secret_comes_from_its_file(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(STRONG + "\n")
    settings = StorageSettings.from_env(Env({"S3_ACCESS_KEY": "a", "S3_SECRET_KEY_FILE": str(tmp_path / "key")}))
    assert settings.secret_key == STRONG
    (tmp_path / "short").write_text("short")
    with pytest.raises(SettingsError, match="S3_SECRET_KEY is shorter than 32 bytes"):
        StorageSettings.from_env(Env({"S3_ACCESS_KEY": "a", "S3_SECRET_KEY_FILE": str(tmp_path / "short")}))
    with pytest.raises(SettingsError, match="S3_SECRET_KEY \\(or S3_SECRET_KEY_FILE\\) is required"):
        StorageSettings.from_env(Env({"S3_ACCESS_KEY": "a", "S3_SECRET_KEY_FILE": str(tmp_path / "missing")}))


def test_a_token_pair_accepts_the_current_and_the_previous_value_only() -> None:
    pair = Env({"T": STRONG, "T_PREVIOUS": STRONG.upper()}).token_pair("T")
    assert pair.accepts(STRONG) and pair.accepts(STRONG.upper())
    assert not pair.accepts(STRONG[:-1]) and not pair.accepts("") and not pair.accepts("wr\u00f6ng")
    assert not TokenPair(STRONG).accepts(STRONG.upper())
    assert STRONG not in repr(pair)
    with pytest.raises(SettingsError, match="T_PREVIOUS is shorter"):
        Env({"T": STRONG, "T_PREVIOUS": "old"}).token_pair("T")

"""Settings read from the environment: defaults, secrets (files, development values, rotation), and errors that
name the variable, never the secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.shared.manifest import ProviderDeclaration
from services.shared.settings import (
    DEVELOPMENT_MODE,
    DEVELOPMENT_SECRETS,
    MIN_SECRET_BYTES,
    PROVIDER_SIMULATOR_URL,
    Env,
    PlatformSettings,
    ProviderEndpoint,
    SettingsError,
    StorageSettings,
    TokenPair,
    simulator_api_key,
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


ACME = ProviderDeclaration(
    api_key_env="ACME_API_KEY", base_url_env="ACME_BASE_URL", base_url="https://api.acme.example", simulator="acme"
)


def test_a_provider_endpoint_is_the_manifests_provider_with_the_key_from_the_environment(tmp_path: Path) -> None:
    assert ProviderEndpoint.from_env(Env({"ACME_API_KEY": "sk-1"}), ACME) == ProviderEndpoint(
        "https://api.acme.example", "sk-1"
    )
    overridden = ProviderEndpoint.from_env(Env({"ACME_API_KEY": "sk-1", "ACME_BASE_URL": "https://eu.acme/"}), ACME)
    assert (overridden.base_url, overridden.simulated) == ("https://eu.acme", False)
    key_file = tmp_path / "acme_key"
    key_file.write_text("sk-from-a-file\n")
    assert ProviderEndpoint.from_env(Env({"ACME_API_KEY_FILE": str(key_file)}), ACME).api_key == "sk-from-a-file"
    assert "sk-1" not in repr(overridden)
    # A manifest without the provider's own URL needs the variable.
    unknown = ProviderDeclaration(api_key_env="ACME_API_KEY", base_url_env="ACME_BASE_URL")
    with pytest.raises(SettingsError, match="ACME_BASE_URL is required"):
        ProviderEndpoint.from_env(Env({"ACME_API_KEY": "sk-1"}), unknown)


def test_without_a_key_only_an_explicit_simulator_url_stands_in() -> None:
    for environ in ({}, {"ACME_BASE_URL": "http://127.0.0.1:8002"}, {DEVELOPMENT_MODE: "true"}):
        with pytest.raises(SettingsError, match=r"ACME_API_KEY \(or ACME_API_KEY_FILE\) is required") as refused:
            ProviderEndpoint.from_env(Env(environ), ACME)
        assert PROVIDER_SIMULATOR_URL in str(refused.value)
    simulated = ProviderEndpoint.from_env(Env({PROVIDER_SIMULATOR_URL: "http://simulator:8002/"}), ACME)
    assert simulated == ProviderEndpoint("http://simulator:8002", simulator_api_key("acme"), simulated=True)
    # A key wins over the simulator.
    keyed = ProviderEndpoint.from_env(Env({PROVIDER_SIMULATOR_URL: "http://simulator:8002", "ACME_API_KEY": "k"}), ACME)
    assert (keyed.base_url, keyed.simulated) == ("https://api.acme.example", False)
    # A provider no stand-in serves cannot be simulated.
    alone = ProviderDeclaration(api_key_env="ACME_API_KEY", base_url_env="ACME_BASE_URL", base_url="https://a.example")
    with pytest.raises(SettingsError, match="no simulator stand-in serves this provider"):
        ProviderEndpoint.from_env(Env({PROVIDER_SIMULATOR_URL: "http://simulator:8002"}), alone)


def test_the_simulators_published_key_is_no_provider_key_outside_development_mode() -> None:
    published = {"ACME_API_KEY": simulator_api_key("ark")}
    assert published["ACME_API_KEY"] in DEVELOPMENT_SECRETS
    with pytest.raises(SettingsError, match="ACME_API_KEY is a published development value"):
        ProviderEndpoint.from_env(Env(published), ACME)
    assert ProviderEndpoint.from_env(Env({**published, DEVELOPMENT_MODE: "true"}), ACME).api_key == "sim-ark-key"

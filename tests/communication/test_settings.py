"""Settings come from the environment once, with errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.communication.settings import CommunicationSettings
from services.shared.settings import SettingsError

PUBLISH_TOKEN = "publish-token-0123456789abcdef0123"
REALTIME_SECRET = "realtime-secret-0123456789abcdef01"
REQUIRED = {"PUBLISH_TOKEN": PUBLISH_TOKEN, "REALTIME_SECRET": REALTIME_SECRET}


def test_defaults() -> None:
    settings = CommunicationSettings.from_env(REQUIRED)

    assert (settings.host, settings.port, settings.internal_port) == ("127.0.0.1", 8001, 8011)
    assert settings.queue_size == 256
    assert (settings.ping_interval, settings.ping_timeout) == (20.0, 20.0)
    assert settings.per_message_deflate is False
    assert settings.close_on_token_expiry is True
    assert settings.max_sockets_per_user == 16
    assert (settings.limits.header_timeout_seconds, settings.limits.body_timeout_seconds) == (10.0, 30.0)


def test_tunables_are_read() -> None:
    settings = CommunicationSettings.from_env(
        {
            **REQUIRED,
            "COMMUNICATION_HOST": "0.0.0.0",
            "COMMUNICATION_PORT": "9001",
            "COMMUNICATION_INTERNAL_PORT": "9011",
            "COMMUNICATION_QUEUE_SIZE": "8",
            "COMMUNICATION_PING_INTERVAL": "0",
            "COMMUNICATION_PING_TIMEOUT": "2.5",
            "COMMUNICATION_CLOSE_ON_TOKEN_EXPIRY": "false",
            "COMMUNICATION_MAX_SOCKETS_PER_USER": "3",
            "COMMUNICATION_HEADER_TIMEOUT_SECONDS": "2",
        }
    )

    assert (settings.host, settings.port, settings.internal_port, settings.queue_size) == ("0.0.0.0", 9001, 9011, 8)
    assert (settings.ping_interval, settings.ping_timeout) == (0.0, 2.5)
    assert settings.close_on_token_expiry is False
    assert settings.max_sockets_per_user == 3
    config = settings.get_uvicorn_config(app=lambda *_: None)  # type: ignore[arg-type]
    assert config.ws_ping_interval is None
    assert config.ws_ping_timeout == 2.5
    assert config.limits.header_timeout_seconds == 2.0


@pytest.mark.parametrize("missing", ["PUBLISH_TOKEN", "REALTIME_SECRET"])
def test_secrets_are_required(missing: str) -> None:
    with pytest.raises(SettingsError, match=missing):
        CommunicationSettings.from_env({k: v for k, v in REQUIRED.items() if k != missing})


def test_secrets_can_come_from_files_and_the_previous_token_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "publish").write_text(PUBLISH_TOKEN + "\n")
    (tmp_path / "previous").write_text("previous-token-0123456789abcdef0123")
    files = {"PUBLISH_TOKEN_FILE": str(tmp_path / "publish"), "REALTIME_SECRET": REALTIME_SECRET}
    settings = CommunicationSettings.from_env({**files, "PUBLISH_TOKEN_PREVIOUS_FILE": str(tmp_path / "previous")})
    assert settings.publish_tokens.accepts(PUBLISH_TOKEN)
    assert settings.publish_tokens.accepts("previous-token-0123456789abcdef0123")
    assert not settings.publish_tokens.accepts("previous-token-0123456789abcdef012")
    # A previous token's file that does not exist (no rotation under way) means no previous token.
    settings = CommunicationSettings.from_env({**files, "PUBLISH_TOKEN_PREVIOUS_FILE": str(tmp_path / "none")})
    assert settings.publish_tokens.previous is None
    with pytest.raises(SettingsError, match="set REALTIME_SECRET or REALTIME_SECRET_FILE, not both"):
        CommunicationSettings.from_env({**files, "REALTIME_SECRET_FILE": str(tmp_path / "publish")})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("COMMUNICATION_QUEUE_SIZE", "0"),
        ("COMMUNICATION_QUEUE_SIZE", "many"),
        ("COMMUNICATION_PORT", "70000"),
        ("COMMUNICATION_INTERNAL_PORT", "8001"),
        ("COMMUNICATION_PING_TIMEOUT", "0"),
        ("COMMUNICATION_PING_INTERVAL", "-1"),
        ("COMMUNICATION_LOG_LEVEL", "loud"),
        ("COMMUNICATION_MAX_SOCKETS_PER_USER", "0"),
        ("COMMUNICATION_BODY_TIMEOUT_SECONDS", "0"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        CommunicationSettings.from_env({**REQUIRED, name: value})


def test_repr_hides_the_secrets() -> None:
    text = repr(CommunicationSettings.from_env(REQUIRED))

    assert PUBLISH_TOKEN not in text
    assert REALTIME_SECRET not in text

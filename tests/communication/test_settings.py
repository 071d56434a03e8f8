"""Settings come from the environment once, with errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.communication.settings import CommunicationSettings
from services.shared.settings import SettingsError

NATS_PASSWORD = "nats-password-0123456789abcdef0123"
REALTIME_SECRET = "realtime-secret-0123456789abcdef01"
REQUIRED = {"NATS_COMMUNICATION_PASSWORD": NATS_PASSWORD, "REALTIME_SECRET": REALTIME_SECRET}


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


@pytest.mark.parametrize("missing", ["NATS_COMMUNICATION_PASSWORD", "REALTIME_SECRET"])
def test_secrets_are_required(missing: str) -> None:
    with pytest.raises(SettingsError, match=missing):
        CommunicationSettings.from_env({k: v for k, v in REQUIRED.items() if k != missing})


def test_secrets_can_come_from_files(tmp_path: Path) -> None:
    (tmp_path / "nats").write_text(NATS_PASSWORD + "\n")
    files = {"NATS_COMMUNICATION_PASSWORD_FILE": str(tmp_path / "nats"), "REALTIME_SECRET": REALTIME_SECRET}
    settings = CommunicationSettings.from_env(files)
    assert (settings.events.user, settings.events.password) == ("communication", NATS_PASSWORD)
    with pytest.raises(SettingsError, match="set REALTIME_SECRET or REALTIME_SECRET_FILE, not both"):
        CommunicationSettings.from_env({**files, "REALTIME_SECRET_FILE": str(tmp_path / "nats")})


def test_the_nats_url_carries_no_credentials() -> None:
    with pytest.raises(
        SettingsError, match="NATS_URL must not carry credentials: the password is NATS_COMMUNICATION_PASSWORD"
    ):
        CommunicationSettings.from_env({**REQUIRED, "NATS_URL": "nats://communication:nats-secret@nats:4222"})


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
        ("COMMUNICATION_RESUME_MAX_EVENTS", "0"),
        ("NATS_URL", "http://127.0.0.1:4222"),
        ("EVENTS_MAX_AGE_SECONDS", "0"),
        ("COMMUNICATION_MAX_SOCKETS_PER_USER", "0"),
        ("COMMUNICATION_BODY_TIMEOUT_SECONDS", "0"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        CommunicationSettings.from_env({**REQUIRED, name: value})


def test_repr_hides_the_secrets() -> None:
    text = repr(CommunicationSettings.from_env(REQUIRED))

    assert NATS_PASSWORD not in text
    assert REALTIME_SECRET not in text

"""Settings come from the environment once, with errors that name the variable."""

from __future__ import annotations

import pytest

from services.communication.settings import CommunicationSettings
from services.shared.settings import SettingsError

REQUIRED = {"REALTIME_SECRET": "realtime-secret"}


def test_defaults() -> None:
    settings = CommunicationSettings.from_env(REQUIRED)

    assert (settings.host, settings.port) == ("127.0.0.1", 8001)
    assert settings.queue_size == 256
    assert (settings.ping_interval, settings.ping_timeout) == (20.0, 20.0)
    assert settings.per_message_deflate is False
    assert settings.close_on_token_expiry is False


def test_tunables_are_read() -> None:
    settings = CommunicationSettings.from_env(
        {
            **REQUIRED,
            "COMMUNICATION_HOST": "0.0.0.0",
            "COMMUNICATION_PORT": "9001",
            "COMMUNICATION_QUEUE_SIZE": "8",
            "COMMUNICATION_PING_INTERVAL": "0",
            "COMMUNICATION_PING_TIMEOUT": "2.5",
            "COMMUNICATION_CLOSE_ON_TOKEN_EXPIRY": "true",
        }
    )

    assert (settings.host, settings.port, settings.queue_size) == ("0.0.0.0", 9001, 8)
    assert (settings.ping_interval, settings.ping_timeout) == (0.0, 2.5)
    assert settings.close_on_token_expiry is True
    config = settings.get_uvicorn_config(app=lambda *_: None)  # type: ignore[arg-type]
    assert config.ws_ping_interval is None
    assert config.ws_ping_timeout == 2.5


@pytest.mark.parametrize("missing", ["REALTIME_SECRET"])
def test_secrets_are_required(missing: str) -> None:
    with pytest.raises(SettingsError, match=missing):
        CommunicationSettings.from_env({k: v for k, v in REQUIRED.items() if k != missing})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("COMMUNICATION_QUEUE_SIZE", "0"),
        ("COMMUNICATION_QUEUE_SIZE", "many"),
        ("COMMUNICATION_PORT", "70000"),
        ("COMMUNICATION_PING_TIMEOUT", "0"),
        ("COMMUNICATION_PING_INTERVAL", "-1"),
        ("COMMUNICATION_LOG_LEVEL", "loud"),
        ("COMMUNICATION_RESUME_MAX_EVENTS", "0"),
        ("NATS_URL", "http://127.0.0.1:4222"),
        ("EVENTS_MAX_AGE_SECONDS", "0"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        CommunicationSettings.from_env({**REQUIRED, name: value})


def test_repr_hides_the_secrets() -> None:
    text = repr(CommunicationSettings.from_env({**REQUIRED, "NATS_URL": "nats://communication:nats-secret@nats:4222"}))

    assert "nats-secret" not in text
    assert "realtime-secret" not in text

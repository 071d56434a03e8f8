"""main's settings: the store's password and the event stream's credential are secrets, never part of a URL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from services.main.settings import MainSettings
from services.shared.settings import SettingsError

PASSWORD = "postgres-password-0123456789abcdef"
REQUIRED = {
    "API_KEYS": "user-key-0123456789abcdef0123456789:alice",
    "REALTIME_SECRET": "realtime-secret-0123456789abcdef0123",
    "REPORT_TOKEN": "report-token-0123456789abcdef012345",
    "NATS_MAIN_PASSWORD": "nats-main-0123456789abcdef0123456789",
    "CALLBACK_KEY": "callback-key-0123456789abcdef012345",
    "S3_ACCESS_KEY": "platform-0123456789",
    "S3_SECRET_KEY": "s3-secret-0123456789abcdef0123456789",
}
POSTGRES = "postgresql+asyncpg://postgres@db:5432/main"


def test_the_store_password_comes_from_its_secret(tmp_path: Path) -> None:
    (tmp_path / "password").write_text(PASSWORD + "\n")
    settings = MainSettings.from_env(
        {**REQUIRED, "DATABASE_URL": POSTGRES, "POSTGRES_PASSWORD_FILE": str(tmp_path / "password")}
    )
    url = make_url(settings.database_url)
    assert (url.username, url.password, url.host, url.database) == ("postgres", PASSWORD, "db", "main")
    assert PASSWORD not in repr(settings)
    # Without the secret (SQLite, or a URL that carries its own password) the URL is used as it is.
    assert MainSettings.from_env(REQUIRED).database_url == MainSettings.database_url


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"POSTGRES_PASSWORD": PASSWORD}, "POSTGRES_PASSWORD is set but DATABASE_URL is not a postgresql:// URL"),
        ({"DATABASE_URL": POSTGRES, "POSTGRES_PASSWORD": "short"}, "POSTGRES_PASSWORD is shorter than 32 bytes"),
        ({"DATABASE_URL": "postgresql+asyncpg://postgres:weak@db/main"}, r"DATABASE_URL \(its password\) is shorter"),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL is not a database URL"),
        ({"NATS_URL": "nats://main:secret@nats:4222"}, "NATS_URL must not carry credentials"),
        ({"NATS_MAIN_PASSWORD": ""}, r"NATS_MAIN_PASSWORD \(or NATS_MAIN_PASSWORD_FILE\) is required"),
        ({"MAIN_RECONCILE_INTERVAL_SECONDS": "0"}, "MAIN_RECONCILE_INTERVAL_SECONDS must be positive"),
        ({"MAIN_START_TIMEOUT_SECONDS": "-1"}, "MAIN_START_TIMEOUT_SECONDS must be positive"),
        ({"MAIN_START_ATTEMPTS": "0"}, "MAIN_START_ATTEMPTS"),
        ({"MAIN_RETENTION_DAYS": "-1"}, r"MAIN_RETENTION_DAYS must be 0 \(keep forever\) or positive"),
        ({"MAIN_RETENTION_DAYS": "a week"}, "MAIN_RETENTION_DAYS must be a number"),
        ({"MAIN_RETENTION_INTERVAL_SECONDS": "0"}, "MAIN_RETENTION_INTERVAL_SECONDS must be positive"),
    ],
    ids=[
        "password-for-sqlite",
        "short-password",
        "weak-password-in-url",
        "not-a-url",
        "nats-url-userinfo",
        "nats",
        "reconcile-interval",
        "start-timeout",
        "start-attempts",
        "negative-retention",
        "retention-not-a-number",
        "retention-interval",
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        MainSettings.from_env({**REQUIRED, **env})


def test_retention_is_in_days_fractions_allowed_and_0_keeps_everything() -> None:
    assert MainSettings.from_env(REQUIRED).retention == timedelta(days=7)
    assert MainSettings.from_env({**REQUIRED, "MAIN_RETENTION_DAYS": "0.5"}).retention == timedelta(hours=12)
    assert MainSettings.from_env({**REQUIRED, "MAIN_RETENTION_DAYS": "0"}).retention is None

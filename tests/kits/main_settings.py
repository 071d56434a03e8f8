"""main's settings for the kits' tests that serve main's real app in the test's process."""

from __future__ import annotations

from pathlib import Path

from services.main.settings import MainSettings

CALLBACK_KEY = "callback-key-of-this-test"


def kit_main_settings(temporal_address: str, folder: Path, **overrides: str) -> MainSettings:
    """Alice and bob with their keys, a SQLite database in ``folder``; ``overrides``: more variables."""
    return MainSettings.from_env(
        {
            "TEMPORAL_ADDRESS": temporal_address,
            "DEVELOPMENT_MODE": "true",
            "S3_ACCESS_KEY": "access",
            "S3_SECRET_KEY": "secret",
            "REPORT_TOKEN": "report-token",
            "NATS_MAIN_PASSWORD": "nats-password",
            "CALLBACK_KEY": CALLBACK_KEY,
            "API_KEYS": "alice-key:alice,bob-key:bob",
            "REALTIME_SECRET": "realtime-secret",
            "DATABASE_URL": f"sqlite+aiosqlite:///{folder}/main.db",
            "MAIN_PUBLIC_URL": "http://main.test",
            # Nothing listens there: main's events stay in its outbox, which these tests do not look at.
            "NATS_URL": "nats://127.0.0.1:9",
            **overrides,
        }
    )

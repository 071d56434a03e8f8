from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.shared.discovery import parse_blacklist
from services.shared.settings import Env, PlatformSettings, SettingsError


def parse_api_keys(raw: str) -> dict[str, str]:
    """``API_KEYS``: ``key:user,key2:user2``."""
    keys: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        key, sep, user = item.partition(":")
        if not sep or not key or not user:
            raise SettingsError("API_KEYS must look like 'key:user,key2:user2'")
        keys[key] = user
    return keys


@dataclass(frozen=True)
class MainSettings:
    platform: PlatformSettings
    host: str
    port: int
    database_url: str
    api_keys: dict[str, str]
    realtime_secret: str
    realtime_ttl_seconds: int
    # How providers reach main for callbacks (MAIN_PUBLIC_URL, default MAIN_URL).
    public_url: str
    # What clients are told to connect their websocket to.
    realtime_public_url: str
    blacklist: tuple[str, ...]
    # Bound on how long a read waits for Temporal when it syncs a non-terminal task.
    sync_timeout_seconds: float
    publish_attempts: int
    # At most one publish request to communication per interval; events in between share it.
    publish_interval_seconds: float
    # One log line per HTTP request (uvicorn's access log); off by default, as workers report often.
    access_log: bool
    # uvicorn worker processes serving main; with SQLite they share the database file.
    workers: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MainSettings:
        env = Env(environ)
        platform = PlatformSettings.from_env(environ)
        port = env.get_int("MAIN_PORT", 8000)
        return cls(
            platform=platform,
            host=env.get("MAIN_HOST", "127.0.0.1"),
            port=port,
            database_url=env.get("DATABASE_URL", "sqlite+aiosqlite:///.data/main.db"),
            api_keys=parse_api_keys(env.get("API_KEYS")),
            public_url=env.get("MAIN_PUBLIC_URL", platform.main_url).rstrip("/"),
            realtime_secret=env.get("REALTIME_SECRET"),
            realtime_ttl_seconds=env.get_int("REALTIME_TOKEN_TTL_SECONDS", 300),
            realtime_public_url=env.get(
                "REALTIME_PUBLIC_URL", platform.communication_url.replace("http", "ws", 1) + "/ws"
            ),
            blacklist=parse_blacklist(env.raw("INTEGRATIONS_BLACKLIST")),
            sync_timeout_seconds=env.get_float("MAIN_SYNC_TIMEOUT_SECONDS", 3.0),
            publish_attempts=env.get_int("MAIN_PUBLISH_ATTEMPTS", 3),
            publish_interval_seconds=env.get_int("MAIN_PUBLISH_INTERVAL_MS", 5) / 1000,
            access_log=env.get_bool("MAIN_ACCESS_LOG", False),
            workers=env.get_int("MAIN_WORKERS", 1),
        )

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise SettingsError(f"MAIN_WORKERS must be at least 1, got {self.workers}")
        if self.publish_interval_seconds < 0:
            raise SettingsError("MAIN_PUBLISH_INTERVAL_MS must not be negative")

    def __repr__(self) -> str:
        return f"MainSettings(host={self.host!r}, port={self.port}, users={sorted(set(self.api_keys.values()))})"

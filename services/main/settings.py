from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.shared.discovery import parse_blacklist
from services.shared.settings import Env, EventStreamSettings, PlatformSettings, SettingsError


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
    events: EventStreamSettings
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
    # Events the outbox relay publishes per round.
    relay_batch_size: int
    # How often the relay looks for events without being told of a commit: those committed by another main process
    # that died before relaying them.
    relay_poll_seconds: float
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
            events=EventStreamSettings.from_env(env),
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
            relay_batch_size=env.get_int("MAIN_RELAY_BATCH_SIZE", 500),
            relay_poll_seconds=env.get_int("MAIN_RELAY_POLL_MS", 500) / 1000,
            access_log=env.get_bool("MAIN_ACCESS_LOG", False),
            workers=env.get_int("MAIN_WORKERS", 1),
        )

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise SettingsError(f"MAIN_WORKERS must be at least 1, got {self.workers}")
        if self.relay_batch_size < 1:
            raise SettingsError(f"MAIN_RELAY_BATCH_SIZE must be at least 1, got {self.relay_batch_size}")
        if self.relay_poll_seconds <= 0:
            raise SettingsError("MAIN_RELAY_POLL_MS must be positive")

    def __repr__(self) -> str:
        return f"MainSettings(host={self.host!r}, port={self.port}, users={sorted(set(self.api_keys.values()))})"

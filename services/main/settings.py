from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from services.shared.discovery import parse_blacklist
from services.shared.settings import Env, PlatformSettings, ServerLimits, SettingsError, TokenPair
from services.shared.tasks import HIGHEST_PRIORITY, LOWEST_PRIORITY


def parse_api_keys(raw: str, env: Env) -> dict[str, str]:
    """``API_KEYS``: ``key:user,key2:user2``; each key is a secret (see ``Env.check_secret``)."""
    keys: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        key, sep, user = item.partition(":")
        if not sep or not key or not user:
            raise SettingsError("API_KEYS must look like 'key:user,key2:user2'")
        env.check_secret("API_KEYS", key, f"the key of user {user}")
        keys[key] = user
    return keys


def _priority(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}: a priority must be an integer, got {raw!r}") from exc
    if not HIGHEST_PRIORITY <= value <= LOWEST_PRIORITY:
        raise SettingsError(f"{name}: a priority is {HIGHEST_PRIORITY} to {LOWEST_PRIORITY}, got {value}")
    return value


def parse_user_priorities(raw: str) -> dict[str, int]:
    """``MAIN_USER_HIGHEST_PRIORITY``: ``user:1,user2:4``."""
    found: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        user, sep, value = item.rpartition(":")
        if not sep or not user:
            raise SettingsError("MAIN_USER_HIGHEST_PRIORITY must look like 'user:1,user2:4'")
        found[user] = _priority("MAIN_USER_HIGHEST_PRIORITY", value)
    return found


@dataclass(frozen=True)
class MainSettings:
    platform: PlatformSettings
    api_keys: dict[str, str] = field(repr=False)
    realtime_secret: str = field(repr=False)
    # Workers -> main: what the report API accepts.
    report_tokens: TokenPair
    # main -> communication: what main presents when it publishes.
    publish_token: str = field(repr=False)
    host: str = "127.0.0.1"
    # The public listener (users) and the internal one (the report API, for the workers only).
    port: int = 8000
    internal_port: int = 8010
    # communication's internal listener, where events are published.
    communication_internal_url: str = "http://127.0.0.1:8011"
    database_url: str = "sqlite+aiosqlite:///.data/main.db"
    # How providers reach main for callbacks. Empty: http://127.0.0.1:<port>.
    public_url: str = ""
    # What clients are told to connect their websocket to.
    realtime_public_url: str = "ws://127.0.0.1:8001/ws"
    realtime_ttl_seconds: int = 300
    blacklist: tuple[str, ...] = ()
    # Bound on how long a read waits for Temporal when it syncs a non-terminal task.
    sync_timeout_seconds: float = 3.0
    publish_attempts: int = 3
    # At most one publish request to communication per interval; events in between share it.
    publish_interval_ms: int = 5
    # One log line per HTTP request (uvicorn's access log); off by default, as workers report often.
    access_log: bool = False
    # uvicorn worker processes serving main; with SQLite they share the database file.
    workers: int = 1
    limits: ServerLimits = field(default_factory=ServerLimits)
    # Request bodies: any route without a limit of its own, the report API, and the ceiling of a create route's
    # limit (which is derived from the integration's request schema).
    max_body_bytes: int = 64 * 1024
    max_report_bytes: int = 1024 * 1024
    max_create_body_bytes: int = 4 * 1024 * 1024
    # The most urgent priority a user may give a task (1 runs first); beyond it a create is refused (403).
    highest_priority: int = HIGHEST_PRIORITY
    # Users allowed another one than highest_priority.
    user_highest_priority: dict[str, int] = field(default_factory=dict[str, int])

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MainSettings:
        env = Env(environ)
        port = env.get_int("MAIN_PORT", cls.port)
        return cls(
            platform=PlatformSettings.from_env(env),
            api_keys=parse_api_keys(env.required("API_KEYS"), env),
            realtime_secret=env.secret("REALTIME_SECRET"),
            report_tokens=env.token_pair("REPORT_TOKEN"),
            publish_token=env.secret("PUBLISH_TOKEN"),
            host=env.get("MAIN_HOST", cls.host),
            port=port,
            internal_port=env.get_int("MAIN_INTERNAL_PORT", cls.internal_port),
            communication_internal_url=env.get_http_url("COMMUNICATION_INTERNAL_URL", cls.communication_internal_url),
            database_url=env.get("DATABASE_URL", cls.database_url),
            public_url=env.get_http_url("MAIN_PUBLIC_URL", cls.public_url or f"http://127.0.0.1:{port}"),
            realtime_public_url=env.get("REALTIME_PUBLIC_URL", cls.realtime_public_url),
            realtime_ttl_seconds=env.get_int("REALTIME_TOKEN_TTL_SECONDS", cls.realtime_ttl_seconds),
            blacklist=parse_blacklist(env.raw("INTEGRATIONS_BLACKLIST")),
            sync_timeout_seconds=env.get_float("MAIN_SYNC_TIMEOUT_SECONDS", cls.sync_timeout_seconds),
            publish_attempts=env.get_int("MAIN_PUBLISH_ATTEMPTS", cls.publish_attempts),
            publish_interval_ms=env.get_int("MAIN_PUBLISH_INTERVAL_MS", cls.publish_interval_ms, minimum=0),
            access_log=env.get_bool("MAIN_ACCESS_LOG", cls.access_log),
            workers=env.get_int("MAIN_WORKERS", cls.workers, minimum=1),
            limits=ServerLimits.from_env(env, "MAIN"),
            max_body_bytes=env.get_int("MAIN_MAX_BODY_BYTES", cls.max_body_bytes, minimum=1),
            max_report_bytes=env.get_int("MAIN_MAX_REPORT_BYTES", cls.max_report_bytes, minimum=1),
            max_create_body_bytes=env.get_int("MAIN_MAX_CREATE_BODY_BYTES", cls.max_create_body_bytes, minimum=1),
            highest_priority=_priority(
                "MAIN_HIGHEST_PRIORITY", env.get("MAIN_HIGHEST_PRIORITY", str(cls.highest_priority))
            ),
            user_highest_priority=parse_user_priorities(env.raw("MAIN_USER_HIGHEST_PRIORITY") or ""),
        )

    def highest_priority_for(self, user: str) -> int:
        return self.user_highest_priority.get(user, self.highest_priority)

    def __post_init__(self) -> None:
        if self.internal_port == self.port:
            raise SettingsError(f"MAIN_INTERNAL_PORT must differ from MAIN_PORT ({self.port})")

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from services.shared.discovery import parse_blacklist
from services.shared.event_stream import PUBLISHER
from services.shared.outbound import OutboundRules
from services.shared.settings import Env, EventStreamSettings, PlatformSettings, ServerLimits, SettingsError, TokenPair
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


def _int_within(name: str, raw: str, lowest: int, highest: int | None = None) -> int:
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}: must be an integer, got {raw!r}") from exc
    if value < lowest or (highest is not None and value > highest):
        bounds = f"{lowest} to {highest}" if highest is not None else f"at least {lowest}"
        raise SettingsError(f"{name}: must be {bounds}, got {value}")
    return value


def _priority(name: str, raw: str) -> int:
    return _int_within(name, raw, HIGHEST_PRIORITY, LOWEST_PRIORITY)


def _positive(name: str, raw: str) -> int:
    return _int_within(name, raw, 1)


def parse_per_user(name: str, raw: str, value_of: Callable[[str, str], int]) -> dict[str, int]:
    """A per-user override such as ``MAIN_USER_HIGHEST_PRIORITY``: ``user:1,user2:4``."""
    found: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        user, sep, value = item.rpartition(":")
        if not sep or not user:
            raise SettingsError(f"{name} must look like 'user:1,user2:4'")
        found[user] = value_of(name, value)
    return found


def database_url(env: Env, default: str) -> str:
    """``DATABASE_URL`` with the password of its user from the secret ``POSTGRES_PASSWORD`` when that is set, so the
    URL a container's environment shows holds no secret. A password written into the URL is checked as a secret."""
    raw = env.get("DATABASE_URL", default)
    try:
        url = make_url(raw)
    except ArgumentError as exc:
        raise SettingsError(f"environment variable DATABASE_URL is not a database URL: {exc}") from None
    if url.password is not None:
        env.check_secret("DATABASE_URL", str(url.password), "its password")
    password = env.optional_secret("POSTGRES_PASSWORD")
    if password is None:
        return raw
    if url.get_backend_name() != "postgresql":
        raise SettingsError("POSTGRES_PASSWORD is set but DATABASE_URL is not a postgresql:// URL")
    return url.set(password=password).render_as_string(hide_password=False)


# A receiver answers within seconds (the specification's advice), not in the minutes a provider's video may take.
WEBHOOK_OUTBOUND = OutboundRules(max_fetch_seconds=15.0)


@dataclass(frozen=True)
class WebhookSettings:
    """Webhook deliveries (``services/main/webhooks``): where they may go, how often a failed one is tried again, and
    how long a rotated signing secret still signs."""

    # MAIN_WEBHOOK_ALLOW_HTTP, _ALLOWED_HOSTS, _MAX_REDIRECTS, _MAX_FETCH_SECONDS (one attempt, redirects included):
    # https to public addresses only unless set; the tests allow their local receiver.
    outbound: OutboundRules = WEBHOOK_OUTBOUND
    # The wait after the first failed attempt, multiplied by retry_backoff after each further one, at most
    # retry_max_seconds; max_attempts in all. The defaults try for about 26 hours.
    retry_initial_seconds: float = 30.0
    retry_backoff: float = 2.0
    retry_max_seconds: float = 6 * 3600.0
    max_attempts: int = 14
    # After a rotation the previous secret signs too (a second signature) for this long.
    secret_overlap_seconds: float = 24 * 3600.0
    # How often main looks for deliveries whose workflow no process started yet (one that died after its commit),
    # and how many it starts per round.
    start_poll_ms: int = 1000
    start_batch_size: int = 100

    @classmethod
    def from_env(cls, env: Env) -> WebhookSettings:
        return cls(
            outbound=OutboundRules.from_env(env, "MAIN_WEBHOOK", cls.outbound),
            retry_initial_seconds=env.get_float("MAIN_WEBHOOK_RETRY_INITIAL_SECONDS", cls.retry_initial_seconds),
            retry_backoff=env.get_float("MAIN_WEBHOOK_RETRY_BACKOFF", cls.retry_backoff),
            retry_max_seconds=env.get_float("MAIN_WEBHOOK_RETRY_MAX_SECONDS", cls.retry_max_seconds),
            max_attempts=env.get_int("MAIN_WEBHOOK_MAX_ATTEMPTS", cls.max_attempts, minimum=1),
            secret_overlap_seconds=env.get_float("MAIN_WEBHOOK_SECRET_OVERLAP_SECONDS", cls.secret_overlap_seconds),
            start_poll_ms=env.get_int("MAIN_WEBHOOK_START_POLL_MS", cls.start_poll_ms, minimum=1),
            start_batch_size=env.get_int("MAIN_WEBHOOK_START_BATCH_SIZE", cls.start_batch_size, minimum=1),
        )

    def __post_init__(self) -> None:
        for name in ("retry_initial_seconds", "retry_max_seconds", "secret_overlap_seconds"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"MAIN_WEBHOOK_{name.upper()} must be positive")
        if self.retry_backoff < 1:
            raise SettingsError(f"MAIN_WEBHOOK_RETRY_BACKOFF must be at least 1, got {self.retry_backoff}")
        if self.retry_max_seconds < self.retry_initial_seconds:
            raise SettingsError("MAIN_WEBHOOK_RETRY_MAX_SECONDS must be at least MAIN_WEBHOOK_RETRY_INITIAL_SECONDS")

    def retry_waits(self) -> list[float]:
        """The waits between one attempt and the next, in order (one fewer than max_attempts)."""
        return [
            min(self.retry_initial_seconds * self.retry_backoff**n, self.retry_max_seconds)
            for n in range(self.max_attempts - 1)
        ]


@dataclass(frozen=True)
class MainSettings:
    platform: PlatformSettings
    api_keys: dict[str, str] = field(repr=False)
    realtime_secret: str = field(repr=False)
    # Workers -> main: what the report API accepts.
    report_tokens: TokenPair
    # main -> NATS: the event stream, as the NATS user that publishes events and manages the stream.
    events: EventStreamSettings
    # main's own: the key of the tokens in providers' callback URLs (services/main/callback_tokens.py).
    callback_keys: TokenPair
    host: str = "127.0.0.1"
    # The public listener (users) and the internal one (the report API, for the workers only).
    port: int = 8000
    internal_port: int = 8010
    # With the password from POSTGRES_PASSWORD filled in (see ``database_url``).
    database_url: str = field(default="sqlite+aiosqlite:///.data/main.db", repr=False)
    # How providers reach main for callbacks. Empty: http://127.0.0.1:<port>.
    public_url: str = ""
    # What clients are told to connect their websocket to.
    realtime_public_url: str = "ws://127.0.0.1:8001/ws"
    realtime_ttl_seconds: int = 300
    blacklist: tuple[str, ...] = ()
    # Bound on how long a read waits for Temporal when it syncs a non-terminal task.
    sync_timeout_seconds: float = 3.0
    # A new task's workflow start: attempts, each bounded. A start that may have reached Temporal keeps the task
    # (queued) for the reconciler; only one that never reached it removes the task and answers 503.
    start_attempts: int = 3
    start_timeout_seconds: float = 3.0
    # The reconciler (one main process at a time, under a lease in the store): how often it runs; how old a queued
    # task (or a workflow without a task) must be before it acts; how far back it looks for terminated or timed-out
    # workflows whose objects it removes; how many queued tasks it starts per round.
    reconcile_interval_seconds: float = 30.0
    reconcile_after_seconds: float = 60.0
    reconcile_lookback_seconds: float = 6 * 3600.0
    reconcile_batch_size: int = 200
    # Events the outbox relay publishes per round.
    relay_batch_size: int = 500
    # How often the relay looks for events without being told of a commit: those committed by another main process
    # that died before relaying them.
    relay_poll_ms: int = 500
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
    # Tasks a user may have queued or running at once; beyond it a create is refused (429), and told to come back
    # after active_tasks_retry_after_seconds.
    max_active_tasks: int = 500
    # Users allowed another one than max_active_tasks.
    user_max_active_tasks: dict[str, int] = field(default_factory=dict[str, int])
    active_tasks_retry_after_seconds: int = 5
    # Each API key's token bucket for creates and task actions (refresh): refilled at rate_limit_per_second, holding
    # at most rate_limit_burst.
    rate_limit_per_second: float = 20.0
    rate_limit_burst: int = 200
    # How long a finished task (its objects, its tombstone) and an unsent event are kept, in days (fractions
    # allowed); 0 keeps them forever. A week by default: long enough for a result to be fetched, and for an outage
    # of NATS (whose unsent events it purges too) to be fixed. An hour, as Replicate keeps a prediction, is 0.0417.
    # The purge runs every retention_interval_seconds as the Temporal schedule ``platform-retention``
    # (services/main/retention.py), retention_batch_size tasks per transaction.
    retention_days: float = 7.0
    retention_interval_seconds: float = 600.0
    retention_batch_size: int = 200
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MainSettings:
        env = Env(environ)
        port = env.get_int("MAIN_PORT", cls.port)
        return cls(
            platform=PlatformSettings.from_env(env),
            api_keys=parse_api_keys(env.required("API_KEYS"), env),
            realtime_secret=env.secret("REALTIME_SECRET"),
            report_tokens=env.token_pair("REPORT_TOKEN"),
            events=EventStreamSettings.from_env(env, PUBLISHER),
            callback_keys=env.token_pair("CALLBACK_KEY"),
            host=env.get("MAIN_HOST", cls.host),
            port=port,
            internal_port=env.get_int("MAIN_INTERNAL_PORT", cls.internal_port),
            database_url=database_url(env, cls.database_url),
            public_url=env.get_http_url("MAIN_PUBLIC_URL", cls.public_url or f"http://127.0.0.1:{port}"),
            realtime_public_url=env.get("REALTIME_PUBLIC_URL", cls.realtime_public_url),
            realtime_ttl_seconds=env.get_int("REALTIME_TOKEN_TTL_SECONDS", cls.realtime_ttl_seconds),
            blacklist=parse_blacklist(env.raw("INTEGRATIONS_BLACKLIST")),
            sync_timeout_seconds=env.get_float("MAIN_SYNC_TIMEOUT_SECONDS", cls.sync_timeout_seconds),
            start_attempts=env.get_int("MAIN_START_ATTEMPTS", cls.start_attempts, minimum=1),
            start_timeout_seconds=env.get_float("MAIN_START_TIMEOUT_SECONDS", cls.start_timeout_seconds),
            reconcile_interval_seconds=env.get_float("MAIN_RECONCILE_INTERVAL_SECONDS", cls.reconcile_interval_seconds),
            reconcile_after_seconds=env.get_float("MAIN_RECONCILE_AFTER_SECONDS", cls.reconcile_after_seconds),
            reconcile_lookback_seconds=env.get_float("MAIN_RECONCILE_LOOKBACK_SECONDS", cls.reconcile_lookback_seconds),
            reconcile_batch_size=env.get_int("MAIN_RECONCILE_BATCH_SIZE", cls.reconcile_batch_size, minimum=1),
            relay_batch_size=env.get_int("MAIN_RELAY_BATCH_SIZE", cls.relay_batch_size, minimum=1),
            relay_poll_ms=env.get_int("MAIN_RELAY_POLL_MS", cls.relay_poll_ms, minimum=1),
            access_log=env.get_bool("MAIN_ACCESS_LOG", cls.access_log),
            workers=env.get_int("MAIN_WORKERS", cls.workers, minimum=1),
            limits=ServerLimits.from_env(env, "MAIN"),
            max_body_bytes=env.get_int("MAIN_MAX_BODY_BYTES", cls.max_body_bytes, minimum=1),
            max_report_bytes=env.get_int("MAIN_MAX_REPORT_BYTES", cls.max_report_bytes, minimum=1),
            max_create_body_bytes=env.get_int("MAIN_MAX_CREATE_BODY_BYTES", cls.max_create_body_bytes, minimum=1),
            highest_priority=_priority(
                "MAIN_HIGHEST_PRIORITY", env.get("MAIN_HIGHEST_PRIORITY", str(cls.highest_priority))
            ),
            user_highest_priority=parse_per_user(
                "MAIN_USER_HIGHEST_PRIORITY", env.raw("MAIN_USER_HIGHEST_PRIORITY") or "", _priority
            ),
            max_active_tasks=env.get_int("MAIN_MAX_ACTIVE_TASKS", cls.max_active_tasks, minimum=1),
            user_max_active_tasks=parse_per_user(
                "MAIN_USER_MAX_ACTIVE_TASKS", env.raw("MAIN_USER_MAX_ACTIVE_TASKS") or "", _positive
            ),
            active_tasks_retry_after_seconds=env.get_int(
                "MAIN_ACTIVE_TASKS_RETRY_AFTER_SECONDS", cls.active_tasks_retry_after_seconds, minimum=1
            ),
            rate_limit_per_second=env.get_float("MAIN_RATE_LIMIT_PER_SECOND", cls.rate_limit_per_second),
            rate_limit_burst=env.get_int("MAIN_RATE_LIMIT_BURST", cls.rate_limit_burst, minimum=1),
            retention_days=env.get_float("MAIN_RETENTION_DAYS", cls.retention_days),
            retention_interval_seconds=env.get_float("MAIN_RETENTION_INTERVAL_SECONDS", cls.retention_interval_seconds),
            retention_batch_size=env.get_int("MAIN_RETENTION_BATCH_SIZE", cls.retention_batch_size, minimum=1),
            webhooks=WebhookSettings.from_env(env),
        )

    def highest_priority_for(self, user: str) -> int:
        return self.user_highest_priority.get(user, self.highest_priority)

    def max_active_tasks_for(self, user: str) -> int:
        return self.user_max_active_tasks.get(user, self.max_active_tasks)

    @property
    def retention(self) -> timedelta | None:
        """How long finished tasks are kept; None: forever."""
        return timedelta(days=self.retention_days) if self.retention_days > 0 else None

    def __post_init__(self) -> None:
        if self.rate_limit_per_second <= 0:
            raise SettingsError(f"MAIN_RATE_LIMIT_PER_SECOND must be above 0, got {self.rate_limit_per_second}")
        if self.retention_days < 0:
            raise SettingsError(f"MAIN_RETENTION_DAYS must be 0 (keep forever) or positive, got {self.retention_days}")
        for name in (
            "start_timeout_seconds",
            "reconcile_interval_seconds",
            "reconcile_lookback_seconds",
            "retention_interval_seconds",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"MAIN_{name.upper()} must be positive")
        if self.internal_port == self.port:
            raise SettingsError(f"MAIN_INTERNAL_PORT must differ from MAIN_PORT ({self.port})")

"""communication's settings, read from the environment once, when the app is created."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from litestar.types import ASGIApp

from services.shared import logs
from services.shared.event_stream import READER
from services.shared.http_server import ServerConfig
from services.shared.settings import Env, EventStreamSettings, ServerLimits, SettingsError

from .protocol import WebSocketProtocol

# Clients only ever send small control messages ({"type": "ping"}); refusing big frames keeps a hostile client
# from making the server buffer megabytes per socket.
MAX_CLIENT_MESSAGE_BYTES = 64 * 1024


@dataclass(frozen=True)
class CommunicationSettings:
    realtime_secret: str = field(repr=False)
    # The event stream, read as the NATS user that may only read it.
    events: EventStreamSettings
    host: str = "127.0.0.1"
    # The public listener (websockets, health) and the internal one (metrics) that only the stack's network reaches.
    port: int = 8001
    internal_port: int = 8011
    # Messages waiting for one socket; a socket that falls this far behind is disconnected as too slow.
    queue_size: int = 256
    # A resuming client that missed more events than this is told to re-read from main instead.
    resume_max_events: int = 1000
    # Seconds between keepalive pings (0 turns them off) and how long a peer may take to answer one. A socket we
    # are closing gets the same time to take its close frame before it is aborted.
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    # permessage-deflate costs tens of kilobytes of zlib state per socket and buys little on small JSON events.
    per_message_deflate: bool = False
    # A socket is closed (4401 "token expired") when its token expires; the client reconnects with a fresh one.
    close_on_token_expiry: bool = True
    # Sockets one user may hold at once (per communication process); the next is closed with 4429.
    max_sockets_per_user: int = 16
    # Request bodies (no route of communication takes one).
    max_body_bytes: int = 64 * 1024
    limits: ServerLimits = field(default_factory=ServerLimits)
    # Seconds that open connections get to finish after SIGTERM (sockets are told 1012 "service restart").
    shutdown_timeout: int = 5
    log_level: str = "info"
    # One line per HTTP request; off by default.
    access_log: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CommunicationSettings:
        env = Env(environ)
        return cls(
            realtime_secret=env.secret("REALTIME_SECRET"),
            events=EventStreamSettings.from_env(env, READER),
            host=env.get("COMMUNICATION_HOST", cls.host),
            port=env.get_int("COMMUNICATION_PORT", cls.port),
            internal_port=env.get_int("COMMUNICATION_INTERNAL_PORT", cls.internal_port),
            queue_size=env.get_int("COMMUNICATION_QUEUE_SIZE", cls.queue_size, minimum=1),
            resume_max_events=env.get_int("COMMUNICATION_RESUME_MAX_EVENTS", cls.resume_max_events, minimum=1),
            ping_interval=env.get_float("COMMUNICATION_PING_INTERVAL", cls.ping_interval),
            ping_timeout=env.get_float("COMMUNICATION_PING_TIMEOUT", cls.ping_timeout),
            per_message_deflate=env.get_bool("COMMUNICATION_PER_MESSAGE_DEFLATE", cls.per_message_deflate),
            close_on_token_expiry=env.get_bool("COMMUNICATION_CLOSE_ON_TOKEN_EXPIRY", cls.close_on_token_expiry),
            max_sockets_per_user=env.get_int("COMMUNICATION_MAX_SOCKETS_PER_USER", cls.max_sockets_per_user, minimum=1),
            max_body_bytes=env.get_int("COMMUNICATION_MAX_BODY_BYTES", cls.max_body_bytes, minimum=1),
            limits=ServerLimits.from_env(env, "COMMUNICATION"),
            shutdown_timeout=env.get_int("COMMUNICATION_SHUTDOWN_TIMEOUT", cls.shutdown_timeout, minimum=0),
            log_level=env.get("COMMUNICATION_LOG_LEVEL", cls.log_level).lower(),
            access_log=env.get_bool("COMMUNICATION_ACCESS_LOG", cls.access_log),
        )

    def __post_init__(self) -> None:
        for name, port in (("COMMUNICATION_PORT", self.port), ("COMMUNICATION_INTERNAL_PORT", self.internal_port)):
            if not 0 < port <= 65535:
                raise SettingsError(f"{name} must be between 1 and 65535, got {port}")
        if self.internal_port == self.port:
            raise SettingsError(f"COMMUNICATION_INTERNAL_PORT must differ from COMMUNICATION_PORT ({self.port})")
        if self.ping_interval < 0:
            raise SettingsError(f"COMMUNICATION_PING_INTERVAL must not be negative, got {self.ping_interval}")
        if self.ping_timeout <= 0:
            raise SettingsError(f"COMMUNICATION_PING_TIMEOUT must be positive, got {self.ping_timeout}")
        if self.log_level not in ("critical", "error", "warning", "info", "debug", "trace"):
            raise SettingsError(f"COMMUNICATION_LOG_LEVEL must be a log level name, got {self.log_level!r}")

    def get_uvicorn_config(self, app: ASGIApp) -> ServerConfig:
        """The server for both listeners: bind it with ``http_server.run(config, [port, internal_port])``."""
        return ServerConfig(
            app,
            limits=self.limits,
            host=self.host,
            ws=WebSocketProtocol,
            ws_max_size=MAX_CLIENT_MESSAGE_BYTES,
            ws_ping_interval=self.ping_interval or None,
            ws_ping_timeout=self.ping_timeout,
            ws_per_message_deflate=self.per_message_deflate,
            timeout_graceful_shutdown=self.shutdown_timeout,
            log_level=self.log_level,
            log_config=logs.uvicorn_log_config(),
            access_log=self.access_log,
            lifespan="on",
        )

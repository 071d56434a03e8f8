"""communication's settings, read from the environment once, when the app is created."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import uvicorn
from litestar.types import ASGIApp

from services.shared.settings import Env, EventStreamSettings, SettingsError

from .protocol import WebSocketProtocol

# Clients only ever send small control messages ({"type": "ping"}); refusing big frames keeps a hostile client
# from making the server buffer megabytes per socket.
MAX_CLIENT_MESSAGE_BYTES = 64 * 1024


@dataclass(frozen=True)
class CommunicationSettings:
    realtime_secret: str
    events: EventStreamSettings
    host: str = "127.0.0.1"
    port: int = 8001
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
    # The token only admits the socket. When this is on, the socket is also closed (4401 "token expired") when
    # the token expires, and the client reconnects with a fresh one.
    close_on_token_expiry: bool = False
    # Seconds that open connections get to finish after SIGTERM (sockets are told 1012 "service restart").
    shutdown_timeout: int = 5
    log_level: str = "info"
    # One line per HTTP request; off by default.
    access_log: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CommunicationSettings:
        env = Env(environ)
        settings = cls(
            realtime_secret=env.get("REALTIME_SECRET"),
            events=EventStreamSettings.from_env(env),
            host=env.get("COMMUNICATION_HOST", cls.host),
            port=env.get_int("COMMUNICATION_PORT", cls.port),
            queue_size=env.get_int("COMMUNICATION_QUEUE_SIZE", cls.queue_size),
            resume_max_events=env.get_int("COMMUNICATION_RESUME_MAX_EVENTS", cls.resume_max_events),
            ping_interval=env.get_float("COMMUNICATION_PING_INTERVAL", cls.ping_interval),
            ping_timeout=env.get_float("COMMUNICATION_PING_TIMEOUT", cls.ping_timeout),
            per_message_deflate=env.get_bool("COMMUNICATION_PER_MESSAGE_DEFLATE", cls.per_message_deflate),
            close_on_token_expiry=env.get_bool("COMMUNICATION_CLOSE_ON_TOKEN_EXPIRY", cls.close_on_token_expiry),
            shutdown_timeout=env.get_int("COMMUNICATION_SHUTDOWN_TIMEOUT", cls.shutdown_timeout),
            log_level=env.get("COMMUNICATION_LOG_LEVEL", cls.log_level).lower(),
            access_log=env.get_bool("COMMUNICATION_ACCESS_LOG", cls.access_log),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"COMMUNICATION_PORT must be between 0 and 65535, got {self.port}")
        if self.queue_size < 1:
            raise SettingsError(f"COMMUNICATION_QUEUE_SIZE must be at least 1, got {self.queue_size}")
        if self.resume_max_events < 1:
            raise SettingsError(f"COMMUNICATION_RESUME_MAX_EVENTS must be at least 1, got {self.resume_max_events}")
        if self.ping_interval < 0:
            raise SettingsError(f"COMMUNICATION_PING_INTERVAL must not be negative, got {self.ping_interval}")
        if self.ping_timeout <= 0:
            raise SettingsError(f"COMMUNICATION_PING_TIMEOUT must be positive, got {self.ping_timeout}")
        if self.shutdown_timeout < 0:
            raise SettingsError(f"COMMUNICATION_SHUTDOWN_TIMEOUT must not be negative, got {self.shutdown_timeout}")
        if self.log_level not in ("critical", "error", "warning", "info", "debug", "trace"):
            raise SettingsError(f"COMMUNICATION_LOG_LEVEL must be a log level name, got {self.log_level!r}")

    def get_uvicorn_config(self, app: ASGIApp) -> uvicorn.Config:
        return uvicorn.Config(
            app,
            host=self.host,
            port=self.port,
            ws=WebSocketProtocol,
            ws_max_size=MAX_CLIENT_MESSAGE_BYTES,
            ws_ping_interval=self.ping_interval or None,
            ws_ping_timeout=self.ping_timeout,
            ws_per_message_deflate=self.per_message_deflate,
            timeout_graceful_shutdown=self.shutdown_timeout,
            log_level=self.log_level,
            access_log=self.access_log,
            lifespan="on",
        )

    def __repr__(self) -> str:
        # Keep both secrets out of logs and tracebacks.
        return (
            f"CommunicationSettings(host={self.host!r}, port={self.port}, queue_size={self.queue_size}, "
            f"ping_interval={self.ping_interval}, ping_timeout={self.ping_timeout})"
        )

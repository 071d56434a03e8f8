"""How main and communication run under uvicorn: several listeners (public and internal) in one server, time
limits against slow clients, a clean exit on SIGTERM, and one or several worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Generator, Sequence
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState
from uvicorn.supervisors import Multiprocess

from .settings import ServerLimits


class ServerConfig(uvicorn.Config):
    """uvicorn's config plus our limits; it travels to the worker processes (pickled) with them."""

    def __init__(self, app: Any, *, limits: ServerLimits, **kwargs: Any) -> None:
        super().__init__(app, http=SlowClientGuard, **kwargs)
        self.limits = limits


class SlowClientGuard(HttpToolsProtocol):
    """uvicorn waits for a request's headers and body as long as the client cares to send them: a few clients
    dribbling bytes (or sending none after connecting) would hold connections and request tasks for ever. Here the
    headers must be complete within ``header_timeout_seconds`` of the first byte (of the connection, for the first
    request), and the body within ``body_timeout_seconds`` of the headers; otherwise the client gets 408 and the
    connection is closed."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits: ServerLimits = getattr(config, "limits", ServerLimits())
        self.slow_timer: asyncio.TimerHandle | None = None
        self.reading_body = False

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self.slow_timer = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self.slow_timer is not None:
            self.slow_timer.cancel()
            self.slow_timer = None

    def _too_slow(self) -> None:
        self.slow_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        # 408 only where no response of ours is on the wire: while headers come in, the previous request's answer
        # is complete; while the body comes in, the application has not started answering.
        if self.reading_body:
            answer = cycle is not None and not cycle.response_started
        else:
            answer = cycle is None or cycle.response_complete
        if answer:
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: 16\r\nconnection: close\r\n\r\nrequest too slow"
            )
        if cycle is not None and self.reading_body:
            # The application, if it waits for the rest of the body, learns that the client is gone.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.header_timeout_seconds)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # A request on a kept-alive connection: its headers are timed from its first byte.
        if self.slow_timer is None:
            self._arm(self.limits.header_timeout_seconds)

    def on_headers_complete(self) -> None:
        self._arm(self.limits.body_timeout_seconds)
        self.reading_body = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self.reading_body = False
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        # From here on the connection belongs to the websocket protocol and its own keepalive.
        self._disarm()
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


class Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn already shuts down gracefully on these signals, but then raises the signal again, so a clean stop
        # would look like "killed by SIGTERM" (exit 143) to compose and to supervisors. Exit 0 instead.
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def run(config: ServerConfig, ports: Sequence[int]) -> bool:
    """Serve ``config.app`` on every port of ``config.host`` (the first is the public listener), in
    ``config.workers`` processes; returns whether the server started (with several processes: whether it ran)."""
    sockets: list[socket.socket] = []
    try:
        for port in ports:
            try:
                sockets.append(bind(config.host, port))
            except OSError as exc:
                logging.getLogger("uvicorn.error").error("cannot listen on %s:%d: %s", config.host, port, exc)
                return False
        if config.workers > 1:
            Multiprocess(config, sockets=sockets).run()
            return True
        server = Server(config)
        server.run(sockets=sockets)
        return server.started
    finally:
        for sock in sockets:
            sock.close()

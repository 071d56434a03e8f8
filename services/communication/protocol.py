"""uvicorn's websocket protocol, with a deadline on every close the server starts."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

if TYPE_CHECKING:
    from uvicorn._types import ASGISendEvent


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn sends ``websocket.close`` only once its write buffer has room, and closes the transport in a way
    that waits for the buffer to drain. A peer that stopped reading never drains it, so a socket we drop as too
    slow, or whose keepalive ping went unanswered, would keep its buffers (and its handler) for as long as the
    peer's TCP stack stays up. Here such a close gets ``ws_ping_timeout`` seconds; then the connection is aborted.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.abort_timer: asyncio.TimerHandle | None = None

    def abort_later(self) -> None:
        if self.abort_timer is None and not self.disconnected:
            self.abort_timer = self.loop.call_later(self.ping_timeout or self.close_timeout, self.transport.abort)

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] == "websocket.close" and self.handshake_complete:
            self.abort_later()
        await super().send(message)

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        self.abort_later()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.abort_timer is not None:
            self.abort_timer.cancel()
            self.abort_timer = None
        super().connection_lost(exc)

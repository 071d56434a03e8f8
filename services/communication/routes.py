"""HTTP and websocket routes. Handlers only translate between the wire and the hub."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import msgspec
from litestar import Controller, WebSocket, get, post, websocket
from litestar.di import NamedDependency
from litestar.exceptions import WebSocketDisconnect
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK

from services.shared.events import PublishBatch, PublishRequest, PublishResult
from services.shared.http_errors import ApiError
from services.shared.realtime_token import TokenError, user_channel, verify

from .hub import Hub, Subscriber
from .settings import CommunicationSettings

log = logging.getLogger("communication")

# Close codes sent to websocket clients.
CLOSE_UNAUTHORIZED = 4401
CLOSE_TOO_MANY_SOCKETS = 4429
CLOSE_TOO_SLOW = 1013  # "try again later": the client may reconnect and re-read state from main
BEARER_SUBPROTOCOL = "bearer."

PONG = '{"event":"pong"}'


class ClientMessage(msgspec.Struct):
    type: str


class ConnectedMessage(msgspec.Struct, frozen=True):
    channel: str
    expires_at: int
    event: str = "connected"


class PublishController(Controller):
    path = "/internal"
    tags = ["internal"]

    @post(
        "/publish",
        operation_id="publish",
        status_code=HTTP_200_OK,
        summary="Push an event to every socket subscribed to a channel",
        description="Never waits for a socket: the event is queued per socket, and a socket whose queue is full "
        "is disconnected as too slow. `delivered` is the number of sockets the event was queued for.",
    )
    async def publish(self, data: JSONBody[PublishRequest], hub: NamedDependency[Hub]) -> PublishResult:
        if not data.channel:
            raise ApiError(400, "invalid_input", "invalid request: channel: must not be empty")
        message = msgspec.json.encode(data.event).decode()
        return PublishResult(delivered=hub.publish(data.channel, message))

    @post(
        "/publish/batch",
        operation_id="publish_batch",
        status_code=HTTP_200_OK,
        summary="Push several events, in order, with one request",
        description="Each event is handled as by `/internal/publish`, in the order given. `delivered` is the "
        "total number of socket queues the events were placed on. An empty channel rejects the whole batch.",
    )
    async def publish_batch(self, data: JSONBody[PublishBatch], hub: NamedDependency[Hub]) -> PublishResult:
        for index, request in enumerate(data.events):
            if not request.channel:
                raise ApiError(400, "invalid_input", f"invalid request: events[{index}].channel: must not be empty")
        delivered = 0
        for request in data.events:
            delivered += hub.publish(request.channel, msgspec.json.encode(request.event).decode())
        return PublishResult(delivered=delivered)


class StatusController(Controller):
    tags = ["status"]

    @get("/healthz", operation_id="healthz", summary="Liveness")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}


class MetricsController(Controller):
    """On the internal listener only (see ``app.create_app``)."""

    tags = ["status"]

    @get("/metrics", operation_id="metrics", summary="Connection and message counters (JSON)")
    async def metrics(self, hub: NamedDependency[Hub]) -> dict[str, int]:
        return {**hub.counters.as_dict(), "channels": hub.channels}


class RealtimeController(Controller):
    @websocket("/ws", name="realtime")
    async def connect(
        self,
        socket: WebSocket[Any, Any, Any],
        hub: NamedDependency[Hub],
        settings: NamedDependency[CommunicationSettings],
    ) -> None:
        """The frontends' socket: ``/ws?token=<token>`` (or subprotocol ``bearer.<token>``), then events."""
        # A peer that vanishes surfaces as WebSocketDisconnect from Litestar or as OSError from the server.
        with contextlib.suppress(WebSocketDisconnect, OSError):
            await _serve(socket, hub, settings)


async def _serve(socket: WebSocket[Any, Any, Any], hub: Hub, settings: CommunicationSettings) -> None:
    token, subprotocol = _token_of(socket)
    # Accept before refusing, so that the client can read the close code and reason (a refused handshake is
    # a bare HTTP 403 that browsers do not show to scripts). A client that offered a subprotocol must get it
    # back, or browsers fail the handshake.
    await socket.accept(subprotocols=subprotocol)
    try:
        if token is None:
            raise TokenError("missing token")
        claims = verify(settings.realtime_secret, token)
    except TokenError as exc:
        hub.counters.auth_failures += 1
        await socket.close(CLOSE_UNAUTHORIZED, str(exc))
        return

    channel = user_channel(claims.sub)
    if hub.subscribers(channel) >= settings.max_sockets_per_user:
        hub.counters.sockets_refused += 1
        await socket.close(
            CLOSE_TOO_MANY_SOCKETS, f"too many sockets: at most {settings.max_sockets_per_user} per user"
        )
        return
    # Subscribe before saying "connected", so that nothing published after the client hears it is missed.
    subscriber = hub.subscribe(channel)
    try:
        await socket.send_text(msgspec.json.encode(ConnectedMessage(channel, claims.exp)).decode())
        expires_in = max(0.0, claims.exp - time.time()) if settings.close_on_token_expiry else None
        closing = await _run(socket, hub, subscriber, expires_in)
        if closing is not None:
            code, reason = closing
            log.log(
                logging.WARNING if code == CLOSE_TOO_SLOW else logging.INFO, "closing %s socket: %s", channel, reason
            )
            # A peer that stopped reading may never take the close frame; the server protocol aborts the
            # connection after the ping timeout, and this bound keeps the handler from outliving it on any other
            # server.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(settings.ping_timeout + 1):
                    await socket.close(code, reason)
    finally:
        hub.unsubscribe(subscriber)


async def _run(
    socket: WebSocket[Any, Any, Any], hub: Hub, subscriber: Subscriber, expires_in: float | None
) -> tuple[int, str] | None:
    """Pumps messages both ways until the client leaves (returns None) or the socket must be closed (returns the
    close code and reason)."""
    sender = asyncio.create_task(_deliver(socket, subscriber, hub))
    listener = asyncio.create_task(_listen(socket))
    watched: set[asyncio.Future[Any]] = {sender, listener, subscriber.closed}
    try:
        done, _ = await asyncio.wait(watched, timeout=expires_in, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # The sender may be stuck waiting for a peer that does not read; cancelling it is what frees the socket
        # for the close frame.
        sender.cancel()
        listener.cancel()
        await asyncio.gather(sender, listener, return_exceptions=True)
    # Checked first: dropping a subscriber also wakes its sender, which then ends too.
    if subscriber.closed in done:
        return CLOSE_TOO_SLOW, subscriber.closed.result()
    if done:
        return None
    return CLOSE_UNAUTHORIZED, "token expired"


async def _deliver(socket: WebSocket[Any, Any, Any], subscriber: Subscriber, hub: Hub) -> None:
    while (message := await subscriber.next()) is not None:
        await socket.send_text(message)
        hub.counters.messages_sent += 1


async def _listen(socket: WebSocket[Any, Any, Any]) -> None:
    while True:
        message = await socket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message["type"] == "websocket.receive" and _is_ping(message.get("text")):
            await socket.send_text(PONG)


def _is_ping(text: str | None) -> bool:
    if not text:
        return False
    try:
        return msgspec.json.decode(text, type=ClientMessage).type == "ping"
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False


def _token_of(socket: WebSocket[Any, Any, Any]) -> tuple[str | None, str | None]:
    """The token (from ``?token=`` or the ``bearer.<token>`` subprotocol) and the subprotocol to accept."""
    subprotocol = next((p for p in socket.scope.get("subprotocols", ()) if p.startswith(BEARER_SUBPROTOCOL)), None)
    token = socket.query_params.get("token") or (subprotocol[len(BEARER_SUBPROTOCOL) :] if subprotocol else None)
    return token or None, subprotocol

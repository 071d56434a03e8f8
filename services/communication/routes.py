"""HTTP and websocket routes. Handlers only translate between the wire, the hub and the event feed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import msgspec
from litestar import Controller, Response, WebSocket, get, websocket
from litestar.di import NamedDependency
from litestar.exceptions import WebSocketDisconnect

from services.shared.event_stream import user_subject
from services.shared.realtime_token import TokenError, user_channel, verify

from .feed import EventFeed
from .hub import Hub, Subscriber
from .settings import CommunicationSettings

log = logging.getLogger("communication")

# Close codes sent to websocket clients.
CLOSE_UNAUTHORIZED = 4401
CLOSE_BAD_REQUEST = 4400
CLOSE_TOO_MANY_SOCKETS = 4429
CLOSE_TRY_AGAIN = 1013  # "try again later": the client may reconnect (resuming with since)
BEARER_SUBPROTOCOL = "bearer."

PONG = '{"event":"pong"}'


class ClientMessage(msgspec.Struct):
    type: str


class ConnectedMessage(msgspec.Struct, frozen=True):
    """The first message on every socket. ``seq``: every event after it reaches this socket (a resuming client's
    own ``since``; otherwise where the stream stood when it connected)."""

    channel: str
    expires_at: int
    seq: int
    event: str = "connected"


class ResyncMessage(msgspec.Struct, frozen=True):
    """The events the client missed cannot be replayed: it re-reads its tasks from main, and receives every event
    after ``seq`` from here on."""

    seq: int
    reason: str
    event: str = "resync"


class StatusController(Controller):
    tags = ["status"]

    @get("/healthz", operation_id="healthz", summary="Liveness")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz", operation_id="readyz", summary="Reading the event stream: sockets are served")
    async def readyz(self, feed: NamedDependency[EventFeed]) -> Response[dict[str, str]]:
        ready = feed.ready.is_set()
        return Response({"status": "ok" if ready else "unavailable"}, status_code=200 if ready else 503)


class MetricsController(Controller):
    """On the internal listener only (see ``app.create_app``)."""

    tags = ["status"]

    @get("/metrics", operation_id="metrics", summary="Connection and message counters (JSON)")
    async def metrics(self, hub: NamedDependency[Hub]) -> dict[str, int]:
        return {**hub.counters.as_dict(), "channels": hub.channels, "position": hub.position}


class RealtimeController(Controller):
    @websocket("/ws", name="realtime")
    async def connect(
        self,
        socket: WebSocket[Any, Any, Any],
        hub: NamedDependency[Hub],
        feed: NamedDependency[EventFeed],
        settings: NamedDependency[CommunicationSettings],
    ) -> None:
        """The frontends' socket: ``/ws?token=<token>[&since=<seq>]`` (or subprotocol ``bearer.<token>``), then
        events."""
        # A peer that vanishes surfaces as WebSocketDisconnect from Litestar or as OSError from the server.
        with contextlib.suppress(WebSocketDisconnect, OSError):
            await _serve(socket, hub, feed, settings)


def _since(socket: WebSocket[Any, Any, Any]) -> int | None:
    """``since``: the stream sequence of the last event the client received. Raises ValueError naming the problem."""
    raw = socket.query_params.get("since")
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        raise ValueError(f"invalid since {raw[:40]!r}: must be the seq of the last event received (an integer >= 0)")
    return int(raw)


async def _serve(socket: WebSocket[Any, Any, Any], hub: Hub, feed: EventFeed, settings: CommunicationSettings) -> None:
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
    try:
        since = _since(socket)
    except ValueError as exc:
        await socket.close(CLOSE_BAD_REQUEST, str(exc))
        return
    if not feed.ready.is_set():
        await socket.close(CLOSE_TRY_AGAIN, "event stream unavailable; try again")
        return

    channel = user_channel(claims.sub)
    subject = user_subject(settings.events, claims.sub)
    if hub.subscribers(subject) >= settings.max_sockets_per_user:
        hub.counters.sockets_refused += 1
        await socket.close(
            CLOSE_TOO_MANY_SOCKETS, f"too many sockets: at most {settings.max_sockets_per_user} per user"
        )
        return
    # Subscribe before anything is sent: every event after the hub's position now reaches the socket's queue.
    subscriber = hub.subscribe(subject)
    live_from = hub.position
    try:
        await socket.send_text(
            msgspec.json.encode(ConnectedMessage(channel, claims.exp, live_from if since is None else since)).decode()
        )
        sent = live_from if since is None else await _resume(socket, feed, subscriber, since, live_from, settings)
        if sent is None:
            return
        expires_in = max(0.0, claims.exp - time.time()) if settings.close_on_token_expiry else None
        closing = await _run(socket, hub, subscriber, sent, expires_in)
        if closing is not None:
            code, reason = closing
            log.log(
                logging.WARNING if code == CLOSE_TRY_AGAIN else logging.INFO, "closing %s socket: %s", channel, reason
            )
            # A peer that stopped reading may never take the close frame; the server protocol aborts the
            # connection after the ping timeout, and this bound keeps the handler from outliving it on any other
            # server.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(settings.ping_timeout + 1):
                    await socket.close(code, reason)
    finally:
        hub.unsubscribe(subscriber)


async def _resume(
    socket: WebSocket[Any, Any, Any],
    feed: EventFeed,
    subscriber: Subscriber,
    since: int,
    live_from: int,
    settings: CommunicationSettings,
) -> int | None:
    """Sends what the client missed since ``since`` (or a resync); returns the sequence sent up to, after which the
    socket's queue takes over (None: the socket was closed). The queue has every event after ``live_from``, so
    replayed events that are also queued are skipped there: none twice, none missing."""
    try:
        replay = await feed.replay(subscriber.channel, since, settings.resume_max_events)
    except Exception as exc:
        log.warning("cannot replay events since %d: %r", since, exc)
        await socket.close(CLOSE_TRY_AGAIN, "event stream unavailable; try again")
        return None
    sent = since
    for seq, message in replay.events:
        await socket.send_text(message)
        sent = seq
    if replay.resync is None:
        return sent
    sent = max(live_from, replay.events[-1][0] if replay.events else 0)
    await socket.send_text(msgspec.json.encode(ResyncMessage(sent, replay.resync)).decode())
    return sent


async def _run(
    socket: WebSocket[Any, Any, Any], hub: Hub, subscriber: Subscriber, sent: int, expires_in: float | None
) -> tuple[int, str] | None:
    """Pumps messages both ways until the client leaves (returns None) or the socket must be closed (returns the
    close code and reason)."""
    sender = asyncio.create_task(_deliver(socket, subscriber, hub, sent))
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
        return CLOSE_TRY_AGAIN, subscriber.closed.result()
    if done:
        return None
    return CLOSE_UNAUTHORIZED, "token expired"


async def _deliver(socket: WebSocket[Any, Any, Any], subscriber: Subscriber, hub: Hub, sent: int) -> None:
    """Sends the queue's events after ``sent``, in stream order."""
    while (queued := await subscriber.next()) is not None:
        seq, message = queued
        if seq <= sent:
            continue
        await socket.send_text(message)
        sent = seq
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

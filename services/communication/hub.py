"""Which sockets listen on which channel, each socket's bounded queue of outgoing messages, and the counters.

Pure asyncio with no HTTP, websocket or NATS code, so it can be tested on its own. The replica's one consumer of the
event stream (``feed.py``) hands each event to ``publish`` with its stream sequence, in stream order; a publish only
appends the already-encoded message to each subscriber's queue: it costs O(subscribers) and never waits for a
socket. Each socket's sender drains its own queue; a subscriber whose queue is full is dropped as too slow, and its
``closed`` future tells the socket's handler to disconnect it. ``position`` is the sequence of the last event
published: a socket subscribed now receives every later event.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import asdict, dataclass

SLOW_CLIENT = "too slow"
UNSUBSCRIBED = "unsubscribed"


@dataclass(slots=True)
class Counters:
    # Sockets the server holds: subscribed, or dropped and still being closed.
    connections_open: int = 0
    connections_total: int = 0
    # Events from the stream, whether or not anybody listened.
    messages_published: int = 0
    # (message, socket) pairs queued for sending; the sum of every publish's ``delivered``.
    messages_delivered: int = 0
    # (message, socket) pairs written to a socket.
    messages_sent: int = 0
    # (message, socket) pairs that will never be written: the message that found a queue full, and whatever was
    # still queued for a socket when it went away.
    messages_dropped: int = 0
    slow_client_disconnects: int = 0
    auth_failures: int = 0
    # Sockets closed at once because their user already held the most allowed.
    sockets_refused: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Subscriber:
    """One socket's place in the hub. Small on purpose: 10,000 idle sockets must fit in little memory."""

    __slots__ = ("_capacity", "_pending", "_released", "_waiter", "channel", "closed")

    def __init__(self, channel: str, capacity: int) -> None:
        self.channel = channel
        self._capacity = capacity
        self._pending: deque[tuple[int, str]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._released = False
        # Resolves with the reason once the hub has dropped this subscriber.
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def next(self) -> tuple[int, str] | None:
        """The next queued message with its stream sequence, waiting for one; ``None`` once the subscriber is
        closed."""
        while not self._pending:
            if self.closed.done():
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._pending.popleft()

    def _offer(self, seq: int, message: str) -> bool:
        if len(self._pending) >= self._capacity:
            return False
        self._pending.append((seq, message))
        self._wake()
        return True

    def _close(self, reason: str) -> int:
        """Returns how many queued messages were discarded."""
        discarded = len(self._pending)
        self._pending.clear()
        if not self.closed.done():
            self.closed.set_result(reason)
        self._wake()
        return discarded

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Hub:
    def __init__(self, queue_size: int) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self._queue_size = queue_size
        self._channels: dict[str, set[Subscriber]] = {}
        self.counters = Counters()
        self.position = 0

    def subscribe(self, channel: str) -> Subscriber:
        subscriber = Subscriber(channel, self._queue_size)
        self._channels.setdefault(channel, set()).add(subscriber)
        self.counters.connections_open += 1
        self.counters.connections_total += 1
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """The socket is gone. Idempotent. A socket dropped as too slow stays counted as open until this call,
        because the server still holds it while it tries to close it."""
        if subscriber._released:
            return
        subscriber._released = True
        self.counters.connections_open -= 1
        self._drop(subscriber, UNSUBSCRIBED)

    def publish(self, channel: str, message: str, seq: int) -> int:
        """Queues ``message`` (stream sequence ``seq``) for every subscriber of ``channel``; returns how many took
        it."""
        self.counters.messages_published += 1
        self.position = max(self.position, seq)
        subscribers = self._channels.get(channel)
        if not subscribers:
            return 0
        delivered = 0
        too_slow: list[Subscriber] = []
        for subscriber in subscribers:
            if subscriber._offer(seq, message):
                delivered += 1
            else:
                too_slow.append(subscriber)
        for subscriber in too_slow:
            self.counters.slow_client_disconnects += 1
            self.counters.messages_dropped += 1
            self._drop(subscriber, SLOW_CLIENT)
        self.counters.messages_delivered += delivered
        return delivered

    def subscribers(self, channel: str) -> int:
        return len(self._channels.get(channel, ()))

    @property
    def channels(self) -> int:
        return len(self._channels)

    def _drop(self, subscriber: Subscriber, reason: str) -> None:
        subscribers = self._channels.get(subscriber.channel)
        if subscribers is None or subscriber not in subscribers:
            return
        subscribers.remove(subscriber)
        if not subscribers:
            del self._channels[subscriber.channel]
        self.counters.messages_dropped += subscriber._close(reason)

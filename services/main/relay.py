"""The outbox relay: publishes committed events from the outbox to JetStream, in commit order, and marks them sent
(deleting them: marking and pruning in one statement).

Delivery into the broker is at least once: a row is marked sent only after JetStream acknowledged it, so a crash or
an outage in between means the row is published again later. Each publish carries the event id as ``Nats-Msg-Id``,
and JetStream drops a second message with the same id inside its duplicate window, so the stream holds each event
once. Nothing here can lose an event: the outbox row stays until the stream has it.

One relay runs in every main process. It is woken by each commit of its own process and also looks every
``MAIN_RELAY_POLL_MS`` for rows left by a process that died between a commit and its relay. Relays of several
processes are safe together: see ``TaskStore.relay_batch``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.client import Client as Nats
from nats.js import JetStreamContext
from nats.js.api import PubAck

from services.shared import event_stream
from services.shared.settings import EventStreamSettings

from .batches import Waker
from .store import OutboxRow, TaskStore

log = logging.getLogger("main.relay")

# Bound on the wait for JetStream's acknowledgement of one batch.
ACK_TIMEOUT_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 2.0


class RelayError(Exception):
    pass


class OutboxRelay:
    def __init__(
        self,
        store: TaskStore,
        events: EventStreamSettings,
        batch_size: int,
        poll_seconds: float,
    ) -> None:
        self._store = store
        self._events = events
        self._batch_size = batch_size
        self._poll = poll_seconds
        self._waker = Waker()
        self._task: asyncio.Task[None] | None = None
        self._nats: Nats | None = None
        self._stream_ready = False
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    def wake(self) -> None:
        """A change was committed: relay it now."""
        self._waker.wake()

    async def stop(self, drain_seconds: float = 2.0) -> None:
        """Relay what is committed (for at most ``drain_seconds``), then stop; what is left stays in the outbox for
        the next relay."""
        if self._task is not None:
            self._stopping = True
            self._waker.wake()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._task), drain_seconds)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._nats is not None:
            with contextlib.suppress(Exception):
                await self._nats.close()

    async def _run(self) -> None:
        self._nats = await event_stream.connect(self._events, name="main-relay")
        js = self._nats.jetstream(timeout=ACK_TIMEOUT_SECONDS)

        async def move() -> int:
            if not self._stream_ready:
                await event_stream.ensure_stream(js, self._events)
                self._stream_ready = True
            return await self._relay_batch(js)

        await self._waker.move_batches(
            move,
            batch_size=self._batch_size,
            poll_seconds=self._poll,
            max_backoff=MAX_BACKOFF_SECONDS,
            log=log,
            stopping=lambda: self._stopping,
        )

    async def _relay_batch(self, js: JetStreamContext) -> int:
        async with self._store.relay_batch(self._batch_size) as batch:
            if not batch.rows:
                return 0
            # Published back to back on one connection, which JetStream stores in that order; then the
            # acknowledgements are awaited. Only the acknowledged prefix is marked sent: the rest is published
            # again (as duplicates where it did arrive), so the stream never has a later event without the earlier.
            pending = [await self._publish(js, row) for row in batch.rows]
            sent: list[int] = []
            problem: BaseException | None = None
            try:
                async with asyncio.timeout(ACK_TIMEOUT_SECONDS):
                    for row, ack in zip(batch.rows, pending, strict=True):
                        await ack
                        sent.append(row.seq)
            except Exception as exc:
                problem = exc
            finally:
                for ack in pending[len(sent) :]:
                    ack.cancel()
            if sent:
                await batch.mark_sent(sent)
        if problem is not None:
            raise RelayError(f"JetStream acknowledged {len(sent)} of {len(batch.rows)} events: {problem!r}")
        return len(sent)

    async def _publish(self, js: JetStreamContext, row: OutboxRow) -> asyncio.Future[PubAck]:
        subject = event_stream.user_subject(self._events, row.owner)
        return await js.publish_async(subject, row.payload, headers={"Nats-Msg-Id": row.event_id})

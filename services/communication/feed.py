"""This replica's reader of the task-event stream.

One ordered consumer per replica reads every user's subject from where the stream stood when the replica started
and hands each event, with its stream sequence, to the hub, which fans it out to the sockets of that user: 10,000
idle sockets cost the server one consumer, not 10,000. A socket that resumes with ``since`` gets the events it
missed from ``replay``, which reads them by subject with JetStream's direct get: no consumer per socket, so a
replica's clients all reconnecting at once to another replica create nothing on the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from services.shared import event_stream
from services.shared.settings import EventStreamSettings

from .hub import Hub

log = logging.getLogger("communication.feed")

# Seconds between the consumer's heartbeats: two missed ones (e.g. NATS restarted) and the client recreates it
# from the last sequence it delivered.
HEARTBEAT_SECONDS = 1.0


def wire_message(seq: int, payload: bytes) -> str:
    """The event as a client receives it: the stored JSON object with its stream sequence in front."""
    return f'{{"seq":{seq},{payload[1:].decode()}'


@dataclass
class Replay:
    """What a resuming socket missed, in stream order, and why it must re-read from main instead (or also)."""

    events: list[tuple[int, str]] = field(default_factory=list)
    resync: str | None = None


class EventFeed:
    def __init__(self, settings: EventStreamSettings, hub: Hub) -> None:
        self._settings = settings
        self._hub = hub
        self._nats: Nats | None = None
        self._js: JetStreamContext | None = None
        self._task: asyncio.Task[None] | None = None
        # Set once the consumer runs; until then the hub's position means nothing and sockets are refused.
        self.ready = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._nats is not None:
            with contextlib.suppress(Exception):
                await self._nats.close()

    async def _run(self) -> None:
        self._nats = await event_stream.connect(self._settings, name="communication")
        self._js = self._nats.jetstream()
        while True:
            try:
                info = await self._js.stream_info(self._settings.stream)
                break
            except Exception as exc:
                # main creates the stream when it starts.
                log.info("waiting for stream %s: %r", self._settings.stream, exc)
                await asyncio.sleep(0.5)
        last = info.state.last_seq
        self._hub.position = last
        await self._js.subscribe(
            f"{self._settings.subject_prefix}.*",
            stream=self._settings.stream,
            cb=self._deliver,
            ordered_consumer=True,
            idle_heartbeat=HEARTBEAT_SECONDS,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=last + 1),
        )
        log.info("reading stream %s from sequence %d", self._settings.stream, last + 1)
        self.ready.set()

    async def _deliver(self, msg: Msg) -> None:
        seq = msg.metadata.sequence.stream
        self._hub.publish(msg.subject, wire_message(seq, msg.data), seq)
        # The client hands over a burst from the stream without yielding: let the sockets' senders run between
        # events, so a burst is not all queued before any of it is sent.
        await asyncio.sleep(0)

    async def replay(self, subject: str, since: int, limit: int) -> Replay:
        """Every event on ``subject`` after ``since`` (up to the newest now), or why the client must re-read."""
        js = self._js
        assert js is not None, "replay before the feed is ready"
        stream = self._settings.stream
        state = (await js.stream_info(stream)).state
        if since > state.last_seq:
            return Replay(resync="since is ahead of the event stream (it was reset)")
        if since + 1 < state.first_seq:
            return Replay(resync="since is older than the event stream's retention")
        try:
            newest = (await js.get_msg(stream, subject=subject, direct=True)).seq
        except NotFoundError:
            return Replay()
        replay = Replay()
        seq = since + 1
        while newest is not None and seq <= newest:
            if len(replay.events) >= limit:
                return Replay(resync=f"more than {limit} events were missed")
            msg = await js.get_msg(stream, seq=seq, subject=subject, next=True, direct=True)
            assert msg.seq is not None
            assert msg.data is not None
            replay.events.append((msg.seq, wire_message(msg.seq, msg.data)))
            seq = msg.seq + 1
        # Retention may have removed events while they were read: then some may have been skipped.
        if since + 1 < (await js.stream_info(stream)).state.first_seq:
            replay.resync = "since is older than the event stream's retention"
        return replay

"""Publishes task events to communication. Events are notifications (main stays the source of truth), so a
publish that keeps failing is dropped with a log line and never blocks or fails a state change."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec

from services.shared.events import PublishBatch, PublishRequest
from services.shared.http_link import HttpLink, LinkError

log = logging.getLogger("main.publisher")


class EventPublisher:
    def __init__(self, link: HttpLink, attempts: int, interval_seconds: float = 0.0, batch_size: int = 200) -> None:
        self._link = link
        self._attempts = max(1, attempts)
        self._batch_size = max(1, batch_size)
        self._interval = max(0.0, interval_seconds)
        # One queue and one sender keep events for a task in the order their changes were applied. Requests
        # start at most once per interval, and the events that queue up meanwhile go together in the next one:
        # under load one request carries many events, and an event after a quiet spell goes out at once.
        self._queue: asyncio.Queue[PublishRequest] = asyncio.Queue(maxsize=10_000)
        self._sender: asyncio.Task[None] | None = None
        self.published = 0
        self.dropped = 0

    def start(self) -> None:
        self._sender = asyncio.create_task(self._run(), name="event-publisher")

    async def stop(self, drain_seconds: float = 5.0) -> None:
        if self._sender is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), drain_seconds)
        except TimeoutError:
            log.warning("dropping %d unpublished events at shutdown", self._queue.qsize())
        self._sender.cancel()
        await asyncio.gather(self._sender, return_exceptions=True)
        await self._link.close()

    def publish(self, channel: str, event: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(PublishRequest(channel=channel, event=event))
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("event queue full; dropped event for channel %s", channel)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_start = -self._interval
        while True:
            first = await self._queue.get()
            wait = last_start + self._interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            last_start = loop.time()
            batch = [first]
            while len(batch) < self._batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._send(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _send(self, batch: list[PublishRequest]) -> None:
        body = msgspec.json.encode(PublishBatch(events=batch))
        delay = 0.1
        for attempt in range(1, self._attempts + 1):
            try:
                status, _ = await self._link.post("/internal/publish/batch", body)
                if status < 300:
                    self.published += len(batch)
                    return
                problem = f"HTTP {status}"
                if status < 500:
                    break
            except LinkError as exc:
                problem = str(exc)
            if attempt < self._attempts:
                await asyncio.sleep(delay)
                delay *= 3
        self.dropped += len(batch)
        log.warning("dropped %d event(s) after %d attempt(s): %s", len(batch), attempt, problem)

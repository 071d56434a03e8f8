"""The loop of main's background movers (the outbox relay, the webhook starter). Each moves a batch of what the
store holds at a time: another batch at once after a full one; otherwise the next when a commit of this process
wakes it, or after the poll interval (for rows that a process which died left behind). A failure is logged and
retried with a doubling backoff: what was not moved stays in the store, so nothing is lost by waiting."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

FIRST_BACKOFF_SECONDS = 0.1


class Waker:
    """Set by each commit of this process that may have left something to move."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def wake(self) -> None:
        self._event.set()

    async def move_batches(
        self,
        move: Callable[[], Awaitable[int]],
        *,
        batch_size: int,
        poll_seconds: float,
        max_backoff: float,
        log: logging.Logger,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        """Run ``move`` (it returns how many it moved) until cancelled, or until ``stopping`` once a batch left
        nothing behind."""
        backoff = FIRST_BACKOFF_SECONDS
        while True:
            try:
                self._event.clear()
                moved = await move()
                backoff = FIRST_BACKOFF_SECONDS
                if moved == batch_size:
                    continue
                if stopping():
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._event.wait(), poll_seconds)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The store or the destination is away (restarting, unreachable): the rows wait in the store.
                log.warning("%r; retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, max_backoff)

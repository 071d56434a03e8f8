"""The platform's own Temporal worker, in every main process: the workflows that belong to no integration (webhook
deliveries, the retention sweep) run on the ``platform`` task queue, their activities with main's store and object
storage at hand. It runs beside the API, never in a request's path: a slow receiver or a long sweep holds up no
request."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.worker import Worker

from services.shared.settings import TemporalSettings
from services.shared.temporal import connect

log = logging.getLogger("main.platform_worker")

PLATFORM_TASK_QUEUE = "platform"
# What a running activity gets to finish when main stops (a webhook attempt is bounded well below a minute; one cut
# short is tried again, under the same webhook-id).
GRACEFUL_SHUTDOWN = timedelta(seconds=5)
# Between attempts to reach Temporal when main started before it.
RETRY_SECONDS = 2.0


class PlatformWorker:
    """``setups``: what must be in place in Temporal and beside it for these workflows (a schedule, say), run once
    Temporal answers, each again after a failure until it succeeds; the worker serves meanwhile."""

    def __init__(
        self,
        temporal: TemporalSettings,
        workflows: Sequence[type],
        activities: Sequence[Callable[..., Any]],
        setups: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self._temporal = temporal
        self._workflows = list(workflows)
        self._activities = list(activities)
        self._setups = list(setups)
        self._task: asyncio.Task[None] | None = None
        self._setting_up: asyncio.Task[None] | None = None
        self._worker: Worker | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="platform-worker")

    async def stop(self) -> None:
        if self._worker is not None:
            # Lets running activities finish their attempt (bounded by the worker's graceful timeout).
            with contextlib.suppress(Exception):
                await self._worker.shutdown()
        for task in (self._setting_up, self._task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        # main's own client is lazy (main serves while Temporal comes up), which a worker cannot use: the worker
        # connects a client of its own, once Temporal answers.
        while True:
            try:
                client = await connect(self._temporal)
                break
            except Exception as exc:
                log.info("platform worker waits for Temporal: %r", exc)
                await asyncio.sleep(RETRY_SECONDS)
        self._setting_up = asyncio.create_task(self._set_up(), name="platform-setup")
        while True:
            try:
                self._worker = Worker(
                    client,
                    task_queue=PLATFORM_TASK_QUEUE,
                    workflows=self._workflows,
                    activities=self._activities,
                    graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
                )
                log.info("platform worker serving task queue %s", PLATFORM_TASK_QUEUE)
                await self._worker.run()
                return
            except Exception as exc:
                # A fatal worker error (Temporal away for too long): a new worker takes over.
                log.warning("platform worker stopped: %r; starting again", exc)
                await asyncio.sleep(RETRY_SECONDS)

    async def _set_up(self) -> None:
        for setup in self._setups:
            while True:
                try:
                    await setup()
                    break
                except Exception as exc:
                    log.warning("platform setup %s: %r; trying again", setup.__name__, exc)
                    await asyncio.sleep(RETRY_SECONDS)

"""Starts one workflow per delivery the store holds unstarted, on the ``platform`` task queue, then marks the
deliveries started: the outbox relay's pattern, with Temporal in place of JetStream. A delivery row commits with the
change that is due to send it, so a crash between the commit and the start loses nothing (the row stays unstarted,
and the next round of any main process starts it), and a repeated start duplicates nothing: the workflow id is the
delivery's, and a running or closed workflow of that id is never started again.

One starter runs in every main process, woken by each commit of its own process and looking every
``MAIN_WEBHOOK_START_POLL_MS`` for deliveries that a process which died left unstarted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from ..batches import Waker
from ..platform_worker import PLATFORM_TASK_QUEUE
from ..settings import WebhookSettings
from ..store import TaskStore
from .inputs import DeliveryInput, delivery_workflow_id
from .workflows import WebhookDeliveryWorkflow

log = logging.getLogger("main.webhooks")

MAX_BACKOFF_SECONDS = 5.0
# On top of the POST's own bound: the store reads and writes of an attempt.
ATTEMPT_MARGIN_SECONDS = 15.0
# On top of the schedule: time for the last attempts and for marking the delivery failed.
EXECUTION_MARGIN = timedelta(hours=1)


def attempt_seconds(settings: WebhookSettings) -> float:
    """The bound of one attempt: the POST's own, and the store's reads and writes."""
    return settings.outbound.max_fetch_seconds + ATTEMPT_MARGIN_SECONDS


def delivery_input(delivery_id: str, settings: WebhookSettings) -> DeliveryInput:
    return DeliveryInput(
        delivery_id=delivery_id,
        initial_seconds=settings.retry_initial_seconds,
        backoff=settings.retry_backoff,
        max_seconds=settings.retry_max_seconds,
        max_attempts=settings.max_attempts,
        attempt_seconds=attempt_seconds(settings),
    )


def execution_timeout(settings: WebhookSettings) -> timedelta:
    """Long enough for every attempt and every wait of the schedule."""
    attempts = settings.max_attempts * attempt_seconds(settings)
    return timedelta(seconds=sum(settings.retry_waits()) + attempts) + EXECUTION_MARGIN


class DeliveryStarter:
    def __init__(self, store: TaskStore, temporal: Client, settings: WebhookSettings) -> None:
        self._store = store
        self._temporal = temporal
        self._settings = settings
        self._waker = Waker()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook-starter")

    def wake(self) -> None:
        """A change was committed (and may have deliveries): start them now."""
        self._waker.wake()

    async def stop(self) -> None:
        """What is left unstarted stays in the store for the next starter."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        await self._waker.move_batches(
            self.run_once,
            batch_size=self._settings.start_batch_size,
            poll_seconds=self._settings.start_poll_ms / 1000,
            max_backoff=MAX_BACKOFF_SECONDS,
            log=log,
        )

    async def run_once(self) -> int:
        """Start the workflows of the oldest unstarted deliveries; how many."""
        ids = await self._store.unstarted_deliveries(self._settings.start_batch_size)
        for delivery_id in ids:
            with contextlib.suppress(WorkflowAlreadyStartedError):
                await self._temporal.start_workflow(
                    WebhookDeliveryWorkflow.run,
                    delivery_input(delivery_id, self._settings),
                    id=delivery_workflow_id(delivery_id),
                    task_queue=PLATFORM_TASK_QUEUE,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    execution_timeout=execution_timeout(self._settings),
                )
        await self._store.mark_deliveries_started(ids)
        return len(ids)

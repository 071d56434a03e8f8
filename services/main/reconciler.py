"""The reconciler: a loop in every main process, of which one at a time does the work, the holder of the store's
``reconciler`` lease. Each round it repairs what a crash or an operator can leave between the store and Temporal:

- a task still ``queued`` after ``MAIN_RECONCILE_AFTER_SECONDS`` (main died between the insert and the start, or the
  start may have failed): its workflow is started. The start is the create path's own, so it is harmless where the
  workflow exists: a running one is left as it is, and a closed one's outcome is taken into the task;
- a running task workflow older than that whose task is not in the store: it is terminated and the task's objects
  are removed;
- a task workflow that was terminated or timed out within ``MAIN_RECONCILE_LOOKBACK_SECONDS``: its task, if not
  terminal, ends ``failed`` with the reason (the read path's own sync), and the objects under the task's prefix are
  removed, unless the task succeeded before its workflow closed (then they are its result). A late upload that
  lands after one round is removed by the next.

Every step is idempotent (start with the deterministic id and its conflict policy, terminate, delete, the store's
compare-and-set), so two processes that both believe they hold the lease (a round outlasting the lease, clocks
skewed) repeat work, never do harm. The lease only saves the duplicate work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import UTC, datetime, timedelta

from temporalio.service import RPCError, RPCStatusCode

from services.shared.tasks import WORKFLOW_ID_PREFIX, is_terminal, task_id_of

from .service import TaskService

log = logging.getLogger("main.reconciler")

LEASE = "reconciler"
# The lease outlives a few rounds, so a holder that misses one keeps it, and one that died is replaced soon.
LEASE_ROUNDS = 3
# Tasks looked up in the store per query while looking for workflows without one.
LOOKUP_CHUNK = 500


def _visibility_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reconciler:
    def __init__(self, tasks: TaskService) -> None:
        self._tasks = tasks
        self._settings = tasks.settings
        self._holder = uuid.uuid4().hex
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="reconciler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        # Another process may take over at once instead of when the lease expires.
        with contextlib.suppress(Exception):
            await self._tasks.store.release_lease(LEASE, self._holder)

    async def _run(self) -> None:
        interval = self._settings.reconcile_interval_seconds
        while True:
            try:
                if await self._tasks.store.take_lease(LEASE, self._holder, LEASE_ROUNDS * interval):
                    await self.run_once()
            except Exception as exc:
                # The store is away: the next round tries again.
                log.warning("reconciler: %r", exc)
            await asyncio.sleep(interval)

    async def run_once(self) -> None:
        """One round: each step on its own, so one part being away (Temporal, S3) does not hold up the others."""
        for step in (self._start_queued, self._terminate_orphans, self._clean_closed):
            try:
                await step()
            except Exception as exc:
                log.warning("reconciler: %s: %r", step.__name__.strip("_"), exc)

    async def _start_queued(self) -> None:
        before = datetime.now(UTC) - timedelta(seconds=self._settings.reconcile_after_seconds)
        for record in await self._tasks.store.queued_before(before, self._settings.reconcile_batch_size):
            log.info("reconciler: task %s is still queued; starting its workflow", record.id)
            await self._tasks.start_stored(record)

    async def _terminate_orphans(self) -> None:
        before = datetime.now(UTC) - timedelta(seconds=self._settings.reconcile_after_seconds)
        query = (
            f'WorkflowId STARTS_WITH "{WORKFLOW_ID_PREFIX}" AND ExecutionStatus = "Running"'
            f' AND StartTime < "{_visibility_time(before)}"'
        )
        workflow_ids = [execution.id async for execution in self._tasks.temporal.list_workflows(query)]
        for first in range(0, len(workflow_ids), LOOKUP_CHUNK):
            chunk = {task_id_of(w): w for w in workflow_ids[first : first + LOOKUP_CHUNK]}
            known = await self._tasks.store.existing([t for t in chunk if t is not None])
            for task_id, workflow_id in chunk.items():
                if task_id is None or task_id in known:
                    continue
                log.warning("reconciler: workflow %s has no task; terminating it", workflow_id)
                try:
                    await self._tasks.temporal.get_workflow_handle(workflow_id).terminate(
                        reason="its task is not in main's store"
                    )
                except RPCError as exc:
                    if exc.status != RPCStatusCode.NOT_FOUND:
                        raise
                await self._tasks.discard_objects(task_id, "has no task")

    async def _clean_closed(self) -> None:
        since = datetime.now(UTC) - timedelta(seconds=self._settings.reconcile_lookback_seconds)
        query = (
            f'WorkflowId STARTS_WITH "{WORKFLOW_ID_PREFIX}" AND ExecutionStatus IN ("Terminated", "TimedOut")'
            f' AND CloseTime > "{_visibility_time(since)}"'
        )
        async for execution in self._tasks.temporal.list_workflows(query):
            task_id = task_id_of(execution.id)
            if task_id is None:
                continue
            record = await self._tasks.store.get(task_id)
            if record is not None and not is_terminal(record.status):
                # Terminal first: a report that an activity still running sends afterwards is refused.
                record = await self._tasks.sync(record)
                if not is_terminal(record.status):
                    continue
            if record is not None and record.status == "succeeded":
                continue
            await self._tasks.discard_objects(task_id, "closed early")

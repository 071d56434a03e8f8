"""Retention: a task that finished more than ``MAIN_RETENTION_DAYS`` ago is purged, its objects first, then its row
(a deleted task's tombstone too, counted from its deletion), with its unsent events; so is any unsent event written
that long ago. A task that has not finished is kept, whatever its age: its workflow may still be writing objects,
and it is purged once it has been finished for as long.

The purge runs in Temporal, as the schedule ``platform-retention`` (every ``MAIN_RETENTION_INTERVAL_SECONDS``, a run
skipped while the last still runs), so an operator sees, pauses or triggers it in the Temporal UI. Its workflow and
activity run on the ``platform`` task queue, which every main process serves (``platform_worker.py``). Every main
process creates the schedule at start, or brings it to its settings: several replicas starting at once find it there
and change nothing when it already matches (an operator's pause stays). ``MAIN_RETENTION_DAYS=0`` removes it.

The bucket gets a lifecycle rule of the same id that expires objects under ``tasks/`` a day after the retention
(whole days: S3 counts so, from when an object was written), for objects the purge never reaches; a server without
lifecycle configuration (the local SeaweedFS) is told so in a log line, and the purge alone removes them."""

from __future__ import annotations

import dataclasses
import logging
import math
from datetime import UTC, datetime, timedelta

from temporalio import activity
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from services.shared.tasks import OBJECTS_ROOT

from .platform_worker import PLATFORM_TASK_QUEUE
from .retention_workflow import PURGE_ACTIVITY, SCHEDULE_ID, WORKFLOW, Purge, Purged
from .service import TaskService
from .settings import MainSettings

log = logging.getLogger("main.retention")

LIFECYCLE_RULE_ID = SCHEDULE_ID


class Retention:
    """The purge activity and what it needs in place: the schedule and the bucket's lifecycle rule."""

    def __init__(self, tasks: TaskService) -> None:
        self._tasks = tasks
        self._settings = tasks.settings

    @activity.defn(name=PURGE_ACTIVITY)
    async def purge(self, purge: Purge) -> Purged:
        """Purge what finished before ``purge.retention_seconds`` ago, one batch per transaction until none is left.
        A task's objects go before its row: a task whose objects could not be removed stays for the next run."""
        store = self._tasks.store
        before = datetime.now(UTC) - timedelta(seconds=purge.retention_seconds)
        tasks = objects = events = 0
        while True:
            task_ids = await store.finished_before(before, purge.batch_size)
            for task_id in task_ids:
                objects += await self._tasks.discard_objects(task_id, "is past its retention")
            tasks += await store.purge(task_ids, before)
            activity.heartbeat()
            if len(task_ids) < purge.batch_size:
                break
        while True:
            removed = await store.purge_events_before(before, purge.batch_size)
            events += removed
            activity.heartbeat()
            if removed < purge.batch_size:
                break
        if tasks or events:
            log.info("retention: purged %d task(s), %d object(s), %d unsent event(s)", tasks, objects, events)
        return Purged(tasks=tasks, objects=objects, events=events)

    async def ensure_schedule(self) -> None:
        """Create the schedule, or bring the existing one to the settings; remove it when retention is off."""
        temporal = self._tasks.temporal
        handle = temporal.get_schedule_handle(SCHEDULE_ID)
        retention = self._settings.retention
        if retention is None:
            try:
                await handle.delete()
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
                return
            log.info("retention is off: schedule %s removed", SCHEDULE_ID)
            return
        wanted = schedule_for(self._settings, retention)
        try:
            await temporal.create_schedule(SCHEDULE_ID, wanted)
            log.info("retention: schedule %s created", SCHEDULE_ID)
            return
        except ScheduleAlreadyRunningError:
            pass

        async def update(existing: ScheduleUpdateInput) -> ScheduleUpdate | None:
            current = existing.description.schedule
            if await _same(temporal, current, wanted):
                return None
            log.info("retention: schedule %s updated to the settings", SCHEDULE_ID)
            return ScheduleUpdate(schedule=dataclasses.replace(wanted, state=current.state))

        await handle.update(update)

    async def ensure_lifecycle(self) -> None:
        """The bucket's lifecycle rule for the task objects: a day beyond the retention, in whole days; none when
        retention is off."""
        days = None if self._settings.retention is None else math.ceil(self._settings.retention_days) + 1
        if not await self._tasks.objects.expire_after(LIFECYCLE_RULE_ID, OBJECTS_ROOT, days):
            log.info(
                "retention: the S3 server keeps no bucket lifecycle rules; the purge alone removes the objects of "
                "tasks past their retention"
            )


def schedule_for(settings: MainSettings, retention: timedelta) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            WORKFLOW,
            Purge(retention_seconds=retention.total_seconds(), batch_size=settings.retention_batch_size),
            id=SCHEDULE_ID,
            task_queue=PLATFORM_TASK_QUEUE,
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.retention_interval_seconds))]
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def _same(temporal: Client, current: Schedule, wanted: Schedule) -> bool:
    action, goal = current.action, wanted.action
    assert isinstance(goal, ScheduleActionStartWorkflow)
    if not isinstance(action, ScheduleActionStartWorkflow) or (action.workflow, action.task_queue) != (
        goal.workflow,
        goal.task_queue,
    ):
        return False
    if [i.every for i in current.spec.intervals] != [i.every for i in wanted.spec.intervals]:
        return False
    if current.policy.overlap != wanted.policy.overlap or len(action.args) != 1:
        return False
    # A described schedule's arguments are the payloads as stored.
    stored = await temporal.data_converter.decode(action.args, [Purge])
    return bool(stored == list(goal.args))

"""The worker's side of the job slots (``job_slots``): asking the slots workflow for a slot, and telling it which
holders have ended. Registered by the launcher on every integration's workers, with that integration's cap."""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from .job_slots import (
    ASK_ACTIVITY,
    ASK_SIGNAL,
    CLOSED_ACTIVITY,
    WORKFLOW,
    Asked,
    SlotAsk,
    SlotRequest,
    SlotsState,
    slots_workflow_id,
)
from .tasks import fairness_key


class JobSlotActivities:
    def __init__(self, client: Client, task_queue: str, limit: int | None) -> None:
        self._client = client
        self._task_queue = task_queue
        self._limit = limit

    @activity.defn(name=ASK_ACTIVITY)
    async def ask(self, input: SlotAsk) -> Asked:
        """Ask the integration's slots workflow for a slot for ``input.holder``, starting it if it is not running;
        the answer comes as a signal to the holder. Without a cap there is nothing to ask."""
        if self._limit is None:
            return Asked(capped=False)
        task = input.task
        request = SlotRequest(input.holder, task.priority, fairness_key(task.user), self._limit)
        await self._client.start_workflow(
            WORKFLOW,
            SlotsState(limit=self._limit),
            id=slots_workflow_id(self._task_queue),
            task_queue=self._task_queue,
            start_signal=ASK_SIGNAL,
            start_signal_args=[request],
        )
        return Asked(capped=True)

    @activity.defn(name=CLOSED_ACTIVITY)
    async def closed(self, holders: list[str]) -> list[str]:
        """The holders whose workflows are no longer running (a continued run is the same workflow, running)."""
        running = await asyncio.gather(*(self._running(holder) for holder in holders))
        return [holder for holder, alive in zip(holders, running, strict=True) if not alive]

    async def _running(self, workflow_id: str) -> bool:
        try:
            description = await self._client.get_workflow_handle(workflow_id).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return description.status == WorkflowExecutionStatus.RUNNING

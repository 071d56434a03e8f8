from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from services.shared import workflow_kit
    from services.shared.tasks import StoredObject, TaskReport, TaskResult

    from ..schemas import PROCESS_ACTIVITY, EchoInput, ProcessInput


@workflow.defn(name="EchoWorkflow")
class EchoWorkflow:
    def __init__(self) -> None:
        self._state = TaskReport(status="queued")

    @workflow.run
    async def run(self, input: EchoInput) -> TaskReport:
        request = input.request
        self._state = TaskReport(status="running", progress=0.0)
        try:
            await workflow_kit.report(input.task_id, self._state)
            stored = await workflow.execute_activity(
                PROCESS_ACTIVITY,
                ProcessInput(input.task_id, request.message, request.delay_seconds, request.fail_attempts),
                result_type=StoredObject,
                start_to_close_timeout=timedelta(seconds=request.delay_seconds + 60),
                heartbeat_timeout=timedelta(seconds=5),
                retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=5),
            )
        except ActivityError as err:
            cancelled = is_cancelled_exception(err)
            self._state = (
                workflow_kit.cancelled() if cancelled else workflow_kit.failed("echo_failed", str(err.cause or err))
            )
        except asyncio.CancelledError:
            self._state = workflow_kit.cancelled()
        else:
            self._state = workflow_kit.succeeded(
                TaskResult(objects={"text": stored}, data={"length": len(request.message)})
            )
        await workflow_kit.report(input.task_id, self._state)
        return self._state

    @workflow.query
    def task_state(self) -> TaskReport:
        return self._state

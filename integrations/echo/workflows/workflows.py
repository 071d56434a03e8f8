from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from services.shared.sync_call import Call, SyncCallWorkflow
    from services.shared.tasks import StoredObject, TaskReport, TaskResult
    from services.shared.workflow_kit import Step

    from ..schemas import PROCESS_ACTIVITY, EchoInput, EchoRequest

PROCESS = Call(
    Step(
        PROCESS_ACTIVITY,
        start_to_close=timedelta(seconds=60),
        retry=RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=5),
        heartbeat=timedelta(seconds=5),
    ),
    default_code="echo_failed",
)


def result(request: EchoRequest, stored: StoredObject) -> TaskResult:
    return TaskResult(objects={"text": stored}, data={"length": len(request.message)})


@workflow.defn(name="EchoWorkflow")
class EchoWorkflow(SyncCallWorkflow):
    @workflow.run
    async def run(self, input: EchoInput) -> TaskReport:
        # The activity works for the requested delay, on top of the minute every attempt gets.
        limit = PROCESS.step.start_to_close + timedelta(seconds=input.job.delay_seconds)
        call = replace(PROCESS, step=replace(PROCESS.step, start_to_close=limit))
        return await self.call(input, call, StoredObject, result)

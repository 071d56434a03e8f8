from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from services.shared.sync_call import Call, SyncCallWorkflow
    from services.shared.tasks import StoredObject, TaskReport, TaskResult
    from services.shared.workflow_kit import Step

    from ..schemas import MAX_DELAY_SECONDS, PROCESS_ACTIVITY, EchoInput, EchoRequest

PROCESS = Call(
    Step(
        PROCESS_ACTIVITY,
        start_to_close=timedelta(seconds=60),
        retry=RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=5),
        heartbeat=timedelta(seconds=5),
    ),
    default_code="echo_failed",
)


def with_delay(seconds: float) -> Call:
    """The call of a request that asks for ``seconds`` of work: every attempt gets them on top of its minute."""
    return replace(
        PROCESS, step=replace(PROCESS.step, start_to_close=PROCESS.step.start_to_close + timedelta(seconds=seconds))
    )


# The call of the longest request: what the execution timeout allows for.
SLOWEST = with_delay(MAX_DELAY_SECONDS)


def result(request: EchoRequest, stored: StoredObject) -> TaskResult:
    return TaskResult(objects={"text": stored}, data={"length": len(request.message)})


@workflow.defn(name="EchoWorkflow")
class EchoWorkflow(SyncCallWorkflow):
    @workflow.run
    async def run(self, input: EchoInput) -> TaskReport:
        return await self.call(input, with_delay(input.job.delay_seconds), StoredObject, result)

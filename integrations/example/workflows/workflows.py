"""The task's workflow: the sync-call kit with this provider's final errors, retry policy and deadline."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from services.shared.sync_call import Call, SyncCallWorkflow
    from services.shared.tasks import TaskReport, TaskResult
    from services.shared.workflow_kit import Step

    from ..schemas import CALL_ACTIVITY, ExampleInput, ExampleRequest, ExampleResult

CALL = Call(
    Step(
        CALL_ACTIVITY,
        # Longer than the client's own timeout (ProviderSettings.timeout_seconds).
        start_to_close=timedelta(minutes=10),
        retry=RetryPolicy(
            initial_interval=timedelta(seconds=2),
            maximum_interval=timedelta(seconds=60),
            maximum_attempts=5,
            # Answers that no retry can change: the task fails at once with the provider's reason.
            non_retryable_error_types=["provider_rejected", "provider_auth"],
        ),
        # The activity heartbeats every 2 s: a worker that dies is noticed after this long.
        heartbeat=timedelta(seconds=10),
        # The task's deadline over all attempts.
        schedule_to_close=timedelta(minutes=30),
    ),
    default_code="call_failed",
)


def result(request: ExampleRequest, called: ExampleResult) -> TaskResult:
    return TaskResult(objects={"result": called.result}, data={"model": called.model})


@workflow.defn(name="ExampleWorkflow")
class ExampleWorkflow(SyncCallWorkflow):
    @workflow.run
    async def run(self, input: ExampleInput) -> TaskReport:
        return await self.call(input, CALL, ExampleResult, result)

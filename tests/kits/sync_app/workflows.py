from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from services.shared.sync_call import Call, SyncCallWorkflow
    from services.shared.tasks import TaskReport, TaskResult
    from services.shared.workflow_kit import Step

    from .schemas import CALL_ACTIVITY, AppInput, Called, Job

FINAL_ERRORS = ("content_rejected", "provider_auth")
CALL = Call(
    Step(
        CALL_ACTIVITY,
        start_to_close=timedelta(minutes=1),
        retry=RetryPolicy(
            initial_interval=timedelta(seconds=1),
            maximum_interval=timedelta(seconds=10),
            maximum_attempts=3,
            non_retryable_error_types=list(FINAL_ERRORS),
        ),
        heartbeat=timedelta(seconds=5),
    ),
    default_code="call_failed",
)
# The same call with a deadline over all its attempts.
DEADLINE = timedelta(minutes=5)
CALL_WITH_DEADLINE = Call(
    Step(
        CALL_ACTIVITY,
        start_to_close=timedelta(minutes=1),
        retry=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=100),
        schedule_to_close=DEADLINE,
    ),
    default_code="call_failed",
)


def result(job: Job, called: Called) -> TaskResult:
    return TaskResult(objects={"text": called.text}, data={"model": called.model, "prompt": job.prompt})


@workflow.defn(name="KitSyncWorkflow")
class KitSyncWorkflow(SyncCallWorkflow):
    @workflow.run
    async def run(self, input: AppInput) -> TaskReport:
        return await self.call(input, CALL, Called, result)


@workflow.defn(name="KitSyncDeadlineWorkflow")
class KitSyncDeadlineWorkflow(SyncCallWorkflow):
    @workflow.run
    async def run(self, input: AppInput) -> TaskReport:
        return await self.call(input, CALL_WITH_DEADLINE, Called, result)

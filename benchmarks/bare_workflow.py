"""A bare workflow with the same shape as the echo task's: report, process, report, as three activities that do
nothing. It is the ceiling the throughput benchmark compares the platform against. Sandbox-safe: only
temporalio is imported here."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

REPORT = "bare.report"
PROCESS = "bare.process"


@activity.defn(name=REPORT)
async def report(task_id: str) -> str:
    return task_id


@activity.defn(name=PROCESS)
async def process(message: str) -> str:
    return message


TIMEOUT = timedelta(seconds=60)
RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=5)


@workflow.defn(name="BareWorkflow")
class BareWorkflow:
    @workflow.run
    async def run(self, message: str) -> str:
        await workflow.execute_activity(REPORT, message, start_to_close_timeout=TIMEOUT, retry_policy=RETRY)
        result: str = await workflow.execute_activity(
            PROCESS, message, result_type=str, start_to_close_timeout=TIMEOUT, retry_policy=RETRY
        )
        await workflow.execute_activity(REPORT, message, start_to_close_timeout=TIMEOUT, retry_policy=RETRY)
        return result

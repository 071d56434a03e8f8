"""Helpers for task workflows. Imported by workflow code, so only deterministic, sandbox-safe parts here."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from .reporting import REPORT_ACTIVITY, ReportInput
    from .tasks import ReportOutcome, TaskError, TaskReport, TaskResult, is_terminal

# main may be restarting or briefly unreachable: keep retrying for a while, then give up so the
# workflow still ends; main's query-time sync derives the final state from the workflow result.
REPORT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10))
REPORT_START_TO_CLOSE = timedelta(seconds=15)
REPORT_SCHEDULE_TO_CLOSE = timedelta(minutes=30)


async def report(task_id: str, state: TaskReport) -> ReportOutcome | None:
    """Report a state change to main. A report that cannot be delivered does not fail the task: main
    reads the workflow's state and result at query time, so the work done is never lost."""
    try:
        outcome: ReportOutcome = await workflow.execute_activity(
            REPORT_ACTIVITY,
            ReportInput(task_id=task_id, report=state),
            result_type=ReportOutcome,
            start_to_close_timeout=REPORT_START_TO_CLOSE,
            schedule_to_close_timeout=REPORT_SCHEDULE_TO_CLOSE,
            retry_policy=REPORT_RETRY,
        )
    except ActivityError as err:
        # A cancel that lands while a progress report is in flight must reach the workflow, not pass for an
        # undelivered report. A final report's outcome is already decided and is returned by the workflow.
        if is_cancelled_exception(err) and not is_terminal(state.status):
            raise
        workflow.logger.warning("report %s for task %s not delivered: %s", state.status, task_id, err.cause or err)
        return None
    return outcome


def succeeded(result: TaskResult) -> TaskReport:
    return TaskReport(status="succeeded", progress=1.0, result=result)


def failed(code: str, message: str, retryable: bool = False) -> TaskReport:
    return TaskReport(status="failed", error=TaskError(code=code, message=message, retryable=retryable))


def cancelled() -> TaskReport:
    return TaskReport(status="cancelled", error=TaskError(code="cancelled", message="the task was cancelled"))

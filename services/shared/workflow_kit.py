"""What every task workflow is built from. Imported by workflow code, so only deterministic, sandbox-safe parts here.

A task workflow keeps its state for main's read-time sync (the ``task_state`` query), schedules its activities
through ``Step``, and ends with exactly one final report, which is also its result. "Running" is reported by the
activity that starts the provider work (see ``activity_kit``), not by a step of its own.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from .reporting import REPORT_ACTIVITY, ReportInput
    from .tasks import ReportOutcome, TaskEnvelope, TaskError, TaskReport, TaskResult, is_terminal

R = TypeVar("R")


def provider_queue(task_queue: str) -> str:
    """The task queue of an integration's provider calls: its own, so the Temporal server can limit their rate
    across every worker (the launcher serves it with the integration's ``requests_per_second``)."""
    return f"{task_queue}.provider"


@dataclass(frozen=True)
class Step:
    """An activity as a workflow schedules it: its name and options. Every kit schedules its activities
    through ``start``, so an option they all need (a task queue of their own, a priority) is added here once."""

    activity: str
    start_to_close: timedelta
    retry: RetryPolicy
    heartbeat: timedelta | None = None
    # Bounds all attempts together: past it the step fails and the task with it.
    schedule_to_close: timedelta | None = None
    # The activity calls the provider's API, so it runs on the provider queue and each attempt counts against
    # the provider's rate. Only the kits' own steps (reports, slots, copies from a provider's media links) do not.
    provider_call: bool = True


def start(step: Step, input: Any, result_type: type[R]) -> workflow.ActivityHandle[R]:
    info = workflow.info()
    return workflow.start_activity(
        step.activity,
        input,
        result_type=result_type,
        task_queue=provider_queue(info.task_queue) if step.provider_call else None,
        start_to_close_timeout=step.start_to_close,
        heartbeat_timeout=step.heartbeat,
        schedule_to_close_timeout=step.schedule_to_close,
        retry_policy=step.retry,
        # The task's priority and its user's fairness key, which main started the workflow with (continued runs
        # keep them): the queue orders backlogged activities by them.
        priority=info.priority,
    )


async def execute(step: Step, input: Any, result_type: type[R]) -> R:
    return await start(step, input, result_type)


# main may be restarting or briefly unreachable: keep retrying for a while, then give up so the
# workflow still ends; main's query-time sync derives the final state from the workflow result.
REPORT = Step(
    REPORT_ACTIVITY,
    start_to_close=timedelta(seconds=15),
    retry=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10)),
    schedule_to_close=timedelta(minutes=30),
    provider_call=False,
)


async def report(task_id: str, state: TaskReport) -> ReportOutcome | None:
    """Report a state change to main. A report that cannot be delivered does not fail the task: main
    reads the workflow's state and result at query time, so the work done is never lost."""
    try:
        return await execute(REPORT, ReportInput(task_id=task_id, report=state), ReportOutcome)
    except ActivityError as err:
        # A cancel that lands while a progress report is in flight must reach the workflow, not pass for an
        # undelivered report. A final report's outcome is already decided and is returned by the workflow.
        if is_cancelled_exception(err) and not is_terminal(state.status):
            raise
        workflow.logger.warning("report %s for task %s not delivered: %s", state.status, task_id, err.cause or err)
        return None


class TaskWorkflow:
    """The base of every task workflow: its state, and how it ends."""

    def __init__(self) -> None:
        self._state = TaskReport(status="queued")

    @workflow.query
    def task_state(self) -> TaskReport:
        """What main's read-time sync applies while the workflow runs, so a lost report cannot leave the task
        stuck: always a state the workflow has reported or is about to."""
        return self._state

    async def finish(self, task: TaskEnvelope, outcome: TaskReport) -> TaskReport:
        """Report the outcome (again if a cancel interrupts that report: it must not be lost), let the message
        handlers still running answer, and return the outcome as the workflow's result."""
        self._state = outcome
        try:
            await report(task.id, outcome)
        except asyncio.CancelledError:
            await report(task.id, outcome)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return outcome


def running(provider_task_id: str | None = None) -> TaskReport:
    """The running state; reported by the activity that starts the provider work (with the provider's job id,
    once there is one)."""
    return TaskReport(status="running", progress=0.0, provider_task_id=provider_task_id)


def succeeded(result: TaskResult) -> TaskReport:
    return TaskReport(status="succeeded", progress=1.0, result=result)


def failed(code: str, message: str, retryable: bool = False) -> TaskReport:
    return TaskReport(status="failed", error=TaskError(code=code, message=message, retryable=retryable))


def cancelled(note: str = "") -> TaskReport:
    message = f"the task was cancelled; {note}" if note else "the task was cancelled"
    return TaskReport(status="cancelled", error=TaskError(code="cancelled", message=message))

"""What every task workflow is built from. Imported by workflow code, so only deterministic, sandbox-safe parts here.

A task workflow keeps its state for main's read-time sync (the ``task_state`` query), schedules its activities
through ``Step``, and ends with exactly one final report, which is also its result: a local activity, run in the
workflow task that ends the run. "Running" is reported by the activity that starts the provider work (see
``activity_kit``), not by a step of its own.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, FailureError, RetryState, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from .reporting import REPORT_ACTIVITY, ReportInput
    from .tasks import ReportOutcome, TaskEnvelope, TaskError, TaskReport, TaskResult, is_terminal

R = TypeVar("R")

# A cancel waits until an activity that stores objects has stopped (``Step.stores_objects``). Before this patch it
# did not: the final report removed the task's objects while such an activity could still store one.
CANCEL_WAITS = "cancel-waits"
# A task's own deadline (``TaskEnvelope.deadline``) is enforced. Runs that started before this patch replay without
# it, even those whose input carries one (main may have been upgraded before the workers).
DEADLINES = "task-deadlines"
# The final report runs as a local activity, inside the workflow task that ends the run, instead of as an activity
# task of its own: one workflow task and one activity task fewer per task. Runs that started before this patch
# replay with the activity.
LOCAL_FINAL_REPORT = "local-final-report"


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
    # The activity stores objects: a cancel waits until it has stopped, so that it cannot store one after the
    # task's final report has removed them.
    stores_objects: bool = False

    @property
    def longest(self) -> timedelta:
        """The most all attempts together can take: ``schedule_to_close``, else every attempt's
        ``start_to_close`` and the retry delays between them. A step must be bounded one way or the other."""
        if self.schedule_to_close is not None:
            return self.schedule_to_close
        attempts = self.retry.maximum_attempts
        if attempts < 1:
            raise ValueError(f"step {self.activity}: unlimited attempts need a schedule_to_close")
        first = self.retry.initial_interval
        cap = self.retry.maximum_interval or 100 * first
        waits = (min(first * self.retry.backoff_coefficient**n, cap) for n in range(attempts - 1))
        return attempts * self.start_to_close + sum(waits, timedelta())


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
        cancellation_type=_cancellation(step),
        # The task's priority and its user's fairness key, which main started the workflow with (continued runs
        # keep them): the queue orders backlogged activities by them.
        priority=info.priority,
    )


def _cancellation(step: Step) -> ActivityCancellationType:
    # Runs that scheduled the step before the patch went on at once after the cancel: they replay that way.
    if step.stores_objects and workflow.patched(CANCEL_WAITS):
        return ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
    return ActivityCancellationType.TRY_CANCEL


async def execute(step: Step, input: Any, result_type: type[R]) -> R:
    return await start(step, input, result_type)


def cancelled_by(err: ActivityError) -> bool:
    """The activity ended because the task was cancelled. A cancel that waits for the activity (``cancel-waits``)
    may see it end otherwise: a worker lost meanwhile makes it time out, and no retry follows once the cancel was
    requested (``RetryState.CANCEL_REQUESTED``). Either way the user's cancel decided the outcome."""
    return is_cancelled_exception(err) or err.retry_state == RetryState.CANCEL_REQUESTED


# main may be restarting or briefly unreachable: keep retrying for a while, then give up so the
# workflow still ends; main's query-time sync derives the final state from the workflow result.
REPORT = Step(
    REPORT_ACTIVITY,
    start_to_close=timedelta(seconds=15),
    retry=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10)),
    schedule_to_close=timedelta(minutes=30),
    provider_call=False,
)


# Beyond a workflow's own longest run: room for workers that restart or are briefly short.
EXECUTION_MARGIN = timedelta(minutes=15)


def execution_timeout(longest: timedelta) -> timedelta:
    """The execution timeout of a workflow whose work (its final report aside) takes at most ``longest``: a
    workflow stuck on failing workflow tasks (a bug, a non-deterministic change) ends by then."""
    return longest + REPORT.longest + EXECUTION_MARGIN


async def report(task_id: str, state: TaskReport) -> ReportOutcome | None:
    """Report a state change to main. A report that cannot be delivered does not fail the task: main
    reads the workflow's state and result at query time, so the work done is never lost."""
    input = ReportInput(task_id=task_id, report=state)
    try:
        if not workflow.patched(LOCAL_FINAL_REPORT):
            return await execute(REPORT, input, ReportOutcome)
        outcome: ReportOutcome = await workflow.execute_local_activity(
            REPORT.activity,
            input,
            result_type=ReportOutcome,
            start_to_close_timeout=REPORT.start_to_close,
            schedule_to_close_timeout=REPORT.schedule_to_close,
            retry_policy=REPORT.retry,
        )
        return outcome
    # A local activity's own failure comes as it is (an ApplicationError, a timeout), not as an ActivityError.
    except FailureError as err:
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


def deadline_of(task: TaskEnvelope) -> float | None:
    """The task's deadline (epoch seconds) as this run enforces it; None when the task has none, or its run started
    before deadlines were enforced. The deadline is absolute, set by main at the create, so time spent queued (for
    a worker, for a job slot) counts."""
    if task.deadline is None or not workflow.patched(DEADLINES):
        return None
    return task.deadline


def seconds_until(deadline: float) -> float:
    """Seconds from now to ``deadline`` by the workflow's clock: zero or less once it has passed."""
    return deadline - workflow.now().timestamp()


def deadline_exceeded(task: TaskEnvelope, note: str = "") -> TaskReport:
    """The failed state of a task whose deadline has passed; ``note`` says what became of the provider's work."""
    assert task.deadline is not None
    message = f"the task was not done by its deadline ({datetime.fromtimestamp(task.deadline, UTC).isoformat()})"
    return failed("deadline_exceeded", f"{message}; {note}" if note else message, retryable=True)


def running(provider_task_id: str | None = None, provider_attempts: int | None = None) -> TaskReport:
    """The running state; reported by the activity that starts the provider work (with the provider's job id,
    once there is one, and the attempt it is)."""
    return TaskReport(
        status="running", progress=0.0, provider_task_id=provider_task_id, provider_attempts=provider_attempts
    )


def succeeded(result: TaskResult) -> TaskReport:
    return TaskReport(status="succeeded", progress=1.0, result=result)


def failed(code: str, message: str, retryable: bool = False) -> TaskReport:
    return TaskReport(status="failed", error=TaskError(code=code, message=message, retryable=retryable))


def cancelled(note: str = "") -> TaskReport:
    message = f"the task was cancelled; {note}" if note else "the task was cancelled"
    return TaskReport(status="cancelled", error=TaskError(code="cancelled", message=message))

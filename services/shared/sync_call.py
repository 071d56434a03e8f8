"""The sync-call pattern: one slow provider request returns the result.

One activity does all of the outside work: it reports the task running, calls the provider and stores the
result, and returns where the result is (never its bytes). Temporal retries it with the integration's bounded
policy. The workflow maps the outcome: success -> ``succeeded``; a final provider answer (a code in the retry
policy's ``non_retryable_error_types``, or a non-retryable error) -> ``failed`` at once with the provider's
reason; retries exhausted -> ``failed``, retryable, naming the last cause; past the call's own bound
(``schedule_to_close``) or the task's deadline -> ``deadline_exceeded`` (an attempt in flight at the task's
deadline is cancelled and waited for); cancel -> ``cancelled``, once the activity has stopped (it could otherwise
store the result after the final report removed the task's objects). Then it sends the one final report.

An integration supplies its types, its ``Call`` and a function that turns the activity's result into the
task's result; its workflow's ``run`` is one line:

    @workflow.defn(name="AcmeWorkflow")
    class AcmeWorkflow(SyncCallWorkflow):
        @workflow.run
        async def run(self, input: TaskInput[AcmeJob]) -> TaskReport:
            return await self.call(input, CALL, AcmeResult, to_result)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Generic, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, RetryState
from temporalio.exceptions import TimeoutError as ActivityTimeoutError

with workflow.unsafe.imports_passed_through():
    import msgspec

    from .tasks import TaskEnvelope, TaskReport, TaskResult
    from .workflow_kit import (
        Step,
        TaskWorkflow,
        cancelled,
        cancelled_by,
        deadline_exceeded,
        deadline_of,
        execution_timeout,
        failed,
        running,
        seconds_until,
        start,
        succeeded,
    )

J = TypeVar("J")
R = TypeVar("R")

# Causes that are ours or the provider's for now: kept as the task's error code when the retries run out.
TRANSIENT_ERRORS = ("provider_unavailable", "storage_unavailable")


class TaskInput(msgspec.Struct, Generic[J], frozen=True):
    """A sync-call workflow's input: the task and the validated job (the request as the provider call needs it)."""

    task: TaskEnvelope
    job: J


class CallInput(msgspec.Struct, Generic[J], frozen=True):
    """The activity's input."""

    task: TaskEnvelope
    job: J


@dataclass(frozen=True)
class Call:
    """What a sync-call integration declares about its activity: the step (name, timeouts, heartbeat, and a
    bounded retry policy whose ``non_retryable_error_types`` are the provider's final codes; its
    ``schedule_to_close`` is the task's deadline), the task's error code for causes that are not the provider's
    (``default_code``), and the code of attempts that all timed out."""

    step: Step
    default_code: str
    transient_errors: tuple[str, ...] = TRANSIENT_ERRORS
    timeout_code: str = "provider_unavailable"

    @property
    def final_errors(self) -> tuple[str, ...]:
        return tuple(self.step.retry.non_retryable_error_types or ())

    @property
    def execution_timeout(self) -> timedelta:
        """The execution timeout of a workflow that makes this call."""
        return execution_timeout(self.step.longest)


class SyncCallWorkflow(TaskWorkflow):
    async def call(
        self, input: TaskInput[J], call: Call, result_type: type[R], to_result: Callable[[J, R], TaskResult]
    ) -> TaskReport:
        self._state = running()
        task = input.task
        deadline = deadline_of(task)
        left = None if deadline is None else seconds_until(deadline)
        if left is not None and left <= 0:
            return await self.finish(task, deadline_exceeded(task, "the provider was not called"))
        expired = False
        try:
            step = replace(call.step, stores_objects=True)
            handle = start(step, CallInput(task, input.job), result_type)
            if left is not None:
                try:
                    await workflow.wait_condition(handle.done, timeout=left)
                except TimeoutError:
                    # The attempt in flight is cancelled and waited for (``stores_objects``): it stores nothing
                    # after the final report.
                    expired = True
                    handle.cancel()
                except asyncio.CancelledError:
                    handle.cancel()
            done = await handle
        except ActivityError as err:
            if expired:
                outcome = deadline_exceeded(task, "the provider call in flight was cancelled")
            else:
                outcome = cancelled() if cancelled_by(err) else failure(err, call)
        except asyncio.CancelledError:
            outcome = cancelled()
        else:
            # An attempt that finished as the deadline passed keeps its result: it was paid for.
            outcome = succeeded(to_result(input.job, done))
        return await self.finish(task, outcome)


def failure(err: ActivityError, call: Call) -> TaskReport:
    """The failed state for an activity that will not be tried again, naming the last cause."""
    cause = err.cause
    final = call.final_errors
    if isinstance(cause, ApplicationError) and (cause.non_retryable or cause.type in final):
        return failed(cause.type if cause.type in final else call.default_code, cause.message)
    if isinstance(cause, ActivityTimeoutError):
        what = cause.type.name.lower().replace("_", "-") if cause.type is not None else "unknown"
        code, last = call.timeout_code, f"the attempt hit its {what} timeout"
    elif isinstance(cause, ApplicationError):
        code = cause.type if cause.type in call.transient_errors else call.default_code
        last = cause.message
    else:
        code, last = call.default_code, str(cause or err)
    deadline = call.step.schedule_to_close
    if deadline is not None and err.retry_state == RetryState.TIMEOUT:
        return failed("deadline_exceeded", f"not done within {deadline}; last error: {last}", retryable=True)
    return failed(code, f"{_gave_up(err.retry_state, call.step.retry)}; last error: {last}", retryable=True)


def _gave_up(state: RetryState | None, retry: RetryPolicy) -> str:
    if state == RetryState.MAXIMUM_ATTEMPTS_REACHED:
        return f"gave up after {retry.maximum_attempts} attempts"
    return f"gave up ({state.name.lower() if state is not None else 'no retry state'})"

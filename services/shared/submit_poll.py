"""The submit-poll pattern: one call creates a provider job, another reads it until it is done.

The workflow submits the job (never a second paid one), polls it with backoff until the provider's view of it is
final, copies the result into object storage (provider links expire), and sends the one final report.

- Slots: before the submit the task takes one of the integration's job slots (``job_slots``), which caps the
  jobs in flight at the provider across every worker; it gives the slot back once the job is final there (a job
  the provider could not cancel is watched until it is), or when the task ends without a job.
- Submit: each attempt runs once. It is tried again only when the provider surely created nothing (it refused,
  or the request was never sent), or when the job carries the provider's idempotency key (the task id); an
  attempt that may have reached the provider otherwise fails the task as uncertain. The submit activity reports
  the task running with the provider's job id, and heartbeats the job id first, so a worker lost right after the
  provider accepted still hands it over. The submit is shielded: a cancel waits for its answer, then cancels the
  job instead of leaving it behind unseen.
- Poll: in the workflow, with the delay growing by ``backoff`` up to ``max_seconds``; a transient query failure
  waits for the next poll, a final one fails the task. Past the deadline (the worker's poll deadline from the
  submit, or the task's own from its create, whichever comes first) the job is cancelled and the task fails
  ``deadline_exceeded``; the task's deadline also ends a wait for a job slot and the submit's retries.
- A user's refresh (update ``refresh``) and a provider callback (signal ``callback``) only wake the poll loop:
  the loop is the one place that queries the provider and concludes the task, so nothing concludes twice, and
  a callback's body is never trusted.
- Cancel: a copy in progress is stopped first (waited for, so it stores nothing after the final report), then the
  provider's job is cancelled (a provider without a cancel endpoint keeps it: the task says so).
- Every ``polls_per_run`` polls the workflow continues as new, so a job of any length keeps a bounded history;
  the workflow id stays the same, so main's queries, updates and cancels reach the current run.
- It ends only once every message handler has answered.

An integration supplies its request type, its provider's view of a job (the query activity's result), a
``verdict`` that maps a view to ours, and the names, codes and settings in its ``Job``; its activities use the
kit's input and output types below. Its workflow's ``run`` is one line:

    @workflow.defn(name="AcmeWorkflow")
    class AcmeWorkflow(SubmitPollWorkflow):
        @workflow.run
        async def run(self, input: JobInput[AcmeRequest]) -> TaskReport:
            return await self.run_job(input, JOB)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any, Generic, Literal, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import TimeoutError as ActivityTimeoutError

with workflow.unsafe.imports_passed_through():
    import msgspec

    from .job_slots import GRANTED_SIGNAL, TaskSlot
    from .settings import Env, SettingsError
    from .tasks import StoredObject, TaskEnvelope, TaskError, TaskReport, TaskResult
    from .workflow_kit import (
        Step,
        TaskWorkflow,
        cancelled,
        cancelled_by,
        deadline_exceeded,
        deadline_of,
        execute,
        execution_timeout,
        failed,
        running,
        seconds_until,
        start,
        succeeded,
    )

Q = TypeVar("Q")
V = TypeVar("V")

# Message names main uses to reach a running workflow.
REFRESH_UPDATE = "refresh"
CALLBACK_SIGNAL = "callback"
# Runs that started before job slots existed neither take nor give back one.
JOB_SLOTS_PATCH = "job-slots"


# The default and the longest deadline a worker may set: the workflows' execution timeout allows no more.
DEADLINE_SECONDS = 7200.0


# --- types stored in Temporal history: they accept unknown fields -------------------------------------------


class PollPolicy(msgspec.Struct, frozen=True):
    """How the workflow polls: first delay, growth factor, cap, overall deadline, and polls per run (after
    which the workflow continues as new, so its history stays bounded)."""

    initial_seconds: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    backoff: Annotated[float, msgspec.Meta(ge=1)] = 1.5
    max_seconds: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    deadline_seconds: Annotated[float, msgspec.Meta(gt=0)] = DEADLINE_SECONDS
    polls_per_run: Annotated[int, msgspec.Meta(ge=1)] = 100

    @classmethod
    def from_env(cls, env: Env, prefix: str) -> PollPolicy:
        """A worker's policy: ``<prefix>_POLL_INITIAL_SECONDS``, ``_POLL_BACKOFF``, ``_POLL_MAX_SECONDS``,
        ``_DEADLINE_SECONDS`` (at most ``DEADLINE_SECONDS``) and ``_POLLS_PER_RUN``, each defaulting to the
        field's default."""
        defaults = cls()
        try:
            # The constructor does not check Meta constraints; convert does, naming the field.
            policy = msgspec.convert(
                {
                    "initial_seconds": env.get_float(f"{prefix}_POLL_INITIAL_SECONDS", defaults.initial_seconds),
                    "backoff": env.get_float(f"{prefix}_POLL_BACKOFF", defaults.backoff),
                    "max_seconds": env.get_float(f"{prefix}_POLL_MAX_SECONDS", defaults.max_seconds),
                    "deadline_seconds": env.get_float(f"{prefix}_DEADLINE_SECONDS", defaults.deadline_seconds),
                    "polls_per_run": env.get_int(f"{prefix}_POLLS_PER_RUN", defaults.polls_per_run),
                },
                cls,
            )
        except msgspec.ValidationError as exc:
            raise SettingsError(f"{prefix}_POLL_* / {prefix}_DEADLINE_SECONDS settings: {exc}") from exc
        if policy.deadline_seconds > DEADLINE_SECONDS:
            raise SettingsError(
                f"{prefix}_DEADLINE_SECONDS is {policy.deadline_seconds:g}: at most {DEADLINE_SECONDS:g} "
                "(the workflows' execution timeout allows no more)"
            )
        return policy


class PollState(msgspec.Struct, frozen=True):
    """What a continued run needs: everything after the submit."""

    provider_task_id: str
    poll: PollPolicy
    # Absolute workflow time (epoch seconds) after which the task fails with deadline_exceeded.
    deadline: float
    delay: float
    polls: int
    runs: int
    # A refresh or callback arrived just before the run continued as new: poll at once.
    wake: bool = False
    # The task holds one of the integration's job slots.
    slot: bool = False


class JobInput(msgspec.Struct, Generic[Q], frozen=True):
    """A submit-poll workflow's input. Continued runs carry no request (only the submit needs it) but ``resume``."""

    task: TaskEnvelope
    request: Q | None
    # None: the worker's policy (its settings), decided by the submit activity.
    poll: PollPolicy | None = None
    resume: PollState | None = None


class SubmitInput(msgspec.Struct, Generic[Q], frozen=True):
    """The submit activity's input. main's callback URL for the task is not in it: it carries the task's callback
    token, so the activity asks main for it (``ActivityKit.callback_url``) and it never enters Temporal's history."""

    task: TaskEnvelope
    request: Q
    poll: PollPolicy | None
    # Sent to a provider that deduplicates submits; None when the provider has no idempotency key.
    idempotency_key: str | None = None
    # Which of the workflow's submit attempts this is (each activity runs once: the workflow retries): the task's
    # provider attempts once the provider accepts.
    attempt: int = 1


class Submitted(msgspec.Struct, frozen=True):
    provider_task_id: str
    # The policy in force: the workflow input's, else the worker's settings.
    poll: PollPolicy


class JobRef(msgspec.Struct, frozen=True):
    """The input of the query and cancel activities."""

    task: TaskEnvelope
    provider_task_id: str


class CancelOutcome(msgspec.Struct, frozen=True):
    # Whether the provider dropped the job; when not, the status it had.
    cancelled: bool
    status: str


class CopyInput(msgspec.Struct, Generic[V], frozen=True):
    """The copy activity's input: the provider's final view of the job. A provider whose result needs a second
    call for an expiring link is asked inside the copy, so every attempt gets a fresh one."""

    task: TaskEnvelope
    job: V


class Copied(msgspec.Struct, frozen=True):
    objects: dict[str, StoredObject]


class CallbackHint(msgspec.Struct, frozen=True):
    """What a provider callback claimed: logged, never acted on."""

    provider_task_id: str | None = None
    status: str | None = None


# --- what an integration declares ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What the provider's view of a job means for the task."""

    state: Literal["pending", "succeeded", "failed", "cancelled"]
    # The result's metadata, when succeeded.
    data: dict[str, Any] = field(default_factory=dict[str, Any])
    # Why, when failed or cancelled on the provider's side.
    error: TaskError | None = None

    @classmethod
    def pending(cls) -> Verdict:
        return cls("pending")

    @classmethod
    def succeeded(cls, data: dict[str, Any]) -> Verdict:
        return cls("succeeded", data=data)

    @classmethod
    def failed(cls, code: str, message: str, retryable: bool = False) -> Verdict:
        return cls("failed", error=TaskError(code, message, retryable))

    @classmethod
    def cancelled(cls, message: str) -> Verdict:
        return cls("cancelled", error=TaskError("cancelled", message))


@dataclass(frozen=True)
class Activities:
    """The names of a submit-poll integration's four activities."""

    submit: str
    query: str
    cancel: str
    copy: str

    @classmethod
    def named(cls, prefix: str) -> Activities:
        return cls(f"{prefix}.submit", f"{prefix}.query", f"{prefix}.cancel", f"{prefix}.copy_result")


def _policy(initial: float, maximum: float, attempts: int) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=initial),
        maximum_interval=timedelta(seconds=maximum),
        maximum_attempts=attempts,
    )


@dataclass(frozen=True)
class Job(Generic[V]):
    """What a submit-poll integration declares: its provider's name (in messages) and error-code prefix
    (``<codes>_submit_uncertain``, ``_submit_failed``, ``_query_failed``, ``_copy_failed``), its activities,
    the view type and the verdict, what its provider can do, and its retry settings."""

    provider: str
    codes: str
    activities: Activities
    view: type[V]
    verdict: Callable[[V], Verdict]
    # The provider deduplicates submits by the key the workflow sends (the task id): an uncertain submit may be
    # sent again.
    idempotent_submit: bool = False
    # False: the provider has no cancel endpoint; a cancelled task says that its job keeps running there.
    can_cancel: bool = True
    # How a cancel's answer reads in the task's message; by default the kit's words.
    cancel_note: Callable[[CancelOutcome], str] | None = None
    submit_attempts: int = 6
    # The submit's first retry delay, growth and cap (seconds), unless the provider says how long to wait.
    submit_backoff: tuple[float, float, float] = (2.0, 2.0, 60.0)
    submit_timeout: timedelta = timedelta(seconds=60)
    query_retry: RetryPolicy = field(default_factory=lambda: _policy(1, 30, 4))
    copy_timeout: timedelta = timedelta(minutes=30)
    copy_retry: RetryPolicy = field(default_factory=lambda: _policy(2, 60, 5))

    def steps(self) -> tuple[Step, Step, Step, Step]:
        names = self.activities
        return (
            Step(names.submit, start_to_close=self.submit_timeout, retry=RetryPolicy(maximum_attempts=1)),
            Step(names.query, start_to_close=timedelta(seconds=20), retry=self.query_retry),
            Step(names.cancel, start_to_close=timedelta(seconds=30), retry=_policy(1, 10, 3)),
            # A download from the provider's media link, not a call of its API.
            Step(
                names.copy,
                start_to_close=self.copy_timeout,
                heartbeat=timedelta(seconds=60),
                retry=self.copy_retry,
                stores_objects=True,
                provider_call=False,
            ),
        )

    @property
    def execution_timeout(self) -> timedelta:
        """The execution timeout of a workflow that runs this job: every submit attempt and the waits between
        them, the longest deadline, a query in flight then, and the copy or the cancel that follows."""
        submit, query, cancel, copy = self.steps()
        delay, growth, cap = self.submit_backoff
        waits = sum(min(delay * growth**n, cap) for n in range(self.submit_attempts - 1))
        submitting = self.submit_attempts * submit.longest + timedelta(seconds=waits)
        concluding = query.longest + max(copy.longest, cancel.longest)
        return execution_timeout(submitting + timedelta(seconds=DEADLINE_SECONDS) + concluding)

    def note(self, outcome: CancelOutcome | None) -> str:
        if not self.can_cancel:
            return f"{self.provider} has no way to cancel a job: it keeps running there"
        if outcome is None:
            return f"{self.provider} could not be asked to cancel its job"
        if self.cancel_note is not None:
            return self.cancel_note(outcome)
        if outcome.cancelled:
            return f"{self.provider} cancelled its job"
        return f"{self.provider} did not cancel its job (it is {outcome.status})"


def activity_failure(err: ActivityError, default_code: str) -> TaskReport:
    """A failed task from an activity's failure, keeping the provider's error code and message."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return failed(cause.type or default_code, cause.message, retryable=not cause.non_retryable)
    if isinstance(cause, ActivityTimeoutError):
        return failed(f"{default_code}_timeout", str(cause), retryable=True)
    return failed(default_code, str(cause or err), retryable=True)


class SubmitPollWorkflow(TaskWorkflow):
    def __init__(self) -> None:
        super().__init__()
        self._provider_task_id: str | None = None
        # Set by a refresh or a callback: poll now instead of when the timer fires.
        self._wake = False
        self._finished = False
        self._queries_started = 0
        self._queries_done = 0
        self._slot = TaskSlot()
        # The provider's job may still be in flight there: from its submit until a poll saw it final.
        self._job_open = False
        # The poll policy and deadline of the job, once it is submitted.
        self._policy = PollPolicy()
        self._deadline: float | None = None
        # The task's own deadline, when this run enforces one (``workflow_kit.deadline_of``).
        self._task_deadline: float | None = None
        # Submit attempts made (first run only: a continued run has its job).
        self._attempts = 0

    @workflow.update(name=REFRESH_UPDATE)
    async def refresh(self) -> TaskReport:
        """Query the provider now. Answers once a query that started after this request has been handled (when
        it found the job done, once the task is concluded), with the task's state then."""
        target = self._queries_started + 1
        self._wake = True
        await workflow.wait_condition(lambda: self._finished or self._queries_done >= target)
        return self._state

    @workflow.signal(name=CALLBACK_SIGNAL)
    def callback(self, hint: CallbackHint) -> None:
        workflow.logger.info("provider callback (claims %s for %s): querying", hint.status, hint.provider_task_id)
        self._wake = True

    @workflow.signal(name=GRANTED_SIGNAL)
    def job_slot(self) -> None:
        self._slot.granted()

    async def run_job(self, input: JobInput[Q], job: Job[V]) -> TaskReport:
        resume = input.resume
        try:
            if resume is not None:
                self._provider_task_id = resume.provider_task_id
                self._state = running(resume.provider_task_id)
                self._wake = resume.wake
                self._slot = TaskSlot("held" if resume.slot else "none")
                self._job_open = True
                self._policy, self._deadline = resume.poll, resume.deadline
                outcome = await self._poll(input, job, resume)
            else:
                self._task_deadline = deadline_of(input.task)
                if not self._past_deadline() and workflow.patched(JOB_SLOTS_PATCH):
                    await self._slot.take(input.task, self._task_deadline)
                if self._past_deadline():
                    started: PollState | TaskReport = deadline_exceeded(input.task, self._unsubmitted(job))
                else:
                    started = await self._submit(input, job)
                if isinstance(started, TaskReport):
                    outcome = started
                else:
                    self._state = running(started.provider_task_id)
                    outcome = await self._poll(input, job, started)
        except asyncio.CancelledError:
            outcome = await self._cancelled(input.task, job)
        except ActivityError as err:
            if not cancelled_by(err):
                raise
            outcome = await self._cancelled(input.task, job)
        if outcome.provider_task_id is None and self._provider_task_id is not None:
            outcome = msgspec.structs.replace(outcome, provider_task_id=self._provider_task_id)
        if self._attempts:
            outcome = msgspec.structs.replace(outcome, provider_attempts=self._attempts)
        self._finished = True
        report = await self.finish(input.task, outcome)
        if self._job_open and self._slot.state == "held":
            await self._watch_until_final(input.task, job)
        await self._slot.give_back()
        return report

    async def _submit(self, input: JobInput[Q], job: Job[V]) -> PollState | TaskReport:
        assert input.request is not None, "a first run carries the request"
        step = job.steps()[0]
        key = input.task.id if job.idempotent_submit else None
        delay, growth, cap = job.submit_backoff
        for attempt in range(1, job.submit_attempts + 1):
            if self._past_deadline():
                return deadline_exceeded(input.task, self._unsubmitted(job))
            self._attempts = attempt
            submit = SubmitInput(input.task, input.request, input.poll, key, attempt)
            handle = start(step, submit, Submitted)
            try:
                # Shielded: once sent, the provider may accept the job whatever we do, so a cancel waits for the
                # answer and then cancels the job instead of leaving it behind unseen.
                return self._started(await asyncio.shield(handle))
            except asyncio.CancelledError:
                with contextlib.suppress(ActivityError):
                    self._provider_task_id = (await handle).provider_task_id
                    self._job_open = True
                raise
            except ActivityError as err:
                cause = err.cause
                lost = isinstance(cause, ActivityTimeoutError)
                if isinstance(cause, ActivityTimeoutError) and cause.last_heartbeat_details:
                    # The provider accepted; the worker was lost before the activity could say so.
                    return self._started(msgspec.convert(cause.last_heartbeat_details[0], Submitted))
                if lost and not job.idempotent_submit:
                    return failed(
                        f"{job.codes}_submit_uncertain",
                        f"the submit did not finish (worker lost or {job.provider} silent); {job.provider} may or "
                        "may not have created the task, so it is not resubmitted automatically",
                    )
                refused = isinstance(cause, ApplicationError) and not cause.non_retryable
                if not (lost or refused) or attempt == job.submit_attempts:
                    return activity_failure(err, f"{job.codes}_submit_failed")
                asked = cause.next_retry_delay if isinstance(cause, ApplicationError) else None
                wait = asked or timedelta(seconds=delay)
                if self._task_deadline is not None:
                    wait = min(wait, timedelta(seconds=max(seconds_until(self._task_deadline), 0)))
                workflow.logger.info("submit attempt %d failed (%s); next in %s", attempt, cause, wait)
                await workflow.sleep(wait)
                delay = min(delay * growth, cap)
        raise AssertionError("unreachable")

    def _started(self, submitted: Submitted) -> PollState:
        self._provider_task_id = submitted.provider_task_id
        self._job_open = True
        poll = submitted.poll
        deadline = workflow.now().timestamp() + poll.deadline_seconds
        if self._task_deadline is not None:
            deadline = min(deadline, self._task_deadline)
        self._policy, self._deadline = poll, deadline
        return PollState(
            provider_task_id=submitted.provider_task_id,
            poll=poll,
            deadline=self._deadline,
            delay=poll.initial_seconds,
            polls=0,
            runs=1,
            slot=self._slot.state == "held",
        )

    async def _poll(self, input: JobInput[Q], job: Job[V], state: PollState) -> TaskReport:
        policy = state.poll
        delay = min(state.delay, policy.max_seconds)
        polls = state.polls
        polls_this_run = 0
        while True:
            now = workflow.now().timestamp()
            if now >= state.deadline:
                return await self._deadline_exceeded(input.task, job, state)
            if (
                polls_this_run >= policy.polls_per_run or workflow.info().is_continue_as_new_suggested()
            ) and workflow.all_handlers_finished():
                # A refresh in flight waits for this run's next poll; the run continues as new after it.
                resume = msgspec.structs.replace(state, delay=delay, polls=polls, runs=state.runs + 1, wake=self._wake)
                workflow.continue_as_new(msgspec.structs.replace(input, request=None, resume=resume))
            if not self._wake:
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(lambda: self._wake, timeout=min(delay, state.deadline - now))
            woken = self._wake
            self._wake = False
            found = await self._query(input.task, job, state.provider_task_id)
            polls += 1
            polls_this_run += 1
            if isinstance(found, TaskReport):
                return found
            if found is not None:
                verdict = job.verdict(found)
                if verdict.state != "pending":
                    # The provider is done with the job: its slot is free before the result is copied.
                    self._job_open = False
                    await self._slot.give_back()
                    return await self._conclude(input.task, job, found, verdict)
            self._queries_done += 1
            if not woken:
                delay = min(delay * policy.backoff, policy.max_seconds)

    async def _query(self, task: TaskEnvelope, job: Job[V], provider_task_id: str) -> V | TaskReport | None:
        """The provider's view of the job; a failed task when the provider refuses for good; None when it is
        unavailable for now (the next poll tries again)."""
        self._queries_started += 1
        try:
            return await execute(job.steps()[1], JobRef(task, provider_task_id), job.view)
        except ActivityError as err:
            if cancelled_by(err):
                raise
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.non_retryable:
                # The job can no longer be followed.
                self._job_open = False
                return activity_failure(err, f"{job.codes}_query_failed")
            workflow.logger.warning("querying job %s failed for now: %s", provider_task_id, cause or err)
            return None

    async def _watch_until_final(self, task: TaskEnvelope, job: Job[V]) -> None:
        """After a cancel the provider could not carry out, the job still runs there and keeps its slot: poll it
        (no more reports) until it is final, or until its deadline."""
        assert self._provider_task_id is not None
        deadline = self._deadline if self._deadline is not None else workflow.now().timestamp()
        delay = self._policy.initial_seconds
        while (left := deadline - workflow.now().timestamp()) > 0:
            await workflow.sleep(min(delay, left))
            found = await self._query(task, job, self._provider_task_id)
            if isinstance(found, TaskReport) or (found is not None and job.verdict(found).state != "pending"):
                return
            delay = min(delay * self._policy.backoff, self._policy.max_seconds)

    async def _conclude(self, task: TaskEnvelope, job: Job[V], view: V, verdict: Verdict) -> TaskReport:
        if verdict.state == "succeeded":
            try:
                copied = await execute(job.steps()[3], CopyInput(task, view), Copied)
            except ActivityError as err:
                if cancelled_by(err):
                    raise
                return activity_failure(err, f"{job.codes}_copy_failed")
            return succeeded(TaskResult(objects=copied.objects, data=verdict.data))
        return TaskReport(status="failed" if verdict.state == "failed" else "cancelled", error=verdict.error)

    async def _deadline_exceeded(self, task: TaskEnvelope, job: Job[V], state: PollState) -> TaskReport:
        note = job.note(await self._cancel_job(task, job, state.provider_task_id))
        if task.deadline is not None and state.deadline >= task.deadline:
            # The task's own deadline came first (the envelope is the same in every continued run).
            return deadline_exceeded(task, note)
        message = f"{job.provider} did not finish within {state.poll.deadline_seconds:g} s"
        return failed("deadline_exceeded", f"{message}; {note}" if note else message, retryable=True)

    def _past_deadline(self) -> bool:
        return self._task_deadline is not None and seconds_until(self._task_deadline) <= 0

    def _unsubmitted(self, job: Job[V]) -> str:
        waited = " (it waited for a job slot)" if self._slot.state == "asked" else ""
        return f"nothing was submitted to {job.provider}{waited}"

    async def _cancelled(self, task: TaskEnvelope, job: Job[V]) -> TaskReport:
        if self._provider_task_id is None:
            return cancelled()
        return cancelled(job.note(await self._cancel_job(task, job, self._provider_task_id)))

    async def _cancel_job(self, task: TaskEnvelope, job: Job[V], provider_task_id: str) -> CancelOutcome | None:
        if not job.can_cancel:
            return None
        try:
            return await execute(job.steps()[2], JobRef(task, provider_task_id), CancelOutcome)
        except ActivityError as err:
            workflow.logger.warning("cancelling job %s failed: %s", provider_task_id, err.cause or err)
            return None

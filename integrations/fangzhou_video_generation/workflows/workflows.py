"""The task's workflow: submit to Ark, poll with backoff until Ark is done, copy the video, report.

A user's refresh (update ``refresh``) and Ark's callback (signal ``callback``) only wake the poll loop early; the
loop is the one place that queries Ark and concludes the task, so a refresh racing the poller or a callback
can never conclude it twice. The loop continues as new every ``polls_per_run`` polls, so a job of any length
keeps a bounded history; the workflow id stays the same, so main's queries, updates and cancels reach the
current run.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception
from temporalio.exceptions import TimeoutError as ActivityTimeoutError

with workflow.unsafe.imports_passed_through():
    import msgspec

    from services.shared import workflow_kit
    from services.shared.tasks import TaskError, TaskReport, TaskResult

    from ..schemas import (
        ARK_FINAL_STATUSES,
        CALLBACK_SIGNAL,
        CANCEL_ACTIVITY,
        COPY_ACTIVITY,
        QUERY_ACTIVITY,
        REFRESH_UPDATE,
        SUBMIT_ACTIVITY,
        ArkTaskView,
        CallbackHint,
        CancelInput,
        CancelOutcome,
        CopyInput,
        CopyResult,
        PollState,
        QueryInput,
        SubmitInput,
        Submitted,
        VideoInput,
    )

# Each submit attempt runs once (no activity retries): a timed-out attempt (a worker died mid-request) may have
# created the Ark job, so only failures the activity marks retryable (Ark refused, or nothing was sent) are
# tried again, here, after a backoff.
SUBMIT_ATTEMPTS = 6
SUBMIT_BACKOFF = (2.0, 2.0, 60.0)  # first delay, growth, cap (seconds)
SUBMIT_TIMEOUT = timedelta(seconds=60)
QUERY_TIMEOUT = timedelta(seconds=20)
QUERY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30), maximum_attempts=4
)
COPY_TIMEOUT = timedelta(minutes=30)
COPY_HEARTBEAT = timedelta(seconds=60)
COPY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=60), maximum_attempts=5
)
CANCEL_TIMEOUT = timedelta(seconds=30)
CANCEL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10), maximum_attempts=3
)


def _failure(err: ActivityError, default_code: str) -> TaskReport:
    """A failed task from an activity's failure, keeping Ark's error code and message."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return workflow_kit.failed(cause.type or default_code, cause.message, retryable=not cause.non_retryable)
    if isinstance(cause, ActivityTimeoutError):
        return workflow_kit.failed(f"{default_code}_timeout", str(cause), retryable=True)
    return workflow_kit.failed(default_code, str(cause or err), retryable=True)


def _result_data(view: ArkTaskView) -> dict[str, object]:
    data: dict[str, object] = {
        "model": view.model or None,
        "seed": view.seed,
        "resolution": view.resolution,
        "ratio": view.ratio,
        "duration": view.duration,
        "framespersecond": view.framespersecond,
        "usage": view.usage or None,
    }
    return {key: value for key, value in data.items() if value is not None}


@workflow.defn(name="FangzhouVideoWorkflow")
class FangzhouVideoWorkflow:
    def __init__(self) -> None:
        self._state = TaskReport(status="queued")
        self._provider_task_id: str | None = None
        # Set by a refresh or a callback: poll now instead of when the timer fires.
        self._wake = False
        self._finished = False
        self._queries_started = 0
        self._queries_done = 0

    @workflow.run
    async def run(self, input: VideoInput) -> TaskReport:
        resume = input.resume
        if resume is not None:
            self._provider_task_id = resume.provider_task_id
            self._state = TaskReport(status="running", provider_task_id=resume.provider_task_id)
            self._wake = resume.wake
        try:
            if resume is None:
                started = await self._submit(input)
                if isinstance(started, TaskReport):
                    outcome = started
                else:
                    self._state = TaskReport(status="running", provider_task_id=started.provider_task_id)
                    await workflow_kit.report(input.task_id, self._state)
                    outcome = await self._poll(input, started)
            else:
                outcome = await self._poll(input, resume)
        except asyncio.CancelledError:
            outcome = await self._cancelled()
        except ActivityError as err:
            if not is_cancelled_exception(err):
                raise
            outcome = await self._cancelled()
        return await self._finish(input.task_id, outcome)

    # -- message handlers -----------------------------------------------------------------------------

    @workflow.query
    def task_state(self) -> TaskReport:
        return self._state

    @workflow.update(name=REFRESH_UPDATE)
    async def refresh(self) -> TaskReport:
        """Query Ark now. Answers once a query that started after this request has been handled (when it
        found Ark done, once the task is concluded), with the task's state then."""
        target = self._queries_started + 1
        self._wake = True
        await workflow.wait_condition(lambda: self._finished or self._queries_done >= target)
        return self._state

    @workflow.signal(name=CALLBACK_SIGNAL)
    def callback(self, hint: CallbackHint) -> None:
        # Ark does not sign callbacks: never act on what one says, only query Ark sooner.
        workflow.logger.info("Ark callback (claims %s for %s): querying Ark", hint.status, hint.provider_task_id)
        self._wake = True

    # -- steps ----------------------------------------------------------------------------------------

    async def _submit(self, input: VideoInput) -> PollState | TaskReport:
        delay, growth, cap = SUBMIT_BACKOFF
        for attempt in range(1, SUBMIT_ATTEMPTS + 1):
            handle = workflow.start_activity(
                SUBMIT_ACTIVITY,
                SubmitInput(input.task_id, input.request, input.callback_url, input.poll),
                result_type=Submitted,
                start_to_close_timeout=SUBMIT_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
            try:
                # Shielded: once sent, Ark may accept the job whatever we do, so a cancel waits for the answer
                # and then deletes the job instead of leaving it behind unseen.
                submitted: Submitted = await asyncio.shield(handle)
            except asyncio.CancelledError:
                with contextlib.suppress(ActivityError):
                    self._provider_task_id = (await handle).provider_task_id
                raise
            except ActivityError as err:
                cause = err.cause
                if isinstance(cause, ActivityTimeoutError):
                    return workflow_kit.failed(
                        "ark_submit_uncertain",
                        "the submit did not finish (worker lost or Ark silent); Ark may or may not have created "
                        "the task, so it is not resubmitted automatically",
                    )
                retry = isinstance(cause, ApplicationError) and not cause.non_retryable
                if not retry or attempt == SUBMIT_ATTEMPTS:
                    return _failure(err, "ark_submit_failed")
                assert isinstance(cause, ApplicationError)
                wait = cause.next_retry_delay or timedelta(seconds=delay)
                workflow.logger.info("submit attempt %d refused (%s); next in %s", attempt, cause.type, wait)
                await workflow.sleep(wait)
                delay = min(delay * growth, cap)
                continue
            self._provider_task_id = submitted.provider_task_id
            poll = submitted.poll
            return PollState(
                provider_task_id=submitted.provider_task_id,
                model=submitted.model,
                poll=poll,
                deadline=workflow.now().timestamp() + poll.deadline_seconds,
                delay=poll.initial_seconds,
                polls=0,
                runs=1,
            )
        raise AssertionError("unreachable")

    async def _poll(self, input: VideoInput, state: PollState) -> TaskReport:
        policy = state.poll
        delay = min(state.delay, policy.max_seconds)
        polls = state.polls
        polls_this_run = 0
        while True:
            now = workflow.now().timestamp()
            if now >= state.deadline:
                return await self._deadline_exceeded(state)
            if (
                polls_this_run >= policy.polls_per_run or workflow.info().is_continue_as_new_suggested()
            ) and workflow.all_handlers_finished():
                # A refresh in flight waits for this run's next poll; the run continues as new after it.
                resume = msgspec.structs.replace(state, delay=delay, polls=polls, runs=state.runs + 1, wake=self._wake)
                # The images were needed only for the submit: keep the continued run's input small.
                request = msgspec.structs.replace(input.request, first_frame=None, last_frame=None, reference_images=())
                workflow.continue_as_new(msgspec.structs.replace(input, request=request, resume=resume))
            if not self._wake:
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(lambda: self._wake, timeout=min(delay, state.deadline - now))
            woken = self._wake
            self._wake = False
            found = await self._query(state.provider_task_id)
            polls += 1
            polls_this_run += 1
            if isinstance(found, TaskReport):
                return found
            if found is not None and found.status in ARK_FINAL_STATUSES:
                return await self._conclude(input.task_id, found)
            self._queries_done += 1
            if not woken:
                delay = min(delay * policy.backoff, policy.max_seconds)

    async def _query(self, provider_task_id: str) -> ArkTaskView | TaskReport | None:
        """Ark's view of the task; a failed task when Ark refuses for good (401, 403, 404); None when Ark is
        unavailable for now (the next poll tries again)."""
        self._queries_started += 1
        try:
            view: ArkTaskView = await workflow.execute_activity(
                QUERY_ACTIVITY,
                QueryInput(provider_task_id),
                result_type=ArkTaskView,
                start_to_close_timeout=QUERY_TIMEOUT,
                retry_policy=QUERY_RETRY,
            )
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.non_retryable:
                return _failure(err, "ark_query_failed")
            workflow.logger.warning("querying Ark task %s failed for now: %s", provider_task_id, cause or err)
            return None
        return view

    async def _conclude(self, task_id: str, view: ArkTaskView) -> TaskReport:
        provider_task_id = view.id
        if view.status == "succeeded":
            if not view.video_url:
                return workflow_kit.failed("ark_no_video", f"Ark task {provider_task_id} succeeded without a video")
            try:
                copied: CopyResult = await workflow.execute_activity(
                    COPY_ACTIVITY,
                    CopyInput(task_id, view.video_url, view.last_frame_url),
                    result_type=CopyResult,
                    start_to_close_timeout=COPY_TIMEOUT,
                    heartbeat_timeout=COPY_HEARTBEAT,
                    retry_policy=COPY_RETRY,
                )
            except ActivityError as err:
                if is_cancelled_exception(err):
                    raise
                return _failure(err, "ark_media_copy_failed")
            return workflow_kit.succeeded(TaskResult(objects=copied.objects, data=_result_data(view)))
        if view.status == "failed":
            return workflow_kit.failed(
                view.error_code or "ark_task_failed", view.error_message or f"Ark task {provider_task_id} failed"
            )
        if view.status == "expired":
            return workflow_kit.failed(
                "ark_task_expired", f"Ark expired task {provider_task_id} before it finished", retryable=True
            )
        return TaskReport(
            status="cancelled",
            error=TaskError("cancelled", f"Ark task {provider_task_id} was cancelled outside this platform"),
        )

    async def _deadline_exceeded(self, state: PollState) -> TaskReport:
        outcome = await self._cancel_on_ark(state.provider_task_id)
        note = "; the queued Ark job was cancelled" if outcome is not None and outcome.cancelled else ""
        return workflow_kit.failed(
            "deadline_exceeded", f"Ark did not finish within {state.poll.deadline_seconds:g} s{note}", retryable=True
        )

    async def _cancelled(self) -> TaskReport:
        message = "the task was cancelled"
        if self._provider_task_id is not None:
            outcome = await self._cancel_on_ark(self._provider_task_id)
            if outcome is None:
                message += "; Ark could not be asked to cancel its job"
            elif outcome.cancelled:
                message += "; Ark dropped the queued job"
            elif outcome.status == "running":
                message += "; Ark was already generating the video and cannot stop a running job"
        return TaskReport(status="cancelled", error=TaskError("cancelled", message))

    async def _cancel_on_ark(self, provider_task_id: str) -> CancelOutcome | None:
        try:
            outcome: CancelOutcome = await workflow.execute_activity(
                CANCEL_ACTIVITY,
                CancelInput(provider_task_id),
                result_type=CancelOutcome,
                start_to_close_timeout=CANCEL_TIMEOUT,
                retry_policy=CANCEL_RETRY,
            )
        except ActivityError as err:
            workflow.logger.warning("cancelling Ark task %s failed: %s", provider_task_id, err.cause or err)
            return None
        return outcome

    async def _finish(self, task_id: str, outcome: TaskReport) -> TaskReport:
        if outcome.provider_task_id is None and self._provider_task_id is not None:
            outcome = msgspec.structs.replace(outcome, provider_task_id=self._provider_task_id)
        self._state = outcome
        self._finished = True
        try:
            await workflow_kit.report(task_id, outcome)
        except asyncio.CancelledError:
            # The outcome is known; a cancel arriving now must not lose it.
            await workflow_kit.report(task_id, outcome)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return outcome

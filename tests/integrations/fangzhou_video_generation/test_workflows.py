"""The workflow in Temporal's time-skipping environment, with mock activities registered under the real names."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from integrations.fangzhou_video_generation.schemas import (
    NAMES,
    ArkTaskView,
    VideoCopy,
    VideoInput,
    VideoRequest,
    VideoSubmit,
)
from integrations.fangzhou_video_generation.workflows.workflows import FangzhouVideoWorkflow
from services.shared.submit_poll import (
    CALLBACK_SIGNAL,
    REFRESH_UPDATE,
    CallbackHint,
    CancelOutcome,
    Copied,
    JobRef,
    PollPolicy,
    Submitted,
)
from services.shared.tasks import StoredObject, TaskEnvelope, TaskReport
from tests.fakes import Reports
from tests.stack import wait_for
from tests.temporal_env import serving, time_skipping

ARK_ID = "cgt-20260101000000-abcde"
REQUEST = VideoRequest(prompt="a paper boat on a rainy street", first_frame="https://example.com/boat.png")
FAST = PollPolicy(initial_seconds=5, backoff=2, max_seconds=20, deadline_seconds=3600, polls_per_run=100)
# A poll interval far longer than any test waits in real time: only a refresh or a callback can cause a query.
SLOW = PollPolicy(initial_seconds=3600, backoff=1, max_seconds=3600, deadline_seconds=86400)


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await time_skipping()
    yield environment
    await environment.shutdown()


class FakeArk(Reports):
    """Mock activities under the real names; the mock submit reports running through the activity kit as the
    real one does. Each query answers the next status of ``script``, then ``status`` for ever; ``submit_errors``
    are raised by the first submit attempts."""

    def __init__(self, script: tuple[str, ...] = (), status: str = "running", succeed_at: int | None = None) -> None:
        super().__init__()
        self.script = list(script)
        self.status = status
        # From this query on (1-based), Ark answers succeeded.
        self.succeed_at = succeed_at
        self.error_code = "OutputVideoSensitiveContentDetected"
        self.submit_errors: list[BaseException] = []
        self.submit_release: asyncio.Event | None = None
        self.submit_started = asyncio.Event()
        self.submits: list[VideoSubmit] = []
        # (scheduled time, run id) of every query.
        self.queries: list[tuple[datetime, str | None]] = []
        self.cancels: list[str] = []
        self.copies: list[VideoCopy] = []

    @activity.defn(name=NAMES.submit)
    async def submit(self, input: VideoSubmit) -> Submitted:
        self.submits.append(input)
        self.submit_started.set()
        if self.submit_release is not None:
            await self.submit_release.wait()
        if self.submit_errors:
            raise self.submit_errors.pop(0)
        return await self.kit().submitted(input, ARK_ID, input.poll or PollPolicy())

    @activity.defn(name=NAMES.query)
    async def query(self, input: JobRef) -> ArkTaskView:
        info = activity.info()
        self.queries.append((info.current_attempt_scheduled_time, info.workflow_run_id))
        status = self.script.pop(0) if self.script else self.status
        if self.succeed_at is not None and len(self.queries) >= self.succeed_at:
            status = "succeeded"
        if status == "succeeded":
            return ArkTaskView(
                id=input.provider_task_id,
                status=status,
                model="doubao-seedance-1-0-pro-250528",
                video_url=f"https://ark.example/{input.provider_task_id}.mp4",
                last_frame_url=f"https://ark.example/{input.provider_task_id}-last.png",
                seed=42,
                resolution="1080p",
                ratio="16:9",
                duration=5,
                framespersecond=24,
                usage={"completion_tokens": 246840, "total_tokens": 246840},
            )
        if status == "failed":
            return ArkTaskView(
                id=input.provider_task_id, status=status, error_code=self.error_code, error_message="sensitive output"
            )
        return ArkTaskView(id=input.provider_task_id, status=status)

    @activity.defn(name=NAMES.cancel)
    async def cancel(self, input: JobRef) -> CancelOutcome:
        self.cancels.append(input.provider_task_id)
        if self.status == "queued":
            return CancelOutcome(cancelled=True, status="cancelled")
        return CancelOutcome(cancelled=False, status=self.status)

    @activity.defn(name=NAMES.copy)
    async def copy(self, input: VideoCopy) -> Copied:
        self.copies.append(input)
        return Copied(
            objects={
                "video": StoredObject(f"tasks/{input.task.id}/video.mp4", "video/mp4", 1000),
                "last_frame": StoredObject(f"tasks/{input.task.id}/last_frame.png", "image/png", 100),
            }
        )


class Running:
    def __init__(self, env: WorkflowEnvironment, handle: WorkflowHandle[FangzhouVideoWorkflow, TaskReport]) -> None:
        self.env = env
        self.handle = handle

    async def result(self) -> TaskReport:
        # Waiting on the result lets the test server skip time; the bound only guards against a stuck test.
        return await asyncio.wait_for(self.handle.result(), 120)


async def run_with(
    env: WorkflowEnvironment,
    ark: FakeArk,
    poll: PollPolicy,
    body: Callable[[Running], Awaitable[TaskReport]] | None = None,
) -> TaskReport:
    queue = str(uuid.uuid4())
    async with serving(
        env.client, queue, [FangzhouVideoWorkflow], [ark.report_task, ark.submit, ark.query, ark.cancel, ark.copy]
    ):
        handle = await env.client.start_workflow(
            FangzhouVideoWorkflow.run,
            VideoInput(TaskEnvelope("t1"), REQUEST, poll=poll),
            id=str(uuid.uuid4()),
            task_queue=queue,
            execution_timeout=timedelta(days=30),
        )
        running = Running(env, handle)
        return await (body(running) if body is not None else running.result())


async def refresh(running: Running) -> TaskReport:
    return await asyncio.wait_for(running.handle.execute_update(REFRESH_UPDATE, result_type=TaskReport), 30)


async def submitted(ark: FakeArk) -> None:
    async def reported_running() -> bool:
        return "running" in ark.statuses()

    await wait_for(reported_running, 30, "the workflow to report running")


def cancel_once_submitted(ark: FakeArk) -> Callable[[Running], Awaitable[TaskReport]]:
    """A test body: cancel the task once the workflow has submitted to Ark, then wait for its result."""

    async def body(running: Running) -> TaskReport:
        await submitted(ark)
        await running.handle.cancel()
        return await running.result()

    return body


def gaps(ark: FakeArk) -> list[float]:
    times = [t for t, _ in ark.queries]
    return [round((b - a).total_seconds()) for a, b in itertools.pairwise(times)]


async def test_success_after_several_polls_with_backoff(env: WorkflowEnvironment) -> None:
    ark = FakeArk(script=("queued", "queued", "running", "running", "succeeded"))
    result = await run_with(env, ark, FAST)

    assert result.status == "succeeded"
    assert result.provider_task_id == ARK_ID
    assert result.result is not None
    assert result.result.objects["video"].key == "tasks/t1/video.mp4"
    assert result.result.objects["last_frame"].key == "tasks/t1/last_frame.png"
    assert result.result.data == {
        "model": "doubao-seedance-1-0-pro-250528",
        "seed": 42,
        "resolution": "1080p",
        "ratio": "16:9",
        "duration": 5,
        "framespersecond": 24,
        "usage": {"completion_tokens": 246840, "total_tokens": 246840},
    }
    assert len(ark.queries) == 5
    # 5 s, then x2 up to the 20 s cap.
    assert gaps(ark) == [10, 20, 20, 20]
    assert ark.statuses() == ["running", "succeeded"]
    assert ark.reports[0].provider_task_id == ARK_ID
    assert [c.job.video_url for c in ark.copies] == [f"https://ark.example/{ARK_ID}.mp4"]
    # Exactly this: main's callback URL carries the task's token, so the submit asks main for it instead.
    assert ark.submits[0] == VideoSubmit(TaskEnvelope("t1"), REQUEST, FAST, None)


async def test_ark_failure_keeps_its_error_code(env: WorkflowEnvironment) -> None:
    ark = FakeArk(script=("running", "failed"))
    result = await run_with(env, ark, FAST)
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.code, result.error.message, result.error.retryable) == (
        "OutputVideoSensitiveContentDetected",
        "sensitive output",
        False,
    )
    assert ark.copies == []
    assert ark.statuses() == ["running", "failed"]


async def test_expired_on_ark_fails_the_task(env: WorkflowEnvironment) -> None:
    ark = FakeArk(script=("queued", "expired"))
    result = await run_with(env, ark, FAST)
    assert result.status == "failed"
    assert result.error is not None and result.error.code == "ark_task_expired"


async def test_rejected_submit_is_final(env: WorkflowEnvironment) -> None:
    ark = FakeArk()
    ark.submit_errors = [
        ApplicationError("The parameter `ratio` is not valid.", type="InvalidParameter", non_retryable=True)
    ]
    result = await run_with(env, ark, FAST)
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.code, result.error.retryable) == ("InvalidParameter", False)
    assert "ratio" in result.error.message
    assert len(ark.submits) == 1
    assert ark.queries == []
    assert ark.statuses() == ["failed"]


async def test_refused_submit_is_retried_after_a_backoff(env: WorkflowEnvironment) -> None:
    ark = FakeArk(status="succeeded")
    ark.submit_errors = [
        ApplicationError(
            "RPM limit", type="RateLimitExceeded.EndpointRPMExceeded", next_retry_delay=timedelta(seconds=30)
        ),
        ApplicationError("internal", type="InternalServiceError"),
    ]
    result = await run_with(env, ark, FAST)
    assert result.status == "succeeded"
    assert len(ark.submits) == 3
    assert ark.statuses() == ["running", "succeeded"]


async def test_submit_refused_every_time_fails_retryable(env: WorkflowEnvironment) -> None:
    ark = FakeArk()
    ark.submit_errors = [ApplicationError("RPM limit", type="RateLimitExceeded.EndpointRPMExceeded")] * 10
    result = await run_with(env, ark, FAST)
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.code, result.error.retryable) == ("RateLimitExceeded.EndpointRPMExceeded", True)
    assert len(ark.submits) == 6


async def test_refresh_finds_the_result_and_polling_stops(env: WorkflowEnvironment) -> None:
    ark = FakeArk(status="succeeded")

    async def body(running: Running) -> TaskReport:
        await submitted(ark)
        assert ark.queries == []
        state = await refresh(running)
        assert state.status == "succeeded"
        return await running.result()

    result = await run_with(env, ark, SLOW, body)
    assert result.status == "succeeded"
    # One query, the refresh's; the hour-long poll timer never fired.
    assert len(ark.queries) == 1
    assert len(ark.copies) == 1
    assert ark.statuses() == ["running", "succeeded"]


async def test_refresh_before_ark_is_done_keeps_polling(env: WorkflowEnvironment) -> None:
    ark = FakeArk(status="running")

    async def body(running: Running) -> TaskReport:
        await submitted(ark)
        state = await refresh(running)
        assert (state.status, state.provider_task_id) == ("running", ARK_ID)
        assert len(ark.queries) == 1
        ark.status = "succeeded"
        return await running.result()

    result = await run_with(env, ark, SLOW, body)
    assert result.status == "succeeded"
    assert len(ark.queries) == 2
    # The second query is the timer's, a full interval after the refresh's.
    assert gaps(ark) == [3600]


async def test_callback_is_verified_by_querying_ark(env: WorkflowEnvironment) -> None:
    ark = FakeArk(status="running")

    async def body(running: Running) -> TaskReport:
        await submitted(ark)
        # The callback claims success, but Ark still says running: nothing concludes.
        await running.handle.signal(CALLBACK_SIGNAL, CallbackHint(ARK_ID, "succeeded"))

        async def queried() -> bool:
            return len(ark.queries) == 1

        await wait_for(queried, 30, "the callback to cause a query")
        assert (await running.handle.query("task_state", result_type=TaskReport)).status == "running"
        ark.status = "succeeded"
        await running.handle.signal(CALLBACK_SIGNAL, CallbackHint(ARK_ID, "succeeded"))
        return await running.result()

    result = await run_with(env, ark, SLOW, body)
    assert result.status == "succeeded"
    assert len(ark.queries) == 2
    # Both queries came from callbacks, long before the first poll timer.
    assert gaps(ark)[0] < 60
    assert ark.statuses() == ["running", "succeeded"]


async def test_cancel_while_queued_deletes_the_ark_job(env: WorkflowEnvironment) -> None:
    ark = FakeArk(status="queued")

    result = await run_with(env, ark, SLOW, cancel_once_submitted(ark))
    assert result.status == "cancelled"
    assert result.error is not None and "dropped the queued job" in result.error.message
    assert ark.cancels == [ARK_ID]
    assert ark.statuses() == ["running", "cancelled"]


async def test_cancel_while_running_on_ark_says_it_cannot_stop(env: WorkflowEnvironment) -> None:
    ark = FakeArk(status="running")

    result = await run_with(env, ark, SLOW, cancel_once_submitted(ark))
    assert result.status == "cancelled"
    assert result.error is not None and "cannot stop a running job" in result.error.message
    assert ark.cancels == [ARK_ID]


async def test_cancel_during_submit_still_deletes_the_job(env: WorkflowEnvironment) -> None:
    ark = FakeArk(status="queued")
    ark.submit_release = release = asyncio.Event()

    async def body(running: Running) -> TaskReport:
        await asyncio.wait_for(ark.submit_started.wait(), 30)
        await running.handle.cancel()
        # The workflow waits for the submit's answer instead of abandoning a job Ark may have accepted.
        release.set()
        return await running.result()

    result = await run_with(env, ark, SLOW, body)
    assert result.status == "cancelled"
    assert result.provider_task_id == ARK_ID
    assert ark.cancels == [ARK_ID]
    assert ark.queries == []
    # Ark accepted the job before the cancel could act: the submit said running, then the task was cancelled.
    assert ark.statuses() == ["running", "cancelled"]


async def test_deadline_exceeded(env: WorkflowEnvironment) -> None:
    ark = FakeArk(status="running")
    policy = PollPolicy(initial_seconds=10, backoff=1.5, max_seconds=30, deadline_seconds=300)
    result = await run_with(env, ark, policy)
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.code, result.error.retryable) == ("deadline_exceeded", True)
    # Ark is asked to drop the job (it cannot: it is running); no poll after the deadline.
    assert ark.cancels == [ARK_ID]
    elapsed = (ark.queries[-1][0] - ark.queries[0][0]).total_seconds()
    assert 250 <= elapsed <= 300


async def run_histories(env: WorkflowEnvironment, workflow_id: str, first_run_id: str) -> list[int]:
    """The history length of every run of a workflow, following its continue-as-new chain."""
    lengths: list[int] = []
    run_id: str | None = first_run_id
    while run_id:
        history = await env.client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        lengths.append(len(history.events))
        last = history.events[-1]
        if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
        else:
            run_id = None
    return lengths


async def test_queries_and_refresh_reach_the_current_run(env: WorkflowEnvironment) -> None:
    ark = FakeArk(status="running")
    policy = PollPolicy(initial_seconds=5, backoff=1, max_seconds=5, deadline_seconds=86400, polls_per_run=3)

    async def body(running: Running) -> TaskReport:
        await submitted(ark)
        await running.env.sleep(timedelta(minutes=1))
        assert len({run for _, run in ark.queries}) >= 3, "the workflow continued as new"
        # Addressed by workflow id only, as main does: the current run answers.
        state = await running.handle.query("task_state", result_type=TaskReport)
        assert (state.status, state.provider_task_id) == ("running", ARK_ID)
        ark.status = "succeeded"
        assert (await refresh(running)).status == "succeeded"
        return await running.result()

    result = await run_with(env, ark, policy, body)
    assert result.status == "succeeded"
    assert ark.statuses() == ["running", "succeeded"]
    assert len(ark.copies) == 1


# A 10-minute poll cap keeps the three days at about 430 polls (seconds of real time) while still
# spanning many continued-as-new runs.
@pytest.mark.timeout(300)
async def test_multi_day_job_keeps_history_bounded(env: WorkflowEnvironment) -> None:
    three_days_of_polls = 3 * 86400 // 600
    ark = FakeArk(status="running", succeed_at=three_days_of_polls)
    policy = PollPolicy(initial_seconds=5, backoff=1.5, max_seconds=600, deadline_seconds=5 * 86400, polls_per_run=20)

    async def body(running: Running) -> TaskReport:
        first_run = running.handle.result_run_id
        assert first_run is not None
        # Waiting on the result lets the test server skip the three days.
        result = await asyncio.wait_for(running.handle.result(), 250)
        lengths = await run_histories(running.env, running.handle.id, first_run)
        assert len(lengths) >= three_days_of_polls // policy.polls_per_run
        # A run of 20 polls is about 230 events; unbounded history would grow with the job.
        assert max(lengths) < 300, lengths
        # Every run polled, and every poll came from a run of this chain.
        assert len({run for _, run in ark.queries}) == len(lengths)
        return result

    result = await run_with(env, ark, policy, body)
    assert result.status == "succeeded"
    assert ark.statuses() == ["running", "succeeded"]
    assert len(ark.queries) == three_days_of_polls
    # Three days less the backoff ramp: its 12 short polls (5 s rising to the 10-minute cap) stand in for
    # 12 full ones, about 1.6 hours.
    assert ark.queries[-1][0] - ark.queries[0][0] >= timedelta(days=3) - timedelta(hours=2)

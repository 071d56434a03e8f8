"""The workflow in Temporal's time-skipping environment, with mock activities registered under the real names."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError, RetryState, TimeoutError, TimeoutType
from temporalio.testing import WorkflowEnvironment

from integrations.nanobanana2_image.schemas import (
    GENERATE_ACTIVITY,
    GeneratedImage,
    GenerateInput,
    ImageJob,
    ImageTaskInput,
    InlineImage,
    Usage,
)
from integrations.nanobanana2_image.workflows.workflows import GENERATE, GENERATE_RETRY, NanoBanana2ImageWorkflow
from services.shared.sync_call import failure
from services.shared.tasks import StoredObject, TaskEnvelope, TaskError, TaskReport
from tests.fakes import Reports
from tests.temporal_env import serving, time_skipping

JOB = ImageJob(prompt="a lighthouse at dusk", aspect_ratio="16:9", image_size="2K")
Failure = Callable[[], BaseException]


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await time_skipping()
    yield environment
    await environment.shutdown()


def unavailable() -> BaseException:
    return ApplicationError("Gemini answered HTTP 503 UNAVAILABLE: overloaded", type="provider_unavailable")


def storage_down() -> BaseException:
    return ApplicationError("could not store the image: connection refused", type="storage_unavailable")


class Recorder(Reports):
    """Mock activities registered under the real activities' names; the mock generate reports running through
    the activity kit as the real one does. ``failures`` are raised by the first attempts in order; ``always`` by
    every attempt."""

    def __init__(self, failures: tuple[Failure, ...] = (), always: Failure | None = None) -> None:
        super().__init__()
        self.inputs: list[GenerateInput] = []
        self.failures = failures
        self.always = always
        self.started = asyncio.Event()
        self.release: asyncio.Event | None = None

    @property
    def attempts(self) -> int:
        return len(self.inputs)

    @activity.defn(name=GENERATE_ACTIVITY)
    async def generate(self, input: GenerateInput) -> GeneratedImage:
        async with self.kit().running(input.task):
            return await self._generate(input)

    async def _generate(self, input: GenerateInput) -> GeneratedImage:
        self.inputs.append(input)
        self.started.set()
        if self.release is not None:
            # Heartbeating, as the real activity does: a cancel reaches it, and the workflow waits for that.
            await self.kit().heartbeating(self.release.wait())
        if self.always is not None:
            raise self.always()
        if self.attempts <= len(self.failures):
            raise self.failures[self.attempts - 1]()
        return GeneratedImage(
            image=StoredObject(key=f"tasks/{input.task.id}/image.png", content_type="image/png", size=2048),
            width=344,
            height=192,
            model_version="gemini-3.1-flash-image-preview",
            text="Here is your lighthouse",
            usage=Usage(prompt_tokens=7, output_tokens=1680, total_tokens=1687),
        )


def task_input(task_id: str, job: ImageJob) -> ImageTaskInput:
    return ImageTaskInput(TaskEnvelope(task_id), job)


def worker(env: WorkflowEnvironment, recorder: Recorder, queue: str) -> contextlib.AbstractAsyncContextManager[None]:
    return serving(env.client, queue, [NanoBanana2ImageWorkflow], [recorder.report_task, recorder.generate])


async def run(env: WorkflowEnvironment, recorder: Recorder, job: ImageJob = JOB) -> TaskReport:
    queue = str(uuid.uuid4())
    async with worker(env, recorder, queue):
        result: TaskReport = await env.client.execute_workflow(
            NanoBanana2ImageWorkflow.run, task_input("t1", job), id=str(uuid.uuid4()), task_queue=queue
        )
        return result


async def test_success_reports_running_then_succeeded_with_the_stored_image(env: WorkflowEnvironment) -> None:
    recorder = Recorder()
    job = ImageJob("edit this", "1:1", "1K", (InlineImage("image/png", "iVBORw0KGgo="),))
    result = await run(env, recorder, job)
    assert result.status == "succeeded"
    assert result.result is not None
    assert result.result.objects["image"] == StoredObject("tasks/t1/image.png", "image/png", 2048)
    assert result.result.data == {
        "aspect_ratio": "1:1",
        "image_size": "1K",
        "width": 344,
        "height": 192,
        "model": "gemini-3.1-flash-image-preview",
        "text": "Here is your lighthouse",
        "usage": {"prompt_tokens": 7, "output_tokens": 1680, "total_tokens": 1687},
    }
    assert [r.status for r in recorder.reports] == ["running", "succeeded"]
    assert recorder.inputs == [GenerateInput(TaskEnvelope("t1"), job)]


async def test_the_activity_is_scheduled_with_the_documented_timeouts_and_retry_policy(
    env: WorkflowEnvironment,
) -> None:
    recorder = Recorder()
    queue = str(uuid.uuid4())
    async with worker(env, recorder, queue):
        handle = await env.client.start_workflow(
            NanoBanana2ImageWorkflow.run, task_input("t5", JOB), id=str(uuid.uuid4()), task_queue=queue
        )
        await handle.result()
        scheduled = [
            e.activity_task_scheduled_event_attributes
            async for e in handle.fetch_history_events()
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and e.activity_task_scheduled_event_attributes.activity_type.name == GENERATE_ACTIVITY
        ]
    (attributes,) = scheduled
    assert attributes.start_to_close_timeout.ToTimedelta() == timedelta(minutes=10)
    assert attributes.heartbeat_timeout.ToTimedelta() == timedelta(seconds=10)
    policy = attributes.retry_policy
    assert policy.initial_interval.ToTimedelta() == timedelta(seconds=2)
    assert policy.backoff_coefficient == 2.0
    assert policy.maximum_interval.ToTimedelta() == timedelta(seconds=60)
    assert policy.maximum_attempts == 5
    assert set(policy.non_retryable_error_types) == {
        "blocked_prompt",
        "image_blocked",
        "no_image",
        "provider_rejected",
        "provider_auth",
    }


async def test_transient_provider_errors_are_retried_then_succeed(env: WorkflowEnvironment) -> None:
    recorder = Recorder(failures=(unavailable, unavailable))
    result = await run(env, recorder)
    assert result.status == "succeeded"
    assert recorder.attempts == 3
    # Each attempt reports running with its number: main counts them.
    assert [(r.status, r.provider_attempts) for r in recorder.reports] == [
        ("running", 1),
        ("running", 2),
        ("running", 3),
        ("succeeded", None),
    ]


async def test_a_failed_upload_is_retried(env: WorkflowEnvironment) -> None:
    recorder = Recorder(failures=(storage_down,))
    result = await run(env, recorder)
    assert result.status == "succeeded"
    assert recorder.attempts == 2


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("blocked_prompt", "Gemini blocked the prompt (blockReason PROHIBITED_CONTENT)"),
        ("image_blocked", "Gemini withheld the image (finishReason IMAGE_SAFETY)"),
        ("no_image", "Gemini returned no image (finishReason NO_IMAGE)"),
        ("provider_rejected", "Gemini answered HTTP 400 INVALID_ARGUMENT: bad aspect ratio"),
        ("provider_auth", "Gemini answered HTTP 403 PERMISSION_DENIED: API key not valid"),
    ],
)
async def test_final_provider_answers_fail_at_once_with_the_reason(
    env: WorkflowEnvironment, code: str, message: str
) -> None:
    recorder = Recorder(always=lambda: ApplicationError(message, type=code, non_retryable=True))
    result = await run(env, recorder)
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.code, result.error.message, result.error.retryable) == (code, message, False)
    assert recorder.attempts == 1
    assert [r.status for r in recorder.reports] == ["running", "failed"]
    assert recorder.reports[-1].error == result.error


async def test_final_error_types_are_final_even_when_raised_as_retryable(env: WorkflowEnvironment) -> None:
    # The retry policy names them too, so a mislabelled error cannot cause repeated provider calls.
    recorder = Recorder(always=lambda: ApplicationError("blocked", type="blocked_prompt"))
    result = await run(env, recorder)
    assert result.error is not None and result.error.code == "blocked_prompt"
    assert recorder.attempts == 1


@pytest.mark.parametrize(
    ("failure", "code", "last"),
    [
        (unavailable, "provider_unavailable", "Gemini answered HTTP 503 UNAVAILABLE: overloaded"),
        (storage_down, "storage_unavailable", "could not store the image: connection refused"),
        (lambda: RuntimeError("bug in a dependency"), "generation_failed", "bug in a dependency"),
    ],
)
async def test_retries_are_bounded_and_the_task_fails_naming_the_last_cause(
    env: WorkflowEnvironment, failure: Failure, code: str, last: str
) -> None:
    recorder = Recorder(always=failure)
    result = await run(env, recorder)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == code
    assert result.error.retryable is True
    assert result.error.message == f"gave up after 5 attempts; last error: {last}"
    assert recorder.attempts == GENERATE_RETRY.maximum_attempts == 5
    assert [r.status for r in recorder.reports] == ["running"] * 5 + ["failed"]


def activity_error(cause: BaseException, retry_state: RetryState) -> ActivityError:
    err = ActivityError(
        "activity error",
        scheduled_event_id=5,
        started_event_id=6,
        identity="worker",
        activity_type=GENERATE_ACTIVITY,
        activity_id="1",
        retry_state=retry_state,
    )
    err.__cause__ = cause
    return err


@pytest.mark.parametrize(
    ("timeout", "words"), [(TimeoutType.HEARTBEAT, "heartbeat"), (TimeoutType.START_TO_CLOSE, "start-to-close")]
)
def test_attempts_that_timed_out_every_time_end_as_provider_unavailable(timeout: TimeoutType, words: str) -> None:
    # A worker that dies or a call that outlives the activity's timeout surfaces as a TimeoutError cause.
    # (Not run in the time-skipping server: it does not skip time while an activity is running.)
    cause = TimeoutError("activity timeout", type=timeout, last_heartbeat_details=[])
    state = failure(activity_error(cause, RetryState.MAXIMUM_ATTEMPTS_REACHED), GENERATE)
    assert state.status == "failed"
    assert state.error == TaskError(
        "provider_unavailable", f"gave up after 5 attempts; last error: the attempt hit its {words} timeout", True
    )


async def test_cancel_reports_cancelled(env: WorkflowEnvironment) -> None:
    recorder = Recorder()
    recorder.release = asyncio.Event()
    queue = str(uuid.uuid4())
    async with worker(env, recorder, queue):
        handle = await env.client.start_workflow(
            NanoBanana2ImageWorkflow.run, task_input("t2", JOB), id=str(uuid.uuid4()), task_queue=queue
        )
        await asyncio.wait_for(recorder.started.wait(), 30)
        await handle.cancel()
        try:
            result = await handle.result()
        except WorkflowFailureError as exc:
            raise AssertionError(f"workflow must end with a cancelled report, not {exc!r}") from exc
        finally:
            recorder.release.set()
    assert result.status == "cancelled"
    assert [r.status for r in recorder.reports] == ["running", "cancelled"]


async def test_task_state_query_shows_running_while_generating(env: WorkflowEnvironment) -> None:
    recorder = Recorder()
    recorder.release = asyncio.Event()
    queue = str(uuid.uuid4())
    async with worker(env, recorder, queue):
        handle = await env.client.start_workflow(
            NanoBanana2ImageWorkflow.run, task_input("t3", JOB), id=str(uuid.uuid4()), task_queue=queue
        )
        await asyncio.wait_for(recorder.started.wait(), 30)
        state = await handle.query(NanoBanana2ImageWorkflow.task_state)
        recorder.release.set()
        final = await handle.result()
    assert state.status == "running"
    assert final.status == "succeeded"

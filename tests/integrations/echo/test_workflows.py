from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from integrations.echo.schemas import PROCESS_ACTIVITY, EchoInput, EchoRequest, ProcessInput
from integrations.echo.workflows.workflows import EchoWorkflow
from services.shared.tasks import StoredObject, TaskEnvelope, TaskReport
from tests.fakes import Reports
from tests.temporal_env import serving, time_skipping


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await time_skipping()
    yield environment
    await environment.shutdown()


class Recorder(Reports):
    """Mock activities registered under the real activities' names; the mock reports running through the
    activity kit as the real one does."""

    def __init__(self, fail_attempts: int = 0) -> None:
        super().__init__()
        self.attempts = 0
        self.fail_attempts = fail_attempts
        self.started = asyncio.Event()
        self.release: asyncio.Event | None = None

    @activity.defn(name=PROCESS_ACTIVITY)
    async def process(self, input: ProcessInput) -> StoredObject:
        async with self.kit().running(input.task):
            self.attempts += 1
            self.started.set()
            if self.release is not None:
                await self.release.wait()
            if self.attempts <= self.fail_attempts:
                raise RuntimeError("provider hiccup")
            return StoredObject(f"tasks/{input.task.id}/echo.txt", "text/plain", len(input.job.message))


async def run(env: WorkflowEnvironment, recorder: Recorder, request: EchoRequest) -> TaskReport:
    queue = str(uuid.uuid4())
    async with serving(env.client, queue, [EchoWorkflow], [recorder.report_task, recorder.process]):
        result: TaskReport = await env.client.execute_workflow(
            EchoWorkflow.run, EchoInput(TaskEnvelope("t1"), request), id=str(uuid.uuid4()), task_queue=queue
        )
        return result


async def test_success_reports_running_then_succeeded(env: WorkflowEnvironment) -> None:
    recorder = Recorder()
    result = await run(env, recorder, EchoRequest(message="hi"))
    assert result.status == "succeeded"
    assert result.result is not None and result.result.objects["text"].key == "tasks/t1/echo.txt"
    assert [r.status for r in recorder.reports] == ["running", "succeeded"]


async def test_activity_retries_then_succeeds(env: WorkflowEnvironment) -> None:
    recorder = Recorder(fail_attempts=2)
    result = await run(env, recorder, EchoRequest(message="hi"))
    assert result.status == "succeeded"
    assert recorder.attempts == 3


async def test_retries_are_bounded_and_end_in_a_failed_task(env: WorkflowEnvironment) -> None:
    recorder = Recorder(fail_attempts=100)
    result = await run(env, recorder, EchoRequest(message="hi"))
    assert result.status == "failed"
    assert result.error is not None and result.error.code == "echo_failed"
    assert "provider hiccup" in result.error.message
    assert recorder.attempts == 5
    assert recorder.reports[-1].status == "failed"


async def test_cancel_reports_cancelled(env: WorkflowEnvironment) -> None:
    recorder = Recorder()
    recorder.release = asyncio.Event()
    queue = str(uuid.uuid4())
    async with serving(env.client, queue, [EchoWorkflow], [recorder.report_task, recorder.process]):
        handle = await env.client.start_workflow(
            EchoWorkflow.run,
            EchoInput(TaskEnvelope("t2"), EchoRequest(message="slow", delay_seconds=600)),
            id=str(uuid.uuid4()),
            task_queue=queue,
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
    assert recorder.reports[-1].status == "cancelled"

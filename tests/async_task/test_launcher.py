"""The launcher against a real Temporal server: one Worker per integration, shutdown, crash recovery."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar import Litestar, post
from litestar.params import JSONBody
from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from deploy.local import LocalStack
from integrations.echo.schemas import EchoInput, EchoRequest
from integrations.example.schemas import ExampleInput, ExampleRequest
from services.shared.discovery import discover
from services.shared.storage import ObjectStore
from services.shared.tasks import TaskEnvelope, TaskReport
from tests.broken_examples import BROKEN_EXAMPLES, copy_with_broken_examples
from tests.stack import Api, Launcher, serve, wait_for

pytestmark = pytest.mark.integration


async def pollers(
    client: Client, queue: str, kind: TaskQueueType.ValueType = TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
) -> set[str]:
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(namespace="default", task_queue=TaskQueue(name=queue), task_queue_type=kind)
    )
    return {p.identity for p in response.pollers}


@pytest.fixture
async def example_provider() -> AsyncIterator[str]:
    """The example's provider: the scaffold's placeholder contract, answering every prompt with itself."""

    @post("/v1/generate", status_code=200)
    async def generate(data: JSONBody[dict[str, str]]) -> dict[str, str]:
        return {"content_type": "text/plain", "data": base64.b64encode(data["prompt"].encode()).decode()}

    async with serve(Litestar([generate])) as url:
        yield url


async def test_each_integration_gets_its_own_worker_and_queue(
    stack: LocalStack, worker_env: dict[str, str], temporal: Client, example_provider: str
) -> None:
    # With an empty blacklist the example integration is served too: every integration, one Worker each.
    names = [i.name for i in discover(blacklist=()).integrations]
    assert {"echo", "example"} <= set(names)
    env = {
        **worker_env,
        "INTEGRATIONS_BLACKLIST": "",
        "EXAMPLE_BASE_URL": example_provider,
        "EXAMPLE_API_KEY": "example-provider-key",
    }
    launcher = Launcher(env, [], stack.state_dir / "all-workers.log")
    try:
        await launcher.wait_serving()
        assert f"serving {len(names)} integration(s): {', '.join(names)}" in launcher.output()

        result = await temporal.execute_workflow(
            "ExampleWorkflow",
            ExampleInput(TaskEnvelope("not-a-task"), ExampleRequest(prompt="on its own queue")),
            id=str(uuid.uuid4()),
            task_queue="example",
            result_type=TaskReport,
        )
        assert result.status == "succeeded"

        # The echo Worker does not know the example workflow: on the wrong queue it never runs.
        handle = await temporal.start_workflow(
            "ExampleWorkflow",
            ExampleInput(TaskEnvelope("not-a-task"), ExampleRequest(prompt="wrong queue")),
            id=str(uuid.uuid4()),
            task_queue="echo",
        )

        async def rejected() -> bool:
            async for event in handle.fetch_history_events():
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                    return "not registered" in str(event.workflow_task_failed_event_attributes.failure.message)
            return False

        assert await wait_for(rejected, 30, "the echo worker to reject the example workflow")
        await handle.terminate("test cleanup")
        assert {p.split("@")[0] for p in await pollers(temporal, "echo")} >= {"echo"}
        assert {p.split("@")[0] for p in await pollers(temporal, "example")} == {"example"}
        # Its provider calls have a queue of their own, served by the integration's second Worker.
        activity_pollers = await pollers(temporal, "example.provider", TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
        assert {p.split("@")[0] for p in activity_pollers} == {"example"}
    finally:
        assert launcher.terminate(30) == 0


async def test_blacklisted_or_unknown_integration_is_a_named_error(
    stack: LocalStack, worker_env: dict[str, str]
) -> None:
    launcher = Launcher(worker_env, ["example"], stack.state_dir / "blacklisted.log")
    assert launcher.proc.wait(30) == 2
    assert "unknown integration 'example'" in launcher.output()
    assert "blacklisted by pattern 'example*'" in launcher.output()


async def test_excluded_hint_when_the_name_differs_from_the_folder(
    stack: LocalStack, worker_env: dict[str, str]
) -> None:
    env = {**worker_env, "INTEGRATIONS_BLACKLIST": "FANGZHOU*"}
    launcher = Launcher(env, ["fangzhouVideoGeneration"], stack.state_dir / "excluded-by-name.log")
    assert launcher.proc.wait(30) == 2
    assert "unknown integration 'fangzhouVideoGeneration'" in launcher.output()
    assert "(excluded: folder fangzhou_video_generation, blacklisted by pattern 'FANGZHOU*')" in launcher.output()


async def test_broken_examples_do_not_break_the_workers(
    stack: LocalStack, worker_env: dict[str, str], tmp_path: Path
) -> None:
    copy = copy_with_broken_examples(tmp_path / "repo")
    launcher = Launcher(worker_env, ["echo"], tmp_path / "worker.log", cwd=copy)
    await launcher.wait_serving()
    assert launcher.terminate(20) == 0
    for folder in BROKEN_EXAMPLES:
        assert f"excluded integration folder {folder}: blacklisted by pattern 'example*'" in launcher.output()


async def test_sigterm_stops_the_launcher_cleanly(stack: LocalStack, worker_env: dict[str, str]) -> None:
    launcher = Launcher(worker_env, ["echo"], stack.state_dir / "sigterm.log")
    await launcher.wait_serving()
    assert launcher.terminate(20) == 0
    assert "all workers stopped" in launcher.output()


async def test_client_started_workflow_completes_with_the_right_result(
    stack: LocalStack, worker_env: dict[str, str], temporal: Client, objects: ObjectStore
) -> None:
    launcher = Launcher(worker_env, ["echo"], stack.state_dir / "client-started.log")
    try:
        await launcher.wait_serving()
        task_id = f"direct-{uuid.uuid4()}"
        result = await temporal.execute_workflow(
            "EchoWorkflow",
            EchoInput(TaskEnvelope(task_id), EchoRequest(message="from a client")),
            id=str(uuid.uuid4()),
            task_queue="echo",
            result_type=TaskReport,
        )
        assert result.status == "succeeded"
        assert result.result is not None
        stored = result.result.objects["text"]
        assert stored.key == f"tasks/{task_id}/echo.txt"
        assert await objects.get_bytes(stored.key) == b"from a client"
    finally:
        launcher.kill()


async def test_worker_killed_mid_activity_and_restarted_completes_once(
    stack: LocalStack, worker_env: dict[str, str], alice: Api, objects: ObjectStore
) -> None:
    first = Launcher(worker_env, ["echo"], stack.state_dir / "crash-1.log")
    await first.wait_serving()
    task = (await alice.create("echo", {"message": "survives", "delay_seconds": 3})).json()
    await alice.wait_status(task["id"], {"running"})
    first.kill()

    second = Launcher(worker_env, ["echo"], stack.state_dir / "crash-2.log")
    try:
        await second.wait_serving()
        done = await alice.wait_status(task["id"], {"succeeded"}, timeout=90)
        assert done["output"]["objects"]["text"]["size"] == len("survives")
        assert await objects.list_keys(f"tasks/{task['id']}/") == [f"tasks/{task['id']}/echo.txt"]
    finally:
        second.kill()

"""A workflow whose workflow tasks keep failing (here: its code raises) is neither silent nor endless: main's
reads say ``stalled: <reason>`` and stay bounded, and the execution timeout ends it ``failed`` with the reason.
main's real app in this process, the real Temporal dev server (its describe and history carry what the test
server's do not), the broken workflow on a worker of the test."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from services.async_task.launcher import WORKFLOW_RUNNER
from services.main.app import create_app
from services.shared.discovery import Discovery, Integration
from services.shared.manifest import Manifest
from tests.kits.main_settings import kit_main_settings
from tests.stack import serve, wait_for
from tests.temporal_env import dev_server

from . import stall_app
from .stall_app.api import EXECUTION_TIMEOUT
from .stall_app.workflows import BROKEN, StalledWorkflow

NAME = "kit-stalled"
ALICE = {"Authorization": "Bearer alice-key"}
SYNC_TIMEOUT = 2.0


@pytest.fixture(scope="module")
async def temporal() -> AsyncIterator[WorkflowEnvironment]:
    environment = await dev_server()
    yield environment
    await environment.shutdown()


@pytest.fixture
async def main(temporal: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    queue = str(uuid.uuid4())
    settings = kit_main_settings(
        temporal.client.service_client.config.target_host, tmp_path, MAIN_SYNC_TIMEOUT_SECONDS=str(SYNC_TIMEOUT)
    )
    manifest = Manifest(name=NAME, task_queue=queue, description="a workflow that cannot go on")
    integration = Integration("stall_app", Path(stall_app.__file__).parent, manifest, stall_app.__name__)
    worker = Worker(temporal.client, task_queue=queue, workflows=[StalledWorkflow], workflow_runner=WORKFLOW_RUNNER)
    app = create_app(settings, Discovery([integration]))
    async with worker, serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


async def test_a_workflow_task_that_raises_reads_as_stalled_until_the_execution_timeout_fails_it(
    main: httpx.AsyncClient,
) -> None:
    created = await main.post(f"/api/integrations/{NAME}/tasks", json={"prompt": "x"}, headers=ALICE)
    assert created.status_code == 202, created.text
    task_id = created.json()["id"]

    async def read() -> dict[str, Any]:
        # Bounded as ever: the sync gives up after its timeout and answers with what main has.
        answer = await asyncio.wait_for(main.get(f"/api/tasks/{task_id}", headers=ALICE), SYNC_TIMEOUT + 3)
        assert answer.status_code == 200, answer.text
        task: dict[str, Any] = answer.json()
        return task

    async def stalled() -> dict[str, Any] | None:
        task = await read()
        return task if task["error"] is not None else None

    task = await wait_for(stalled, EXECUTION_TIMEOUT.total_seconds(), "the task to read as stalled", interval=0.5)
    assert task["status"] == "queued"
    assert task["error"]["code"] == "stalled"
    assert task["error"]["message"].startswith(f"stalled: {BROKEN}"), task["error"]

    async def ended() -> dict[str, Any] | None:
        task = await read()
        return task if task["status"] == "failed" else None

    task = await wait_for(ended, EXECUTION_TIMEOUT.total_seconds() + 30, "the execution timeout", interval=0.5)
    assert task["error"]["code"] == "workflow_timed_out"
    message = task["error"]["message"]
    assert f"did not finish within its execution timeout ({EXECUTION_TIMEOUT})" in message, message
    assert f"it was stalled: {BROKEN}" in message, message

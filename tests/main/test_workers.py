"""main as several processes (MAIN_WORKERS) on one SQLite store, beside the stack's own main: concurrent reports
spread over all of them apply once each, and every applied change is one event with its own version."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from deploy.local import LocalStack
from services.shared.tasks import workflow_id_for
from tests.stack import USERS, Api, MainProcess, wait_for

pytestmark = pytest.mark.integration

TASKS = 4
REPORTS_PER_TASK = 60


@pytest.fixture
async def two_workers(stack: LocalStack, worker_env: dict[str, str]) -> AsyncIterator[MainProcess]:
    # The stack's environment: the same DATABASE_URL, so this main and the stack's main share one store.
    main = MainProcess(worker_env, stack.state_dir / "main-two-workers.log", MAIN_WORKERS="2")
    try:
        await main.wait_ready()
        yield main
    finally:
        main.kill()


async def test_reports_spread_over_processes_apply_once_with_one_versioned_event_each(
    stack: LocalStack, two_workers: MainProcess, alice: Api, temporal: Client
) -> None:
    async def both_started() -> bool:
        return two_workers.process.output().count("Application startup complete") == 2

    await wait_for(both_started, 60, "both main processes to start")
    events = await alice.socket()
    users = {"Authorization": f"Bearer {USERS['alice']}"}
    internal = {"Authorization": f"Bearer {stack.secrets.report_token}"}
    limits = httpx.Limits(max_connections=16)
    async with (
        httpx.AsyncClient(base_url=two_workers.url, headers=users, timeout=30) as api,
        httpx.AsyncClient(headers=internal, limits=limits, timeout=30) as reports,
    ):
        created = [
            (await api.post("/api/integrations/echo/tasks", json={"message": "race", "delay_seconds": 600})).json()
            for _ in range(TASKS)
        ]
        ids = [task["id"] for task in created]
        progress = [round(0.2 + k / 100, 2) for k in range(REPORTS_PER_TASK)]
        # Rising values, interleaved over the tasks and sent all at once: most would apply alone, so the
        # processes race on every task all the time.
        jobs = [(task_id, p) for p in progress for task_id in ids]

        async def send(n: int, task_id: str, value: float) -> dict[str, Any]:
            # Every third report goes to the stack's own main: three processes race on one SQLite file.
            base = stack.main_internal_url if n % 3 == 0 else two_workers.internal_url
            response = await reports.post(
                f"{base}/internal/tasks/{task_id}/report", json={"status": "running", "progress": value}
            )
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body

        outcomes = await asyncio.gather(*(send(n, task_id, value) for n, (task_id, value) in enumerate(jobs)))

        listed = (await api.get("/api/tasks", params={"integration": "echo", "limit": 100})).json()["items"]
        final = {task["id"]: task for task in listed if task["id"] in ids}
        assert {task["progress"] for task in final.values()} == {max(progress)}

        # Wait until each task's newest version has arrived; events may arrive out of order across processes.
        seen: dict[str, list[dict[str, Any]]] = {task_id: [] for task_id in ids}

        async def all_arrived() -> bool:
            event = await events.next(timeout=30)
            if event.get("task_id") in seen:
                seen[event["task_id"]].append(event)
            return all(any(e["version"] == final[task_id]["version"] for e in seen[task_id]) for task_id in ids)

        await wait_for(all_arrived, 60, "every task's newest event", interval=0)

    for task_id in ids:
        versions = [e["version"] for e in seen[task_id]]
        # One event per applied change (the first is the create's), each with its own version: no change applied
        # twice, none unpublished.
        assert sorted(versions) == list(range(final[task_id]["version"] + 1)), (task_id, sorted(versions))
        newest = max(seen[task_id], key=lambda e: e["version"])
        assert newest["changes"].get("progress") == max(progress)
    ours = sum(1 for o in outcomes if o["applied"])
    assert ours > TASKS, "the reports hardly raced; the test proves little"
    our_events = sum(1 for task_events in seen.values() for e in task_events if e["changes"].get("progress", 0) >= 0.2)
    assert ours == our_events
    await events.close()
    for task_id in ids:
        await temporal.get_workflow_handle(workflow_id_for(task_id)).terminate("test cleanup")
    assert two_workers.process.terminate(30) == 0, two_workers.process.output()

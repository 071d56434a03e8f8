"""The compose stack under the two things containers go through: a worker container killed in the middle of a
task, and the whole project taken down (keeping its volumes) and brought up again."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import Client, WorkflowExecutionStatus

from tests.stack import Api, wait_for

from .conftest import ComposeStack

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


async def _activity_attempts(temporal: Client, workflow_id: str) -> list[int]:
    """The attempt number of every activity that finished (an ActivityTaskStarted event is written for the attempt
    that completes, so a retried activity shows attempt 2 or more)."""
    handle = temporal.get_workflow_handle(workflow_id)
    return [
        event.activity_task_started_event_attributes.attempt
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]


async def test_worker_killed_mid_task_finishes_it_exactly_once(
    compose_stack: ComposeStack, alice: Api, temporal: Client
) -> None:
    events = await alice.socket()
    created = await alice.create("echo", {"message": "survives a worker crash", "delay_seconds": 5})
    assert created.status_code == 202, created.text
    task = created.json()
    await events.until(task["id"], "running")

    # Kill the worker only once its activity runs and has heartbeated: the crash interrupts real work.
    handle = temporal.get_workflow_handle(task["workflow_id"])

    async def activity_running() -> bool:
        pending = (await handle.describe()).raw_description.pending_activities
        return any(
            a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED and a.HasField("last_heartbeat_time")
            for a in pending
        )

    await wait_for(activity_running, 30, "the echo activity to run and heartbeat", interval=0.2)
    await asyncio.to_thread(compose_stack.run, "kill", "worker-echo")
    await asyncio.to_thread(compose_stack.run, "start", "worker-echo")

    seen: list[dict[str, Any]] = await events.until(task["id"], "succeeded", timeout=120)
    # Anything still to come for this task would arrive within a few seconds.
    try:
        while True:
            seen.append(await events.next(timeout=3))
    except TimeoutError:
        pass
    await events.close()
    mine = [e["status"] for e in seen if e.get("task_id") == task["id"]]
    assert mine.count("succeeded") == 1, mine
    assert mine[-1] == "succeeded", mine

    final = await alice.task(task["id"])
    assert final["status"] == "succeeded"
    assert compose_stack.object_keys(f"tasks/{task['id']}/") == [final["output"]["objects"]["text"]["key"]]
    async with httpx.AsyncClient() as anonymous:
        download = await anonymous.get(final["output"]["objects"]["text"]["url"])
    assert download.text == "survives a worker crash"
    # The activity was retried on the restarted worker, not finished by the killed one.
    assert max(await _activity_attempts(temporal, task["workflow_id"])) >= 2
    # Leave the stack as the other tests expect it: the worker healthy again.
    await asyncio.to_thread(compose_stack.up)


async def test_data_survives_down_and_up(compose_stack: ComposeStack, alice: Api, temporal: Client) -> None:
    message = f"kept across down and up {uuid.uuid4().hex[:6]}"
    created = await alice.create("echo", {"message": message})
    assert created.status_code == 202, created.text
    before = await alice.wait_status(created.json()["id"], {"succeeded"})
    await alice.close()

    # `docker compose down` without -v: containers and network go, the named volumes stay.
    await asyncio.to_thread(compose_stack.run, "down")
    assert compose_stack.ps() == []
    await asyncio.to_thread(compose_stack.up)

    again = Api(compose_stack.main_url, "alice")
    try:
        after = await again.task(before["id"])  # the task store (PostgreSQL on postgres-data)
        assert after["status"] == "succeeded"
        assert after["output"]["objects"]["text"]["key"] == before["output"]["objects"]["text"]["key"]
        async with httpx.AsyncClient() as anonymous:  # the object (minio-data), freshly presigned
            download = await anonymous.get(after["output"]["objects"]["text"]["url"])
        assert download.status_code == 200 and download.text == message
        # Temporal's database (temporal-data) still has the workflow.
        described = await temporal.get_workflow_handle(before["workflow_id"]).describe()
        assert described.status == WorkflowExecutionStatus.COMPLETED
        # And the stack works as before.
        fresh = await again.create("echo", {"message": "after up"})
        assert fresh.status_code == 202, fresh.text
        assert (await again.wait_status(fresh.json()["id"], {"succeeded"}))["status"] == "succeeded"
    finally:
        await again.close()

"""Deleting a task on the real local stack: its objects leave the bucket, every read answers 404, and nothing more is
heard of it, whatever reports arrive for it afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.client import Client

from deploy.local import LocalStack
from services.shared.storage import ObjectStore
from services.shared.tasks import TaskReport, objects_prefix, workflow_id_for
from tests.stack import Api, Launcher

pytestmark = [pytest.mark.integration, pytest.mark.every_store]


@pytest.fixture
async def internal(stack: LocalStack) -> AsyncIterator[httpx.AsyncClient]:
    """main's report API, as a worker calls it."""
    async with httpx.AsyncClient(
        base_url=stack.main_internal_url, headers={"Authorization": f"Bearer {stack.secrets.report_token}"}
    ) as client:
        yield client


async def test_a_deleted_task_is_gone_and_silent(
    echo_worker: Launcher, alice: Api, objects: ObjectStore, internal: httpx.AsyncClient
) -> None:
    events = await alice.socket()
    key = str(uuid.uuid4())
    task = (await alice.create("echo", {"message": "forget me"}, **{"Idempotency-Key": key})).json()
    task_id = task["id"]
    await events.until(task_id, "succeeded")
    prefix = objects_prefix(task_id)
    assert await objects.list_keys(prefix) == [f"{prefix}echo.txt"]

    response = await alice.http.delete(f"/api/tasks/{task_id}")
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert await objects.list_keys(prefix) == []
    for method, path in (
        ("get", f"/api/tasks/{task_id}"),
        ("get", f"/api/integrations/echo/tasks/{task_id}"),
        ("post", f"/api/tasks/{task_id}/cancel"),
        ("delete", f"/api/tasks/{task_id}"),
    ):
        answer = await alice.http.request(method, path)
        assert (answer.status_code, answer.json()["code"]) == (404, "not_found"), (method, path, answer.text)
    listed = (await alice.http.get("/api/tasks", params={"integration": "echo", "limit": 100})).json()
    assert task_id not in {t["id"] for t in listed["items"]}
    # The key stays bound to the deleted task: it neither comes back nor is another task taken for it.
    again = await alice.create("echo", {"message": "forget me"}, **{"Idempotency-Key": key})
    assert (again.status_code, again.json()["code"]) == (409, "task_deleted"), again.text
    assert task_id in again.json()["message"]

    # A late upload and the report naming it, as an activity that outlived the delete would send them: the report
    # is acknowledged, changes nothing, and the object is removed.
    late_key = f"{prefix}late.txt"
    await objects.put_bytes(late_key, b"late", "text/plain")
    late = {
        "status": "succeeded",
        "result": {"objects": {"text": {"key": late_key, "content_type": "text/plain", "size": 4}}},
    }
    acknowledged = await internal.post(f"/internal/tasks/{task_id}/report", json=late)
    assert acknowledged.status_code == 200, acknowledged.text
    assert acknowledged.json() == {"applied": False, "status": "succeeded", "reason": "the task was deleted"}
    assert await objects.list_keys(prefix) == []
    running = await internal.post(f"/internal/tasks/{task_id}/report", json={"status": "running", "progress": 0.5})
    assert running.json()["applied"] is False
    missing = await internal.post(f"/internal/tasks/{uuid.uuid4()}/report", json={"status": "running"})
    assert missing.status_code == 404

    # The tombstone's event is the task's last: up to a new task's first event, nothing else of it.
    marker = (await alice.create("echo", {"message": "marker"})).json()
    seen = [e for e in await events.until(marker["id"], "queued") if e.get("task_id") == task_id]
    assert [e["event"] for e in seen] == ["task.deleted"], seen
    await events.close()


async def test_deleting_a_running_task_cancels_it(echo_worker: Launcher, alice: Api, temporal: Client) -> None:
    events = await alice.socket()
    task = (await alice.create("echo", {"message": "stop me", "delay_seconds": 600})).json()
    await events.until(task["id"], "running")
    response = await alice.http.delete(f"/api/tasks/{task['id']}")
    assert response.status_code == 204, response.text
    assert (await alice.http.get(f"/api/tasks/{task['id']}")).status_code == 404
    # The workflow ends cancelled, having sent its last report (acknowledged, whether before or after the tombstone).
    report = await temporal.get_workflow_handle(workflow_id_for(task["id"]), result_type=TaskReport).result()
    assert report.status == "cancelled"
    marker = (await alice.create("echo", {"message": "marker"})).json()
    seen = [e for e in await events.until(marker["id"], "queued") if e.get("task_id") == task["id"]]
    # Whatever the cancellation reported before the tombstone, the tombstone's event comes last.
    assert seen[-1]["event"] == "task.deleted", seen
    await events.close()


async def test_another_users_delete_is_404(echo_worker: Launcher, alice: Api, bob: Api) -> None:
    task = (await alice.create("echo", {"message": "mine"})).json()
    await alice.wait_status(task["id"], {"succeeded"})
    response = await bob.http.delete(f"/api/tasks/{task['id']}")
    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    assert (await alice.task(task["id"]))["status"] == "succeeded"
    async with httpx.AsyncClient(base_url=alice.main_url) as anonymous:
        assert (await anonymous.delete(f"/api/tasks/{task['id']}")).status_code == 401

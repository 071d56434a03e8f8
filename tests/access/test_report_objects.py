"""The report API names objects only under the task's own prefix, and only objects that exist: a report that names
another task's object, a key that climbs out of the prefix, or an object nobody stored is refused with 422 naming the
key; the task is not changed, nothing is published, and reading the task never hands out a URL for that key."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from deploy.local import LocalStack
from services.shared.storage import ObjectStore
from services.shared.tasks import workflow_id_for
from tests.stack import Api, Launcher

pytestmark = pytest.mark.integration


@pytest.fixture
async def reports(stack: LocalStack) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {stack.secrets.report_token}"}
    async with httpx.AsyncClient(base_url=stack.main_internal_url, headers=headers, timeout=30) as client:
        yield client


def succeeded_with(key: str) -> dict[str, Any]:
    return {
        "status": "succeeded",
        "progress": 1.0,
        "result": {"objects": {"text": {"key": key, "content_type": "text/plain", "size": 5}}},
    }


async def test_reports_naming_objects_the_task_may_not_have_are_refused(
    stack: LocalStack,
    echo_worker: Launcher,
    alice: Api,
    bob: Api,
    objects: ObjectStore,
    reports: httpx.AsyncClient,
    temporal: Client,
) -> None:
    events = await alice.socket()
    # A task that stays running, so a report could still change it.
    task = (await alice.create("echo", {"message": "a task to forge", "delay_seconds": 600})).json()
    await events.until(task["id"], "running")
    before = await alice.task(task["id"])
    # Someone else's object, which does exist: existing is not enough.
    other = (await bob.create("echo", {"message": "bob's object"})).json()
    done = await bob.wait_status(other["id"], {"succeeded"})
    foreign = done["output"]["objects"]["text"]["key"]
    assert await objects.exists(foreign)
    prefix = f"tasks/{task['id']}/"
    await objects.put_bytes(f"{prefix}real.txt", b"mine!", "text/plain")

    cases = {
        "another task's object": foreign,
        "outside every task": "results/everyone.png",
        "a path that climbs out": f"{prefix}../{other['id']}/text.txt",
        "a dot segment": f"{prefix}./real.txt",
        "an empty segment": f"{prefix}/real.txt",
        "a backslash": f"{prefix}..\\{other['id']}\\text.txt",
        "the prefix itself": prefix,
        "a prefix of another task's id": f"tasks/{task['id'][:8]}/real.txt",
        "an object nobody stored": f"{prefix}{uuid.uuid4()}.txt",
    }
    for what, key in cases.items():
        response = await reports.post(f"/internal/tasks/{task['id']}/report", json=succeeded_with(key))
        assert response.status_code == 422, (what, response.text)
        body = response.json()
        assert (body["code"], body["retryable"], body["details"]) == ("invalid_object_key", False, {"key": key})
        assert key in body["message"] or repr(key) in body["message"], (what, body)
    # Nothing was applied: the same version, still running, no output to hand out.
    after = await alice.task(task["id"])
    assert (after["status"], after["version"], after["output"]) == ("running", before["version"], None)

    # An object of its own that exists is accepted, and its event is the next one for this task.
    accepted = await reports.post(f"/internal/tasks/{task['id']}/report", json=succeeded_with(f"{prefix}real.txt"))
    assert accepted.json()["applied"] is True, accepted.text
    seen = await events.until(task["id"], "succeeded")
    assert [e["version"] for e in seen if e.get("task_id") == task["id"]] == [before["version"] + 1]
    final = await alice.task(task["id"])
    assert final["output"]["objects"]["text"]["key"] == f"{prefix}real.txt"
    async with httpx.AsyncClient() as anonymous:
        assert (await anonymous.get(final["output"]["objects"]["text"]["url"])).content == b"mine!"
    await temporal.get_workflow_handle(workflow_id_for(task["id"])).terminate("test cleanup")
    await events.close()


async def test_a_report_about_an_unknown_task_names_no_object(reports: httpx.AsyncClient) -> None:
    unknown = str(uuid.uuid4())
    response = await reports.post(f"/internal/tasks/{unknown}/report", json=succeeded_with(f"tasks/{unknown}/x.txt"))
    assert response.status_code == 404, response.text

"""One user against another user's tasks in the provider integrations: every route answers exactly as for a task that
does not exist, lists never show them, nothing bob does changes them, and bob's socket never carries alice's
events (nor can alice's socket be pointed at bob's channel)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest

from deploy.local import LocalStack
from tests.stack import Api, Events, Launcher

from .conftest import IMAGE, VIDEO

pytestmark = pytest.mark.integration


def unique(text: str) -> str:
    return f"{text} ({uuid.uuid4().hex[:8]})"


def as_unknown(response: httpx.Response, task_id: str) -> tuple[int, Any]:
    """The answer with the task id replaced, to compare with the answer about an id that does not exist."""
    return response.status_code, json.loads(response.text.replace(task_id, "<id>"))


async def routes_on(api: Api, task_id: str) -> dict[str, httpx.Response]:
    """Every route that takes a task id, called by ``api``."""
    return {
        "read": await api.http.get(f"/api/tasks/{task_id}"),
        "read as image": await api.http.get(f"/api/integrations/{IMAGE}/tasks/{task_id}"),
        "read as video": await api.http.get(f"/api/integrations/{VIDEO}/tasks/{task_id}"),
        "read as echo": await api.http.get(f"/api/integrations/echo/tasks/{task_id}"),
        "refresh": await api.http.post(f"/api/integrations/{VIDEO}/tasks/{task_id}/refresh"),
        "cancel": await api.http.post(f"/api/tasks/{task_id}/cancel"),
    }


async def listed_ids(api: Api, **params: str) -> set[str]:
    response = await api.http.get("/api/tasks", params={"limit": "100", **params})
    assert response.status_code == 200, response.text
    return {t["id"] for t in response.json()["items"]}


async def nothing_of(events: Events, owner: Api, foreign: set[str]) -> None:
    """Everything ``events`` receives up to a new task of its own user: none of it is about ``foreign`` tasks."""
    marker = (await owner.create("echo", {"message": unique("marker")})).json()
    seen = await events.until(marker["id"], "queued")
    assert not [e for e in seen if e.get("task_id") in foreign], seen


async def test_another_users_provider_tasks_do_not_exist_for_bob(
    provider_worker: Launcher, echo_worker: Launcher, alice: Api, bob: Api
) -> None:
    alice_events, bob_events = await alice.socket(), await bob.socket()
    # A video that stays running for the whole test (Ark works 60 s), and an image that finishes.
    running = (await alice.create(VIDEO, {"prompt": unique("a long take [sim:slow=60]"), "duration": 2})).json()
    finished = (await alice.create(IMAGE, {"prompt": unique("a private picture")})).json()
    await alice_events.until(running["id"], "running")
    await alice.wait_status(finished["id"], {"succeeded"})

    unknown = str(uuid.uuid4())
    expected = {what: as_unknown(r, unknown) for what, r in (await routes_on(bob, unknown)).items()}
    assert all(status == 404 for status, _ in expected.values()), expected
    for task in (running, finished):
        answers = {what: as_unknown(r, task["id"]) for what, r in (await routes_on(bob, task["id"])).items()}
        assert answers == expected, task["integration"]
        for params in ({}, {"integration": task["integration"]}, {"status": task["status"]}):
            assert task["id"] not in await listed_ids(bob, **params)
    # Alice sees them, only under their own integration.
    assert {running["id"], finished["id"]} <= await listed_ids(alice)
    assert (await alice.http.get(f"/api/integrations/{IMAGE}/tasks/{running['id']}")).status_code == 404
    assert (await alice.http.get(f"/api/integrations/{VIDEO}/tasks/{running['id']}")).status_code == 200

    # Bob's cancel and refresh changed nothing; bob's socket carried none of alice's events.
    assert (await alice.task(running["id"]))["status"] == "running"
    await nothing_of(bob_events, bob, {running["id"], finished["id"]})
    cancelled = await alice.http.post(f"/api/tasks/{running['id']}/cancel")
    assert cancelled.status_code == 202, cancelled.text
    await alice.wait_status(running["id"], {"cancelled"})
    await nothing_of(bob_events, bob, {running["id"], finished["id"]})
    await alice_events.close()
    await bob_events.close()


async def test_a_socket_stays_on_its_own_users_channel(echo_worker: Launcher, alice: Api, bob: Api) -> None:
    alice_events, bob_events = await alice.socket(), await bob.socket()
    # Whatever alice sends on her socket, it is not a way onto bob's channel.
    for message in (
        {"type": "subscribe", "channel": "user:bob"},
        {"type": "subscribe", "channels": ["user:bob"]},
        {"channel": "user:bob"},
        {"type": "ping", "channel": "user:bob"},
    ):
        await alice_events.ws.send(json.dumps(message))
    bob_tasks = await asyncio.gather(*(bob.create("echo", {"message": unique("bob's")}) for _ in range(3)))
    ids = {r.json()["id"] for r in bob_tasks}
    for task_id in ids:
        await bob.wait_status(task_id, {"succeeded"})
    seen = await bob_events.until(sorted(ids)[0], "succeeded")
    # Bob's earlier tasks (other tests') may still send events; every event on his socket is of a task of his.
    for task_id in {e["task_id"] for e in seen if "task_id" in e} - ids:
        assert (await bob.http.get(f"/api/tasks/{task_id}")).status_code == 200, task_id
    await nothing_of(alice_events, alice, ids)
    await alice_events.close()
    await bob_events.close()


async def test_a_key_that_is_not_ascii_is_refused_like_any_wrong_key(stack: LocalStack) -> None:
    # Sent as UTF-8, as some clients do; it must be a 401 like any unknown key, never a server error.
    headers = httpx.Headers({"Authorization": "Bearer \u00e4lice-key"}, encoding="utf-8")
    async with httpx.AsyncClient(base_url=stack.main_url) as client:
        for method, path in (("get", "/api/tasks"), ("post", "/api/realtime/token"), ("get", "/api/tasks/x")):
            response = await client.request(method, path, headers=headers)
            assert response.status_code == 401, (path, response.text)
            assert response.json() == {"code": "unauthorized", "message": "invalid API key", "retryable": False}

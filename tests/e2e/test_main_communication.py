"""main and communication against the real stack: the full loop, idempotency, query-time sync, security."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from temporalio.client import Client
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from deploy.local import LocalStack
from services.shared import realtime_token
from services.shared.storage import ObjectStore
from services.shared.tasks import workflow_id_for
from tests.stack import USERS, Api, Launcher

pytestmark = [pytest.mark.integration, pytest.mark.every_store]


async def test_full_loop_events_and_result(echo_worker: Launcher, alice: Api, objects: ObjectStore) -> None:
    events = await alice.socket()
    created = await alice.create("echo", {"message": "hello loop"})
    assert created.status_code == 202, created.text
    task = created.json()
    assert task["status"] == "queued"
    assert created.headers["location"] == f"/api/tasks/{task['id']}"

    seen = [e for e in await events.until(task["id"], "succeeded") if e.get("task_id") == task["id"]]
    assert [e["status"] for e in seen] == ["queued", "running", "succeeded"]
    assert all(e["event"] == "task.updated" and e["integration"] == "echo" for e in seen)
    final_event = seen[-1]
    assert final_event["changes"]["output"]["objects"]["text"]["size"] == len("hello loop")

    read = await alice.task(task["id"])
    assert read["status"] == "succeeded"
    assert read["progress"] == 1.0
    own = await alice.http.get(f"/api/integrations/echo/tasks/{task['id']}")
    assert own.json()["status"] == "succeeded"
    url = read["output"]["objects"]["text"]["url"]
    async with httpx.AsyncClient() as anonymous:
        download = await anonymous.get(url)
    assert download.status_code == 200
    assert download.text == "hello loop"
    assert await objects.list_keys(f"tasks/{task['id']}/") == [f"tasks/{task['id']}/echo.txt"]
    await events.close()


async def test_idempotency_key_returns_the_same_task(echo_worker: Launcher, alice: Api) -> None:
    key = str(uuid.uuid4())
    first = await alice.create("echo", {"message": "once"}, **{"Idempotency-Key": key})
    again = await alice.create("echo", {"message": "once"}, **{"Idempotency-Key": key})
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    conflict = await alice.create("echo", {"message": "different"}, **{"Idempotency-Key": key})
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "idempotency_conflict"
    listed = await alice.http.get("/api/tasks", params={"integration": "echo", "limit": 100})
    assert [t["id"] for t in listed.json()["items"]].count(first.json()["id"]) == 1


async def test_duplicate_late_and_concurrent_reports_apply_once(
    stack: LocalStack, echo_worker: Launcher, alice: Api, temporal: Client
) -> None:
    internal = httpx.AsyncClient(
        base_url=stack.main_internal_url, headers={"Authorization": f"Bearer {stack.secrets.report_token}"}
    )
    events = await alice.socket()
    # A long task stays running, so the reports below race on a live task.
    created = (await alice.create("echo", {"message": "slow", "delay_seconds": 600})).json()
    await events.until(created["id"], "running")

    report = {"status": "succeeded", "result": {"objects": {}, "data": {"by": "test"}}}
    responses = await asyncio.gather(
        *(internal.post(f"/internal/tasks/{created['id']}/report", json=report) for _ in range(12))
    )
    assert all(r.status_code == 200 for r in responses)
    assert sum(r.json()["applied"] for r in responses) == 1
    late = await internal.post(
        f"/internal/tasks/{created['id']}/report", json={"status": "failed", "error": {"code": "x", "message": "y"}}
    )
    assert late.json() == {"applied": False, "status": "succeeded", "reason": "task is already succeeded"}

    # Exactly one event for the applied change: none of this task's events follows it, up to a new task's first.
    await events.until(created["id"], "succeeded")
    marker = (await alice.create("echo", {"message": "marker"})).json()
    between = await events.until(marker["id"], "queued")
    assert [e for e in between if e.get("task_id") == created["id"]] == [], between
    await temporal.get_workflow_handle(workflow_id_for(created["id"])).terminate("test cleanup")
    await events.close()
    await internal.aclose()


async def test_lost_reports_are_recovered_at_query_time(
    stack: LocalStack, echo_worker: Launcher, worker_env: dict[str, str], alice: Api
) -> None:
    # This worker's reports are all rejected by main (wrong report token): only query-time sync can
    # bring the task to its final state.
    echo_worker.kill()
    muted = Launcher({**worker_env, "REPORT_TOKEN": "wrong"}, ["echo"], stack.state_dir / "muted-worker.log")
    try:
        await muted.wait_serving()
        created = (await alice.create("echo", {"message": "unreported"})).json()
        done = await alice.wait_status(created["id"], {"succeeded"})
        assert done["output"]["objects"]["text"]["size"] == len("unreported")
        assert "rejected by main: HTTP 401" in muted.output()
    finally:
        muted.kill()
        replacement = Launcher(worker_env, ["echo"], stack.state_dir / "echo-worker.log")
        await replacement.wait_serving()
        echo_worker.proc = replacement.proc


async def test_internal_endpoints_require_the_internal_token(stack: LocalStack, alice: Api) -> None:
    async with httpx.AsyncClient(base_url=stack.main_internal_url) as anonymous:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {USERS['alice']}"}):
            response = await anonymous.post("/internal/tasks/any/report", json={"status": "running"}, headers=headers)
            assert response.status_code == 401
            assert response.json()["code"] == "unauthorized"
            assert response.json()["retryable"] is False


async def test_users_are_isolated(echo_worker: Launcher, alice: Api, bob: Api) -> None:
    bob_events = await bob.socket()
    task = (await alice.create("echo", {"message": "private"})).json()
    assert (await bob.http.get(f"/api/tasks/{task['id']}")).status_code == 404
    assert (await bob.http.get(f"/api/integrations/echo/tasks/{task['id']}")).status_code == 404
    assert (await bob.http.post(f"/api/tasks/{task['id']}/cancel")).status_code == 404
    listed = await bob.http.get("/api/tasks")
    assert task["id"] not in {t["id"] for t in listed.json()["items"]}
    await alice.wait_status(task["id"], {"succeeded"})
    # Bob's socket gets bob's next event, never alice's.
    own = (await bob.create("echo", {"message": "bob"})).json()
    assert (await bob_events.next())["task_id"] == own["id"]
    await bob_events.close()


async def test_websocket_rejects_missing_forged_and_expired_tokens(stack: LocalStack) -> None:
    base = stack.communication_url.replace("http", "ws", 1) + "/ws"
    expired, _ = realtime_token.issue(stack.secrets.realtime_secret, "alice", ttl_seconds=-1)
    forged, _ = realtime_token.issue("not-the-secret", "alice", ttl_seconds=60)
    for url, reason in (
        (base, "missing"),
        (f"{base}?token={forged}", "signature"),
        (f"{base}?token={expired}", "expired"),
    ):
        ws = await connect(url)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4401
        assert reason in closed.value.rcvd.reason


async def test_cancel_a_running_task(echo_worker: Launcher, alice: Api) -> None:
    task = (await alice.create("echo", {"message": "cancel me", "delay_seconds": 600})).json()
    await alice.wait_status(task["id"], {"running"})
    cancelled = await alice.http.post(f"/api/tasks/{task['id']}/cancel")
    assert cancelled.status_code == 202
    final = await alice.wait_status(task["id"], {"cancelled"})
    assert final["error"]["code"] == "cancelled"
    again = await alice.http.post(f"/api/tasks/{task['id']}/cancel")
    assert again.status_code == 409
    assert again.json()["code"] == "task_terminal"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code", "mentions"),
    [
        ("post", "/api/integrations/echo/tasks", b"{not json", 400, "bad_request", "JSON"),
        ("post", "/api/integrations/echo/tasks", b'{"message": 5}', 400, "invalid_input", "message"),
        (
            "post",
            "/api/integrations/echo/tasks",
            b'{"message": "x", "delay_seconds": -1}',
            400,
            "invalid_input",
            "delay_seconds",
        ),
        ("post", "/api/integrations/echo/tasks", b'{"message": "x", "extra": 1}', 400, "invalid_input", "extra"),
        ("post", "/api/integrations/echo/tasks", b"{}", 400, "invalid_input", "message"),
        ("post", "/api/integrations/nope/tasks", b'{"message": "x"}', 404, "not_found", ""),
        ("get", "/api/tasks/does-not-exist", None, 404, "not_found", "does-not-exist"),
        ("get", "/api/integrations/echo/tasks/does-not-exist", None, 404, "not_found", "does-not-exist"),
        ("post", "/api/tasks/does-not-exist/cancel", None, 404, "not_found", "does-not-exist"),
        ("get", "/api/tasks?status=bogus", None, 400, "invalid_input", "status"),
        ("get", "/api/tasks?limit=0", None, 400, "invalid_input", "limit"),
        ("get", "/api/tasks?limit=abc", None, 400, "invalid_input", "limit"),
    ],
)
async def test_bad_input_gets_a_structured_4xx(
    alice: Api, method: str, path: str, body: bytes | None, status: int, code: str, mentions: str
) -> None:
    response = await alice.http.request(method, path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()
    assert error["code"] == code
    assert mentions in error["message"]
    assert isinstance(error["retryable"], bool)


async def test_missing_or_wrong_api_key(stack: LocalStack) -> None:
    async with httpx.AsyncClient(base_url=stack.main_url) as anonymous:
        for headers in ({}, {"Authorization": "Bearer nope"}):
            for method, path in (
                ("get", "/api/tasks"),
                ("post", "/api/realtime/token"),
                ("post", "/api/integrations/echo/tasks"),
            ):
                response = await anonymous.request(method, path, headers=headers, json={"message": "x"})
                assert response.status_code == 401, (method, path, response.text)
                assert response.json()["code"] == "unauthorized"


async def test_health_and_readiness(stack: LocalStack) -> None:
    async with httpx.AsyncClient(base_url=stack.main_url) as anonymous:
        assert (await anonymous.get("/healthz")).json()["status"] == "ok"
        ready = await anonymous.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"store": True, "temporal": True}
        docs = await anonymous.get("/docs/openapi.json")
        assert "/api/integrations/echo/tasks" in docs.json()["paths"]

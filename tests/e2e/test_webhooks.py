"""Webhooks on the real stack: a receiver run here (a real HTTP server) verifies every delivery with the
``standardwebhooks`` package, an implementation of the specification independent of ours. Each selected event
arrives once per task; a receiver that fails and then is down gets every event once it is back; 410 stops the
deliveries; URLs outside the outbound rules are refused at create; a rotated secret verifies during the overlap."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from deploy.local import LocalStack
from services.main.settings import MainSettings, database_url
from services.main.store import OutboxEvent, TaskRecord, TaskStore
from services.main.webhooks.inputs import delivery_workflow_id
from services.shared.events import TaskEvent
from services.shared.settings import Env
from tests.stack import Api, Launcher, MainProcess, wait_for
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.integration


@pytest.fixture
async def receiver(webhook_port: int, alice: Api) -> AsyncIterator[Receiver]:
    secret = (await alice.http.get("/api/webhooks/secret")).json()["secret"]
    running = Receiver(webhook_port, secrets=[secret])
    await running.start()
    yield running
    await running.stop()


async def create(alice: Api, receiver: Receiver, events: list[str] | None, **body: Any) -> dict[str, Any]:
    webhook: dict[str, Any] = {"webhook_url": body.pop("webhook_url", receiver.url())}
    if events is not None:
        webhook["webhook_events"] = events
    response = await alice.create("echo", {"message": "hook", **body, **webhook})
    assert response.status_code == 202, response.text
    task: dict[str, Any] = response.json()
    assert task["webhooks"] == []
    return task


async def settled(alice: Api, task_id: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    """The task's deliveries, once it has ``count`` of them and none is pending."""

    async def probe() -> list[dict[str, Any]] | None:
        webhooks: list[dict[str, Any]] = (await alice.task(task_id))["webhooks"]
        done = len(webhooks) == count and all(w["status"] != "pending" for w in webhooks)
        return webhooks if done else None

    return await wait_for(probe, timeout, f"{count} settled webhooks of task {task_id}", interval=0.2)


@pytest.mark.every_store
async def test_each_selected_event_arrives_once_and_verifies(
    stack: LocalStack, echo_worker: Launcher, alice: Api, receiver: Receiver
) -> None:
    both = await create(alice, receiver, ["started", "completed"], delay_seconds=1)
    default = await create(alice, receiver, None)
    assert [w["event"] for w in await settled(alice, default["id"], 1)] == ["completed"]
    webhooks = await settled(alice, both["id"], 2)
    assert sorted(w["event"] for w in webhooks) == ["completed", "started"]
    assert all(w["status"] == "delivered" and w["attempts"] == 1 and w["last_error"] is None for w in webhooks)
    assert all(w["delivered_at"] for w in webhooks)

    got = receiver.of(both["id"])
    assert sorted(d.event for d in got) == ["completed", "started"]
    assert len({d.message_id for d in got}) == 2
    assert [d.event for d in receiver.of(default["id"])] == ["completed"]
    assert receiver.refused == []
    # The body is the task as its read shows it (read when the delivery was sent), presigned download URL included.
    completed = next(d.task for d in got if d.event == "completed")
    read = await alice.task(both["id"])
    assert completed["status"] == read["status"] == "succeeded"
    assert set(completed) == set(read)
    assert {k: completed[k] for k in ("id", "version", "input", "links")} == {
        k: read[k] for k in ("id", "version", "input", "links")
    }
    download = completed["output"]["objects"]["text"]["url"]
    async with httpx.AsyncClient() as anonymous:
        assert (await anonymous.get(download)).text == "hook"


async def test_progress_sends_a_webhook_while_the_task_runs(
    stack: LocalStack, echo_worker: Launcher, alice: Api, receiver: Receiver
) -> None:
    """No integration reports progress between start and end yet; a report that does (as a worker may) sends one."""
    task = await create(alice, receiver, ["progress"], delay_seconds=600)
    await alice.wait_status(task["id"], {"running"})
    internal = httpx.AsyncClient(
        base_url=stack.main_internal_url, headers={"Authorization": f"Bearer {stack.secrets.report_token}"}
    )
    async with internal:
        report = await internal.post(
            f"/internal/tasks/{task['id']}/report", json={"status": "running", "progress": 0.5}
        )
    assert report.json()["applied"] is True
    [webhook] = await settled(alice, task["id"], 1)
    assert (webhook["event"], webhook["status"]) == ("progress", "delivered")
    [delivery] = receiver.of(task["id"])
    assert (delivery.event, delivery.task["progress"]) == ("progress", 0.5)
    await alice.http.post(f"/api/tasks/{task['id']}/cancel")


async def test_a_receiver_that_fails_and_then_is_down_still_gets_every_event(
    stack: LocalStack, echo_worker: Launcher, alice: Api, receiver: Receiver
) -> None:
    receiver.answers = [500] * 1000
    task = await create(alice, receiver, ["started", "completed"])
    await alice.wait_status(task["id"], {"succeeded"})
    await wait_for(lambda: _true(len(receiver.requests) >= 4), 30, "the receiver to answer 500 a few times")
    await receiver.stop()
    receiver.answers = []

    async def failed_while_down() -> bool:
        webhooks = (await alice.task(task["id"]))["webhooks"]
        errors = [w["last_error"] or "" for w in webhooks if w["status"] == "pending"]
        return len(errors) == 2 and all("HTTP 500" not in e for e in errors)

    # Both deliveries have tried (and failed to connect) since the receiver went away.
    await wait_for(failed_while_down, 60, "attempts against the stopped receiver", interval=0.2)
    await receiver.start()
    webhooks = await settled(alice, task["id"], 2)
    assert all(w["status"] == "delivered" for w in webhooks), webhooks
    # The 500s, a failed connection each while the receiver was down, and the delivery.
    assert sum(w["attempts"] for w in webhooks) >= 4 + 2 + 2
    got = receiver.of(task["id"])
    assert sorted(d.event for d in got) == ["completed", "started"]
    # Retries are the same message: one webhook id per delivery, whatever the attempt.
    assert set(receiver.requests) >= {d.message_id for d in got}
    assert len(set(receiver.requests) - {d.message_id for d in receiver.accepted}) == 0


async def test_410_stops_the_deliveries(
    stack: LocalStack, echo_worker: Launcher, alice: Api, receiver: Receiver, temporal: Client
) -> None:
    task = await create(alice, receiver, ["started", "completed"], webhook_url=receiver.url("/gone"))
    webhooks = await settled(alice, task["id"], 2)
    assert [(w["status"], w["attempts"]) for w in webhooks] == [("gone", 1), ("gone", 1)]
    assert all("410" in w["last_error"] for w in webhooks)
    ids = set(receiver.requests)
    assert len(ids) == 2 and len(receiver.requests) == 2
    for message_id in ids:
        handle = temporal.get_workflow_handle(delivery_workflow_id(message_id))
        assert await handle.result() == "gone"
        assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    # Their workflows are over: nothing will try again.
    assert len(receiver.requests) == 2


def deleted(record: TaskRecord, _: dict[str, Any]) -> OutboxEvent:
    """The event main writes when it removes a task."""
    event = TaskEvent(
        id=str(uuid.uuid4()),
        task_id=record.id,
        integration=record.integration,
        status=record.status,
        changes={},
        timestamp=datetime.now(UTC).isoformat(),
        version=record.version + 1,
        event="task.deleted",
    )
    return OutboxEvent(event.id, msgspec.json.encode(event))


async def test_the_deliveries_of_a_task_that_no_longer_exists_end_without_sending(
    stack: LocalStack,
    worker_env: dict[str, str],
    echo_worker: Launcher,
    alice: Api,
    receiver: Receiver,
    temporal: Client,
) -> None:
    """A task removed from the store (as main removes one whose workflow never started; deletion reads the same):
    its pending delivery's next attempt sends nothing and ends it ``dropped``."""
    receiver.answers = [500] * 1000
    task = await create(alice, receiver, None)
    await wait_for(lambda: _true(len(receiver.requests) >= 1), 30, "a first, failed attempt")
    store = TaskStore.from_url(database_url(Env(worker_env), MainSettings.database_url))
    try:
        await store.delete(task["id"], deleted)
        assert (await alice.http.get(f"/api/tasks/{task['id']}")).status_code == 404
        [message_id] = set(receiver.requests)
        handle = temporal.get_workflow_handle(delivery_workflow_id(message_id))
        assert await handle.result() == "dropped"
        tried = len(receiver.requests)
        delivery = await store.delivery(message_id)
        assert delivery is not None and (delivery.status, delivery.attempts) == ("dropped", tried)
        assert delivery.last_error == "the task no longer exists"
    finally:
        await store.close()
    assert receiver.accepted == []


async def test_urls_outside_the_rules_and_bad_events_are_refused_at_create(
    stack: LocalStack, worker_env: dict[str, str], alice: Api, receiver: Receiver
) -> None:
    async def refused(api: Api | httpx.AsyncClient, body: dict[str, Any]) -> str:
        client = api.http if isinstance(api, Api) else api
        response = await client.post("/api/integrations/echo/tasks", json={"message": "no", **body})
        assert response.status_code == 422, response.text
        problem = response.json()
        assert problem["code"] == "invalid_webhook"
        field_name: str = problem["details"]["field"]
        return field_name

    for private in ("https://10.1.2.3/hook", "https://169.254.169.254/", "https://[::1]/", "http://localhost/hook"):
        assert await refused(alice, {"webhook_url": private}) == "webhook_url", private
    # The receiver's host, on another port: not what the setting allows.
    assert await refused(alice, {"webhook_url": f"http://127.0.0.1:{receiver.port + 1}/"}) == "webhook_url"
    assert await refused(alice, {"webhook_url": "ftp://example.com/"}) == "webhook_url"
    for events in (["finished"], []):
        assert await refused(alice, {"webhook_url": receiver.url(), "webhook_events": events}) == "webhook_events"
    assert await refused(alice, {"webhook_events": ["completed"]}) == "webhook_events"
    # An Idempotency-Key is bound to the webhook too.
    key = str(uuid.uuid4())
    first = await alice.create("echo", {"message": "once", "webhook_url": receiver.url()}, **{"Idempotency-Key": key})
    other = await alice.create(
        "echo", {"message": "once", "webhook_url": receiver.url("/b")}, **{"Idempotency-Key": key}
    )
    assert (first.status_code, other.status_code) == (202, 409)

    # main with the default rules (https to public addresses only): plain http is refused as well.
    strict = MainProcess(
        worker_env,
        stack.state_dir / "main-webhook-defaults.log",
        MAIN_WEBHOOK_ALLOW_HTTP="",
        MAIN_WEBHOOK_ALLOWED_HOSTS="",
    )
    try:
        await strict.wait_ready()
        async with httpx.AsyncClient(base_url=strict.url, headers=alice.http.headers) as http:
            for url in ("http://example.com/hook", receiver.url(), "https://192.168.1.10/hook"):
                assert await refused(http, {"webhook_url": url}) == "webhook_url", url
    finally:
        strict.kill()


async def test_a_rotated_secret_verifies_with_the_old_one_and_the_new_one(
    stack: LocalStack, echo_worker: Launcher, alice: Api, receiver: Receiver
) -> None:
    old = (await alice.http.get("/api/webhooks/secret")).json()
    assert old["secret"].startswith("whsec_")
    assert (await alice.http.get("/api/webhooks/secret")).json()["secret"] == old["secret"]
    rotated = await alice.http.post("/api/webhooks/secret/rotate")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert new["secret"] != old["secret"] and new["secret"].startswith("whsec_")
    assert new["previous_valid_until"] is not None

    # The receiver knows only the old secret: a delivery during the overlap verifies with it.
    receiver.secrets = [old["secret"]]
    first = await create(alice, receiver, None)
    await settled(alice, first["id"], 1)
    [by_old] = receiver.of(first["id"])
    assert by_old.signatures == 2
    # Now only the new one.
    receiver.secrets = [new["secret"]]
    second = await create(alice, receiver, None)
    await settled(alice, second["id"], 1)
    assert len(receiver.of(second["id"])) == 1
    assert receiver.refused == []


async def _true(value: bool) -> bool:
    return value

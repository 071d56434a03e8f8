"""The Ark callback route takes no API key, only the task's own token: without it, or with any other, it is refused
and the task's workflow hears nothing. main derives the token and stores it nowhere: neither main's task store nor
the workflow's Temporal history holds it."""

from __future__ import annotations

import sqlite3
import uuid

import httpx
import pytest
from temporalio.client import Client

from deploy.local import LocalStack
from services.shared.submit_poll import CALLBACK_SIGNAL
from tests.stack import USERS, Api, Launcher, signals_heard, wait_for

from .conftest import VIDEO

pytestmark = pytest.mark.integration


async def callbacks_heard(temporal: Client, workflow_id: str) -> int:
    return await signals_heard(temporal, workflow_id, CALLBACK_SIGNAL)


async def test_callback_needs_the_tasks_own_secret(
    stack: LocalStack, provider_worker: Launcher, echo_worker: Launcher, alice: Api, temporal: Client
) -> None:
    # Two running videos (Ark works 60 s on each), and an echo task that has no callback at all.
    created = [
        (await alice.create(VIDEO, {"prompt": f"a long take ({uuid.uuid4().hex[:8]}) [sim:slow=60]", "duration": 2}))
        for _ in range(2)
    ]
    first, second = (r.json() for r in created)
    echo_task = (await alice.create("echo", {"message": "no callbacks here"})).json()

    async def running_on_ark() -> list[str] | None:
        tasks = [await alice.task(t["id"]) for t in (first, second)]
        ids = [t["provider_task_id"] for t in tasks if t["status"] == "running"]
        return ids if len(ids) == 2 else None

    provider_ids = await wait_for(running_on_ark, 60, "the videos to run on Ark", interval=0.2)
    async with httpx.AsyncClient(base_url=stack.simulator_url) as sim:
        ark = [(await sim.get(f"/_sim/ark/tasks/{p}")).json() for p in provider_ids]
    secrets = [a["callback_url"].partition("secret=")[2] for a in ark]
    assert all(secrets) and secrets[0] != secrets[1]

    # Ark's own "running" callback has been delivered and heard; from here on the count must not move.
    async def ark_called_back() -> bool:
        async with httpx.AsyncClient(base_url=stack.simulator_url) as sim:
            callbacks = (await sim.get(f"/_sim/ark/tasks/{provider_ids[0]}")).json()["callbacks"]
        return any(c["delivered"] for c in callbacks)

    await wait_for(ark_called_back, 30, "Ark's running callback")
    heard = await callbacks_heard(temporal, first["workflow_id"])
    body = ark[0]["task"]
    route = f"/api/integrations/{VIDEO}/tasks"
    async with httpx.AsyncClient(base_url=stack.main_url) as anonymous:
        answers = {
            "no secret": await anonymous.post(f"{route}/{first['id']}/callback", json=body),
            "empty secret": await anonymous.post(f"{route}/{first['id']}/callback?secret=", json=body),
            "wrong secret": await anonymous.post(f"{route}/{first['id']}/callback", params={"secret": "x" * 32}),
            "a prefix of the secret": await anonymous.post(
                f"{route}/{first['id']}/callback", params={"secret": secrets[0][:-1]}, json=body
            ),
            "another task's secret": await anonymous.post(
                f"{route}/{first['id']}/callback", params={"secret": secrets[1]}, json=body
            ),
            "the secret as a header": await anonymous.post(
                f"{route}/{first['id']}/callback", headers={"X-Callback-Secret": secrets[0]}, json=body
            ),
            "an API key instead": await anonymous.post(
                f"{route}/{first['id']}/callback", headers={"Authorization": f"Bearer {USERS['alice']}"}, json=body
            ),
            "an echo task": await anonymous.post(
                f"{route}/{echo_task['id']}/callback", params={"secret": secrets[0]}, json=body
            ),
            "no such task": await anonymous.post(
                f"{route}/{uuid.uuid4()}/callback", params={"secret": secrets[0]}, json=body
            ),
        }
        statuses = {what: (r.status_code, r.json()["code"]) for what, r in answers.items()}
        missing = (401, "unauthorized")
        wrong = (404, "not_found")
        assert statuses == {
            "no secret": missing,
            "empty secret": missing,
            "wrong secret": wrong,
            "a prefix of the secret": wrong,
            "another task's secret": wrong,
            "the secret as a header": missing,
            "an API key instead": missing,
            "an echo task": wrong,
            "no such task": wrong,
        }
        assert await callbacks_heard(temporal, first["workflow_id"]) == heard
        # The task's own secret is heard: the count above could have moved.
        accepted = await anonymous.post(f"{route}/{first['id']}/callback", params={"secret": secrets[0]}, json=body)
        assert (accepted.status_code, accepted.json()) == (200, {"accepted": True})
    assert await callbacks_heard(temporal, first["workflow_id"]) == heard + 1

    # Ark got the token; main's store and Temporal's history never had it.
    history = await temporal.get_workflow_handle(first["workflow_id"]).fetch_history()
    recorded = b"".join(event.SerializeToString() for event in history.events)
    assert first["id"].encode() in recorded
    assert secrets[0].encode() not in recorded and b"/callback" not in recorded
    with sqlite3.connect(stack.state_dir / "main.db") as db:
        row = db.execute("SELECT * FROM tasks WHERE id = ?", (first["id"],)).fetchone()
    assert row is not None and secrets[0] not in repr(row)
    for task in (first, second):
        assert (await alice.http.post(f"/api/tasks/{task['id']}/cancel")).status_code == 202

"""main's generic routes for the submit-poll pattern, through the minimal integration (``poll_app``): main's real
app served in this process, the workflow on a Temporal test server with the real activities, an in-process
provider. The callback needs the task's own token, which main derives and stores nowhere (neither the task store
nor the workflow's history holds it), and echoes the provider's URL challenge; refresh is the pattern's action."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from litestar import Litestar
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from services.main.app import create_app
from services.main.settings import MainSettings
from services.shared.discovery import Discovery, Integration
from services.shared.manifest import Manifest
from services.shared.outbound import Outbound
from services.shared.settings import StorageSettings
from services.shared.storage import ObjectStore
from services.shared.submit_poll import CALLBACK_SIGNAL, PollPolicy
from services.shared.tasks import workflow_id_for
from tests.fakes import MemoryStore, Reports
from tests.stack import serve, signals_heard, wait_for
from tests.temporal_env import serving

from . import poll_app
from .poll_app.activities import AppActivities
from .poll_app.provider import LINKS, Provider
from .poll_app.workflows import KitPollKeyedWorkflow, KitPollTightWorkflow, KitPollWorkflow

NAME = "kit-poll"
ALICE = {"Authorization": "Bearer alice-key"}
# Polls an hour apart: within a test only a refresh or a callback makes the workflow look.
SLOW = PollPolicy(initial_seconds=3600, backoff=1, max_seconds=3600, deadline_seconds=86400)


CALLBACK_KEY = "callback-key-of-this-test"


@dataclass
class Stack:
    main: httpx.AsyncClient
    temporal: Client
    provider: Provider
    # main's SQLite file.
    database: Path

    async def create(self) -> dict[str, Any]:
        response = await self.main.post(f"/api/integrations/{NAME}/tasks", json={"prompt": "a kite"}, headers=ALICE)
        assert response.status_code == 202, response.text
        task: dict[str, Any] = response.json()
        return task

    async def submitted(self, task_id: str) -> str:
        """The callback URL the provider got with the task's job."""

        async def callback_url() -> str | None:
            return next((u for u in self.provider.callback_urls.values() if u and f"/{task_id}/" in u), None)

        return await wait_for(callback_url, 30, "the submit")

    async def callbacks_heard(self, task_id: str) -> int:
        return await signals_heard(self.temporal, workflow_id_for(task_id), CALLBACK_SIGNAL)


class MainReports(Reports):
    """main's internal API for the activities: the reports are the fake's, a task's callback URL is the one main's
    own service gives the internal route (this test serves only main's public listener)."""

    app: Litestar | None = None

    async def callback_url(self, task_id: str) -> str | None:
        assert self.app is not None
        url: str | None = await self.app.state.tasks.callback_url(task_id)
        return url


class MainObjects(ObjectStore):
    """main's object store in these tests: it signs download URLs as the real one does (offline), and finds the
    objects where the test's activities put them (main checks that a result's objects exist)."""

    def __init__(self, settings: StorageSettings, memory: MemoryStore) -> None:
        super().__init__(settings)
        self._memory = memory

    async def exists(self, key: str) -> bool:
        return key in self._memory.objects


@pytest.fixture
async def stack(env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    queue = str(uuid.uuid4())
    settings = MainSettings.from_env(
        {
            "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
            "DEVELOPMENT_MODE": "true",
            "S3_ACCESS_KEY": "access",
            "S3_SECRET_KEY": "secret",
            "REPORT_TOKEN": "report-token",
            "NATS_MAIN_PASSWORD": "nats-password",
            "CALLBACK_KEY": CALLBACK_KEY,
            "API_KEYS": "alice-key:alice,bob-key:bob",
            "REALTIME_SECRET": "realtime-secret",
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/main.db",
            "MAIN_PUBLIC_URL": "http://main.test",
            # Nothing listens there: main's events stay in its outbox, which these tests do not look at.
            "NATS_URL": "nats://127.0.0.1:9",
        }
    )
    manifest = Manifest(name=NAME, task_queue=queue, description="the kit's submit-poll test integration")
    integration = Integration("poll_app", Path(poll_app.__file__).parent, manifest, poll_app.__name__)
    provider = Provider()
    reports = MainReports()
    outbound = Outbound(LINKS)
    activities = AppActivities(reports.kit(outbound=outbound), provider.client(), SLOW)
    worker = serving(
        env.client,
        queue,
        [KitPollWorkflow, KitPollKeyedWorkflow, KitPollTightWorkflow],
        [reports.report_task, activities.submit, activities.query, activities.cancel, activities.copy_result],
    )
    monkeypatch.setattr("services.main.app.ObjectStore", lambda storage: MainObjects(storage, reports.store))
    app = reports.app = create_app(settings, Discovery([integration]))
    async with worker, provider.serving(), serve(app) as url, httpx.AsyncClient(base_url=url) as main:
        yield Stack(main, env.client, provider, tmp_path / "main.db")
    await outbound.aclose()


def callback_path(url: str) -> tuple[str, str]:
    """The route and the secret of a callback URL main handed out."""
    parts = urlsplit(url)
    return parts.path, parts.query.removeprefix("secret=")


async def test_the_callback_needs_the_tasks_own_secret_and_only_wakes_the_workflow(stack: Stack) -> None:
    task = await stack.create()
    other = await stack.create()
    url = await stack.submitted(task["id"])
    path, secret = callback_path(url)
    assert url == f"http://main.test/api/integrations/{NAME}/tasks/{task['id']}/callback?secret={secret}"
    assert path.endswith(f"/tasks/{task['id']}/callback") and secret
    body = {"id": "job-x", "status": "done"}
    answers = {
        "no secret": await stack.main.post(path, json=body),
        "empty secret": await stack.main.post(f"{path}?secret=", json=body),
        "wrong secret": await stack.main.post(path, params={"secret": "x" * 32}, json=body),
        "a prefix of the secret": await stack.main.post(path, params={"secret": secret[:-1]}, json=body),
        "an API key instead": await stack.main.post(path, headers=ALICE, json=body),
        "another task": await stack.main.post(
            f"/api/integrations/{NAME}/tasks/{other['id']}/callback", params={"secret": secret}, json=body
        ),
        "no such task": await stack.main.post(
            f"/api/integrations/{NAME}/tasks/{uuid.uuid4()}/callback", params={"secret": secret}, json=body
        ),
    }
    statuses = {what: (r.status_code, r.json()["code"]) for what, r in answers.items()}
    missing, wrong = (401, "unauthorized"), (404, "not_found")
    assert statuses == {
        "no secret": missing,
        "empty secret": missing,
        "wrong secret": wrong,
        "a prefix of the secret": wrong,
        "an API key instead": missing,
        "another task": wrong,
        "no such task": wrong,
    }
    assert await stack.callbacks_heard(task["id"]) == 0
    # The body claims the job is done; the provider says it is working: the task stays running.
    accepted = await stack.main.post(path, params={"secret": secret}, json=body)
    assert (accepted.status_code, accepted.json()) == (200, {"accepted": True})

    async def heard() -> bool:
        return await stack.callbacks_heard(task["id"]) == 1

    await wait_for(heard, 30, "the workflow to hear the callback")
    assert (await stack.main.get(f"/api/tasks/{task['id']}", headers=ALICE)).json()["status"] == "running"


async def test_the_callback_token_is_stored_nowhere(stack: Stack) -> None:
    task = await stack.create()
    _, token = callback_path(await stack.submitted(task["id"]))
    accepted = await stack.main.post(
        f"/api/integrations/{NAME}/tasks/{task['id']}/callback", params={"secret": token}, json={}
    )
    assert accepted.status_code == 200
    # The history as Temporal stores it: payloads are the raw bytes of their JSON in it.
    history = await stack.temporal.get_workflow_handle(workflow_id_for(task["id"])).fetch_history()
    recorded = b"".join(event.SerializeToString() for event in history.events)
    assert task["id"].encode() in recorded and b"a kite" in recorded
    for secret in (token, CALLBACK_KEY):
        assert secret.encode() not in recorded
    assert b"/callback" not in recorded
    with sqlite3.connect(stack.database) as db:
        rows = db.execute("SELECT * FROM tasks").fetchall()
    stored = repr(rows)
    assert task["id"] in stored
    assert token not in stored and CALLBACK_KEY not in stored


async def test_the_callback_echoes_the_providers_challenge_without_waking_the_workflow(stack: Stack) -> None:
    task = await stack.create()
    path, secret = callback_path(await stack.submitted(task["id"]))
    answer = await stack.main.post(path, params={"secret": secret}, json={"challenge": "c-123"})
    assert (answer.status_code, answer.json()) == (200, {"challenge": "c-123"})
    assert await stack.callbacks_heard(task["id"]) == 0
    # The challenge is checked behind the secret like everything else.
    assert (await stack.main.post(path, params={"secret": "x"}, json={"challenge": "c-123"})).status_code == 404


async def test_refresh_is_the_patterns_action_and_a_finished_task_is_answered_as_it_is(stack: Stack) -> None:
    task = await stack.create()
    route = f"/api/integrations/{NAME}/tasks/{task['id']}/refresh"
    await stack.submitted(task["id"])
    working = await stack.main.post(route, headers=ALICE)
    assert working.status_code == 200, working.text
    assert working.json()["status"] == "running"
    assert (await stack.main.post(route, headers={"Authorization": "Bearer bob-key"})).status_code == 404
    stack.provider.finish()
    done = await stack.main.post(route, headers=ALICE)
    assert done.json()["status"] == "succeeded"
    assert done.json()["output"]["objects"]["result"]["key"] == f"tasks/{task['id']}/result.txt"
    again = await stack.main.post(route, headers=ALICE)
    assert again.json()["version"] == done.json()["version"]
    path, secret = callback_path(stack.provider.callback_urls[done.json()["provider_task_id"]] or "")
    late = await stack.main.post(path, params={"secret": secret}, json={})
    assert (late.status_code, late.json()) == (200, {"accepted": False})


async def test_the_routes_are_in_the_openapi_schema(stack: Stack) -> None:
    paths = (await stack.main.get("/docs/openapi.json")).json()["paths"]
    refresh = paths["/api/integrations/kit-poll/tasks/{task_id}/refresh"]["post"]
    callback = paths["/api/integrations/kit-poll/tasks/{task_id}/callback"]["post"]
    assert (refresh["operationId"], callback["operationId"]) == ("refresh_kit_poll_task", "kit_poll_callback")

"""A new task's events go out in order even when its first report overtakes main's create: the activity that
starts the provider work may report `running` before start_workflow has returned to main. The outbox holds them
in commit order, which is the order the relay publishes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from integrations.echo.schemas import EchoRequest
from services.main.integrations_router import load_api
from services.main.service import TaskService
from services.main.settings import MainSettings
from services.main.store import TaskStore
from services.shared.discovery import discover
from services.shared.storage import ObjectStore
from services.shared.tasks import TaskReport
from tests.temporal_env import time_skipping


class IdleRelay:
    """The relay's interface main uses; nothing is published, so the outbox keeps every event for the test."""

    def wake(self) -> None:
        pass


class SlowAnswer:
    """A real Temporal client whose start_workflow answer reaches main late (a slow network, a busy main)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.started = asyncio.Event()
        self.answer = asyncio.Event()

    async def start_workflow(self, *args: Any, **kwargs: Any) -> Any:
        handle = await self._client.start_workflow(*args, **kwargs)
        self.started.set()
        await self.answer.wait()
        return handle


async def test_a_report_that_overtakes_the_create_is_published_after_the_queued_event(tmp_path: Path) -> None:
    env: WorkflowEnvironment = await time_skipping()
    store = TaskStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'main.db'}")
    await store.migrate()
    try:
        settings = MainSettings.from_env(
            {
                "DEVELOPMENT_MODE": "true",
                "S3_ACCESS_KEY": "access",
                "S3_SECRET_KEY": "secret",
                "REPORT_TOKEN": "t",
                "NATS_MAIN_PASSWORD": "n",
                "CALLBACK_KEY": "c",
                "API_KEYS": "k:alice",
                "REALTIME_SECRET": "r",
            }
        )
        temporal = SlowAnswer(env.client)
        service = TaskService(settings, store, temporal, IdleRelay(), ObjectStore(settings.platform.storage))  # type: ignore[arg-type]
        echo = discover().get("echo")
        created = service.create("alice", echo, load_api(echo), EchoRequest("hi"), None, key_id="alice-key")
        create = asyncio.create_task(created)
        await asyncio.wait_for(temporal.started.wait(), 30)
        (records, _) = await store.list(owner="alice", integration=None, status=None, limit=1, offset=0)
        outcome, _ = await service.apply(records[0].id, TaskReport(status="running", progress=0.0))
        assert outcome.applied
        temporal.answer.set()
        await create
        async with store.relay_batch(10) as batch:
            events = [msgspec.json.decode(row.payload) for row in batch.rows]
    finally:
        await store.close()
        await env.shutdown()
    assert [(e["status"], e["version"]) for e in events] == [("queued", 0), ("running", 1)]

"""Retention on a stack of its own, whose main keeps finished tasks for seconds: one run of the ``platform-retention``
schedule, triggered as an operator would in the Temporal UI, purges the tasks that finished longer ago and their
objects, and nothing else."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from minio import Minio
from temporalio.client import (
    Client,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleDescription,
    ScheduleHandle,
)
from temporalio.service import RPCError, RPCStatusCode

from deploy.local import LocalStack
from services.main.platform_worker import PLATFORM_TASK_QUEUE
from services.main.retention import LIFECYCLE_RULE_ID
from services.main.retention_workflow import SCHEDULE_ID, WORKFLOW, Purged
from services.shared.settings import Env, StorageSettings, TemporalSettings
from services.shared.storage import ObjectStore
from services.shared.tasks import objects_prefix
from services.shared.temporal import connect
from tests.stack import USERS, Api, Launcher, MainProcess, running_stack, wait_for

pytestmark = pytest.mark.integration

RETENTION = timedelta(seconds=20)
# So long that no run comes by itself during the test: the one run is the test's trigger.
INTERVAL = timedelta(days=30)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """This module's stack, in place of the session's (so the ``alice`` fixture talks to it)."""
    environ = {
        **os.environ,
        "API_KEYS": ",".join(f"{key}:{user}" for user, key in USERS.items()),
        "MAIN_RETENTION_DAYS": repr(RETENTION / timedelta(days=1)),
        "MAIN_RETENTION_INTERVAL_SECONDS": str(int(INTERVAL.total_seconds())),
    }
    with running_stack(tmp_path_factory, "retention", "sqlite", environ) as local:
        yield local


@pytest.fixture(scope="module")
async def worker(stack: LocalStack) -> AsyncIterator[Launcher]:
    launcher = Launcher(stack.service_env(), ["echo"], stack.state_dir / "echo-worker.log")
    await launcher.wait_serving()
    yield launcher
    launcher.kill()


@pytest.fixture
async def temporal(stack: LocalStack) -> Client:
    return await connect(TemporalSettings(address=stack.temporal_address))


async def created(schedule: ScheduleHandle) -> ScheduleDescription:
    """The schedule once main has created it: main does so in the background after it is ready."""

    async def described() -> ScheduleDescription | None:
        try:
            return await schedule.describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise

    return await wait_for(described, 60, f"main to create the schedule {schedule.id}")


@pytest.fixture
def objects(stack: LocalStack) -> ObjectStore:
    return ObjectStore(StorageSettings.from_env(Env(stack.service_env())))


def bucket_lifecycle(objects: ObjectStore) -> list[tuple[str | None, str | None, int | None]] | None:
    """The bucket's lifecycle rules as (id, prefix, expiration days), None when it has none."""
    settings = objects.settings
    client = Minio(settings.endpoint, settings.access_key, settings.secret_key, secure=settings.secure)
    config = client.get_bucket_lifecycle(settings.bucket)
    if config is None:
        return None
    return [
        (r.rule_id, r.rule_filter.prefix if r.rule_filter else None, r.expiration.days if r.expiration else None)
        for r in config.rules
    ]


async def echo(api: Api, message: str, delay_seconds: int = 0) -> str:
    response = await api.create("echo", {"message": message, "delay_seconds": delay_seconds})
    assert response.status_code == 202, response.text
    task_id: str = response.json()["id"]
    return task_id


async def test_one_run_purges_what_finished_before_the_retention_only(
    worker: Launcher, alice: Api, temporal: Client, objects: ObjectStore
) -> None:
    schedule = temporal.get_schedule_handle(SCHEDULE_ID)
    described = await created(schedule)
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert (action.workflow, action.task_queue) == (WORKFLOW, PLATFORM_TASK_QUEUE)
    assert [i.every for i in described.schedule.spec.intervals] == [INTERVAL]
    # The bucket's rule: task objects expire a day after the retention, in S3's whole days.
    lifecycle = await wait_for(lambda: asyncio.to_thread(bucket_lifecycle, objects), 30, "the bucket's lifecycle rule")
    assert lifecycle == [(LIFECYCLE_RULE_ID, "tasks/", 2)], lifecycle

    old = await echo(alice, "old")
    finished = datetime.fromisoformat((await alice.wait_status(old, {"succeeded"}))["updated_at"])

    async def past_retention() -> bool:
        return datetime.now(UTC) > finished + RETENTION

    await wait_for(past_retention, 60, "the old task to pass its retention", interval=0.5)
    recent = await echo(alice, "recent")
    recent_task = await alice.wait_status(recent, {"succeeded"})
    running = await echo(alice, "running", delay_seconds=600)
    await alice.wait_status(running, {"running"})
    # A URL of the recent task's object expires when retention purges it, well before S3_URL_EXPIRY_SECONDS.
    url_expires_at = datetime.fromisoformat(recent_task["output"]["objects"]["text"]["url_expires_at"])
    assert url_expires_at <= datetime.fromisoformat(recent_task["updated_at"]) + RETENTION + timedelta(seconds=1)

    await schedule.trigger()

    async def triggered_run() -> str | None:
        actions = (await schedule.describe()).info.recent_actions
        if not actions:
            return None
        started = actions[-1].action
        assert isinstance(started, ScheduleActionExecutionStartWorkflow)
        return started.workflow_id

    workflow_id = await wait_for(triggered_run, 30, "the triggered run to start")
    assert not workflow_id.startswith("task-")
    purged = await temporal.get_workflow_handle(workflow_id, result_type=Purged).result()
    assert (purged.tasks, purged.objects) == (1, 1), purged

    assert (await alice.http.get(f"/api/tasks/{old}")).status_code == 404
    assert await objects.list_keys(objects_prefix(old)) == []
    assert (await alice.task(recent))["status"] == "succeeded"
    assert await objects.list_keys(objects_prefix(recent)) == [f"{objects_prefix(recent)}echo.txt"]
    assert (await alice.task(running))["status"] == "running"
    listed = (await alice.http.get("/api/tasks", params={"limit": 100})).json()
    assert {t["id"] for t in listed["items"]} == {recent, running}


async def test_a_main_with_other_settings_updates_the_schedule(
    stack: LocalStack, temporal: Client, tmp_path_factory: pytest.TempPathFactory
) -> None:
    schedule = temporal.get_schedule_handle(SCHEDULE_ID)
    await created(schedule)
    await schedule.pause(note="paused by the test")
    other = MainProcess(
        stack.service_env(),
        tmp_path_factory.mktemp("retention-main") / "main.log",
        MAIN_RETENTION_INTERVAL_SECONDS=str(int(INTERVAL.total_seconds()) // 2),
    )
    try:
        await other.wait_ready()

        async def updated() -> bool:
            intervals = (await schedule.describe()).schedule.spec.intervals
            return [i.every for i in intervals] == [INTERVAL / 2]

        await wait_for(updated, 60, "the second main to update the schedule")
        # The operator's pause stays.
        assert (await schedule.describe()).schedule.state.paused
    finally:
        other.kill()
        await schedule.unpause()

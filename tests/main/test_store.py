"""The task store on both databases main supports: SQLite (the default) and a real PostgreSQL server. Each test
gets an empty database, migrated as main migrates it at start-up."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from deploy.local import LocalStack
from services.main import migrate
from services.main.migrate import MIGRATIONS
from services.main.store import (
    OutboxEvent,
    StoreConflictError,
    TaskDeletedError,
    TaskRecord,
    TaskStore,
    metadata,
    tasks_table,
)
from services.shared.tasks import DEFAULT_PRIORITY, StoredObject, TaskError, TaskReport, TaskResult
from tests.stack import wait_for

pytestmark = pytest.mark.every_store

RESULT = TaskResult(objects={"text": StoredObject("tasks/x/echo.txt", "text/plain", 2)})
BACKENDS = ("sqlite", "postgres")


def event(record: TaskRecord, changes: dict[str, Any]) -> OutboxEvent:
    """What the service would write: here, the version and the changed fields."""
    body = {"task_id": record.id, "version": record.version, "changes": sorted(changes)}
    return OutboxEvent(id=str(uuid.uuid4()), payload=msgspec.json.encode(body))


@contextlib.asynccontextmanager
async def empty_postgres_database(server: LocalStack) -> AsyncIterator[str]:
    url = make_url(server.service_env()["DATABASE_URL"]).set(password=server.secrets.postgres_password)
    name = f"test_{uuid.uuid4().hex}"
    admin = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, database=url.database
    )
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield url.set(database=name).render_as_string(hide_password=False)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty database on the backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'tasks.db'}"
        return
    async with empty_postgres_database(request.getfixturevalue("postgres_server")) as url:
        yield url


@pytest.fixture
async def task_store(database_url: str) -> AsyncIterator[TaskStore]:
    store = TaskStore.from_url(database_url)
    await store.migrate()
    yield store
    await store.close()


async def create(
    store: TaskStore,
    key: str | None = None,
    digest: str = "d1",
    owner: str = "alice",
    priority: int = DEFAULT_PRIORITY,
    message: str = "hi",
) -> tuple[TaskRecord, bool]:
    return await store.create(
        integration="echo",
        owner=owner,
        input={"message": message},
        idempotency_key=key,
        request_digest=digest,
        priority=priority,
        event=event,
    )


async def new_task(
    store: TaskStore, key: str | None = None, digest: str = "d1", owner: str = "alice", priority: int = DEFAULT_PRIORITY
) -> str:
    record, created = await create(store, key, digest, owner, priority)
    assert created
    return record.id


async def unsent(store: TaskStore) -> list[dict[str, Any]]:
    async with store.relay_batch(1000) as batch:
        return [{"owner": row.owner, **msgspec.json.decode(row.payload)} for row in batch.rows]


# -- task state ---------------------------------------------------------------------------------------------


async def test_the_timeline_follows_the_status_and_attempts_only_go_up(task_store: TaskStore) -> None:
    record, _ = await task_store.create(
        integration="echo",
        owner="alice",
        input={},
        idempotency_key=None,
        request_digest="d",
        priority=DEFAULT_PRIORITY,
        event=event,
        deadline_seconds=30,
    )
    assert record.deadline_at is not None and (record.deadline_at - record.created_at).total_seconds() == 30
    assert (record.started_at, record.finished_at, record.provider_attempts) == (None, None, 0)
    _, first, _ = await task_store.apply_report(record.id, TaskReport(status="running", provider_attempts=1), event)
    _, second, changes = await task_store.apply_report(
        record.id, TaskReport(status="running", provider_attempts=2), event
    )
    assert changes == {"provider_attempts": 2}
    # A late report of the first attempt neither takes the count back nor moves the start.
    outcome, _, _ = await task_store.apply_report(record.id, TaskReport(status="running", provider_attempts=1), event)
    assert not outcome.applied
    _, done, changes = await task_store.apply_report(record.id, TaskReport(status="succeeded", result=RESULT), event)
    assert "started_at" not in changes and changes["finished_at"] == done.finished_at
    stored = await task_store.get(record.id)
    assert stored == done
    assert stored.started_at == first.started_at == second.started_at
    assert stored.deadline_at == record.deadline_at
    assert stored.created_at <= stored.started_at <= stored.finished_at  # type: ignore[operator]
    assert stored.provider_attempts == 2


async def test_a_task_that_never_ran_has_no_start(task_store: TaskStore) -> None:
    task_id = await new_task(task_store)
    _, record, _ = await task_store.apply_report(
        task_id, TaskReport(status="failed", error=TaskError("deadline_exceeded", "late")), event
    )
    assert record.started_at is None and record.finished_at is not None


async def test_lifecycle_and_terminal_states_never_change(task_store: TaskStore) -> None:
    task_id = await new_task(task_store)
    outcome, record, changes = await task_store.apply_report(task_id, TaskReport(status="running", progress=0.1), event)
    assert outcome.applied
    assert changes == {"status": "running", "progress": 0.1, "started_at": record.started_at}
    outcome, record, changes = await task_store.apply_report(
        task_id, TaskReport(status="succeeded", result=RESULT), event
    )
    assert outcome.applied
    assert record.result == RESULT
    for late in (
        TaskReport(status="running"),
        TaskReport(status="failed", error=TaskError("x", "y")),
        TaskReport(status="succeeded", result=TaskResult()),
    ):
        outcome, record, changes = await task_store.apply_report(task_id, late, event)
        assert not outcome.applied
        assert outcome.reason == "task is already succeeded"
        assert changes == {}
    assert record.status == "succeeded"
    assert record.result == RESULT
    stored = await task_store.get(task_id)
    assert stored == record


async def test_duplicate_report_is_ignored(task_store: TaskStore) -> None:
    task_id = await new_task(task_store)
    first, _, _ = await task_store.apply_report(task_id, TaskReport(status="running", provider_task_id="p1"), event)
    again, _, changes = await task_store.apply_report(
        task_id, TaskReport(status="running", provider_task_id="p1"), event
    )
    assert first.applied
    assert not again.applied
    assert again.reason == "nothing changed"
    assert changes == {}


async def test_concurrent_terminal_reports_apply_exactly_once_with_one_event(task_store: TaskStore) -> None:
    task_id = await new_task(task_store)
    reports = [TaskReport(status="succeeded", result=RESULT)] * 10 + [
        TaskReport(status="failed", error=TaskError("boom", "x"))
    ] * 10
    outcomes = await asyncio.gather(*(task_store.apply_report(task_id, r, event) for r in reports))
    applied = [o for o, _, _ in outcomes if o.applied]
    assert len(applied) == 1
    final = await task_store.get(task_id)
    assert final is not None
    assert final.status == applied[0].status
    assert final.version == 1
    assert [e["version"] for e in await unsent(task_store)] == [0, 1]


async def test_idempotency_key_returns_the_same_task_and_rejects_a_different_request(task_store: TaskStore) -> None:
    task_id = await new_task(task_store, key="k-1")
    again, created = await create(task_store, "k-1")
    assert not created
    assert again.id == task_id
    other_user, created = await create(task_store, "k-1", owner="bob")
    assert created
    assert other_user.id != task_id
    with pytest.raises(StoreConflictError, match="already used with a different request"):
        await create(task_store, "k-1", "d2", message="x")
    # One event per task created; the retried and the refused creates wrote none.
    assert sorted(e["owner"] for e in await unsent(task_store)) == ["alice", "bob"]


async def test_a_task_keeps_the_priority_it_was_created_with(task_store: TaskStore) -> None:
    urgent = await new_task(task_store, key="k-urgent", priority=1)
    await new_task(task_store, priority=5)
    record = await task_store.get(urgent)
    assert record is not None and record.priority == 1
    retried, created = await create(task_store, "k-urgent", priority=1)
    assert not created and retried.priority == 1
    # What the reconciler reads, and what a report leaves.
    queued = await task_store.queued_before(datetime.now(UTC), 10)
    assert sorted(r.priority for r in queued) == [1, 5]
    _, running, _ = await task_store.apply_report(urgent, TaskReport(status="running"), event)
    assert running.priority == 1
    stored = await task_store.get(urgent)
    assert stored is not None and stored.priority == 1


async def test_unknown_task_report(task_store: TaskStore) -> None:
    with pytest.raises(KeyError):
        await task_store.apply_report("missing", TaskReport(status="running"), event)


async def test_list_filters_and_pages(task_store: TaskStore) -> None:
    ids = [await new_task(task_store) for _ in range(5)]
    await task_store.apply_report(ids[0], TaskReport(status="running"), event)
    page, total = await task_store.list(owner="alice", integration=None, status=None, limit=2, offset=0)
    assert total == 5
    assert len(page) == 2
    running, total = await task_store.list(owner="alice", integration="echo", status="running", limit=10, offset=0)
    assert [r.id for r in running] == [ids[0]]
    assert total == 1
    nobody, total = await task_store.list(owner="bob", integration=None, status=None, limit=10, offset=0)
    assert nobody == []
    assert total == 0


# -- the outbox -----------------------------------------------------------------------------------------------


async def test_every_applied_change_writes_its_event_in_commit_order(task_store: TaskStore) -> None:
    first = await new_task(task_store)
    second = await new_task(task_store, owner="bob")
    await task_store.apply_report(first, TaskReport(status="running", progress=0.5), event)
    await task_store.apply_report(first, TaskReport(status="running", progress=0.5), event)  # nothing changes
    await task_store.apply_report(second, TaskReport(status="cancelled"), event)
    await task_store.apply_report(first, TaskReport(status="succeeded", result=RESULT), event)
    assert [(e["task_id"], e["version"], e["changes"]) for e in await unsent(task_store)] == [
        (first, 0, ["status"]),
        (second, 0, ["status"]),
        (first, 1, ["progress", "started_at", "status"]),
        (second, 1, ["finished_at", "status"]),
        (first, 2, ["finished_at", "result", "status"]),
    ]


async def test_concurrent_reports_on_one_task_leave_its_events_in_version_order(task_store: TaskStore) -> None:
    task_id = await new_task(task_store)
    progress = [TaskReport(status="running", progress=p / 100) for p in range(1, 41)]
    await asyncio.gather(*(task_store.apply_report(task_id, r, event) for r in progress))
    versions = [e["version"] for e in await unsent(task_store)]
    assert versions == sorted(versions)
    assert versions == list(range(len(versions)))


async def test_sent_events_are_gone_and_numbers_are_never_reused(task_store: TaskStore) -> None:
    for _ in range(3):
        await new_task(task_store)
    async with task_store.relay_batch(2) as batch:
        assert len(batch.rows) == 2
        first = batch.rows[0].seq
        await batch.mark_sent([first])
    # SQLite deletes sent events in bulk, a moment later; PostgreSQL in the batch's transaction.
    await task_store.flush_sent()
    assert await task_store.unsent_events() == 2
    async with task_store.relay_batch(10) as batch:
        assert len(batch.rows) == 2
        last = batch.rows[-1].seq
        await batch.mark_sent([row.seq for row in batch.rows])
    await task_store.flush_sent()
    assert await task_store.unsent_events() == 0
    # An empty outbox still numbers the next event after every earlier one.
    await new_task(task_store)
    async with task_store.relay_batch(10) as batch:
        assert [row.seq for row in batch.rows] == [last + 1]
    assert first < last


async def test_deleting_a_task_writes_a_deleted_event(task_store: TaskStore) -> None:
    task_id = await new_task(task_store)

    def deleted(record: TaskRecord, changes: dict[str, Any]) -> OutboxEvent:
        return OutboxEvent(id=str(uuid.uuid4()), payload=msgspec.json.encode({"deleted": record.id}))

    await task_store.delete(task_id, deleted)
    assert await task_store.get(task_id) is None
    assert (await unsent(task_store))[-1] == {"owner": "alice", "deleted": task_id}
    # Deleting what is gone writes nothing.
    await task_store.delete(task_id, deleted)
    assert len(await unsent(task_store)) == 2


async def test_relays_of_several_processes_take_turns_on_postgresql(postgres_server: LocalStack) -> None:
    """On SQLite relays may overlap instead: JetStream drops the duplicates (tests/main/test_relay.py)."""
    async with empty_postgres_database(postgres_server) as url:
        await relays_take_turns(url)


async def relays_take_turns(database_url: str) -> None:
    stores = [TaskStore.from_url(database_url) for _ in range(2)]
    try:
        await stores[0].migrate()
        await new_task(stores[0])
        await new_task(stores[0])
        second_saw: list[int] = []
        async with stores[0].relay_batch(10) as first:

            async def other_relay() -> None:
                async with stores[1].relay_batch(10) as second:
                    second_saw.extend(row.seq for row in second.rows)

            other = asyncio.create_task(other_relay())
            await asyncio.sleep(0.3)
            # The second relay waits for the first one's turn to end...
            assert not other.done()
            await first.mark_sent([first.rows[0].seq])
        await asyncio.wait_for(other, 10)
        # ...and then reads only what the first left unsent.
        assert second_saw == [first.rows[1].seq]
    finally:
        for store in stores:
            await store.close()


# -- reconciling ----------------------------------------------------------------------------------------------


async def test_one_holder_at_a_time_takes_the_lease_until_it_expires_or_is_released(database_url: str) -> None:
    first, second = TaskStore.from_url(database_url), TaskStore.from_url(database_url)
    try:
        await first.migrate()
        assert await first.take_lease("reconciler", "a", 30)
        assert not await second.take_lease("reconciler", "b", 30)
        # The holder renews it; the other still cannot take it.
        assert await first.take_lease("reconciler", "a", 30)
        assert not await second.take_lease("reconciler", "b", 30)
        await first.release_lease("reconciler", "a")
        assert await second.take_lease("reconciler", "b", 0.2)
        assert not await first.take_lease("reconciler", "a", 30)

        async def expired() -> bool:
            return await first.take_lease("reconciler", "a", 30)

        await wait_for(expired, 10, "b's short lease to expire")
        # Releasing a lease one does not hold changes nothing.
        await second.release_lease("reconciler", "b")
        assert not await second.take_lease("reconciler", "b", 30)
    finally:
        await first.close()
        await second.close()


async def test_queued_tasks_are_found_by_age_and_tasks_by_id(task_store: TaskStore) -> None:
    older, newer = await new_task(task_store), await new_task(task_store)
    running = await new_task(task_store)
    await task_store.apply_report(running, TaskReport(status="running"), event)
    after = datetime.now(UTC)
    found = await task_store.queued_before(after, 10)
    assert [r.id for r in found] == [older, newer]
    assert [r.id for r in await task_store.queued_before(after, 1)] == [older]
    assert await task_store.queued_before(found[0].created_at, 10) == []
    assert await task_store.existing([older, running, "no-such-task"]) == {older, running}
    assert await task_store.existing([]) == set()


async def test_a_tombstone_reads_as_absent_and_takes_no_report(task_store: TaskStore) -> None:
    running = await new_task(task_store, key="k1")
    await task_store.apply_report(running, TaskReport(status="running"), event)
    assert await task_store.active_tasks("alice") == 1
    assert await task_store.tombstone(running, event)
    assert await task_store.get(running) is None
    assert await task_store.active_tasks("alice") == 0
    assert (await task_store.list(owner="alice", integration=None, status=None, limit=10, offset=0)) == ([], 0)
    # Its last event is the tombstone's; a report for it raises, and writes none.
    events = len(await unsent(task_store))
    with pytest.raises(TaskDeletedError) as deleted:
        await task_store.apply_report(running, TaskReport(status="succeeded", result=RESULT), event)
    assert (deleted.value.record.status, deleted.value.record.input, deleted.value.record.result) == (
        "cancelled",
        {},
        None,
    )
    assert len(await unsent(task_store)) == events
    assert not await task_store.tombstone(running, event)
    # Its idempotency key names the deleted task still, whatever the request.
    for digest in ("d1", "d2"):
        with pytest.raises(TaskDeletedError):
            await create(task_store, key="k1", digest=digest)
    # Its workflow is let end its cancellation: the reconciler finds the task.
    assert await task_store.existing([running]) == {running}


async def test_the_purge_takes_finished_tasks_and_tombstones_older_than_the_cutoff(task_store: TaskStore) -> None:
    old_done, old_deleted, running, recent = [await new_task(task_store) for _ in range(4)]
    await task_store.apply_report(old_done, TaskReport(status="succeeded", result=RESULT), event)
    assert await task_store.tombstone(old_deleted, event)
    await task_store.apply_report(running, TaskReport(status="running"), event)
    cutoff = datetime.now(UTC)
    await task_store.apply_report(recent, TaskReport(status="failed"), event)
    found = await task_store.finished_before(cutoff, 10)
    assert found == [old_done, old_deleted]
    assert await task_store.finished_before(cutoff, 1) == [old_done]
    assert await task_store.purge([*found, recent, running], cutoff) == 2
    assert await task_store.existing([old_done, old_deleted, running, recent]) == {running, recent}
    assert {e["task_id"] for e in await unsent(task_store)} == {running, recent}
    # Unsent events older than the cutoff, in bounded batches.
    assert await task_store.purge_events_before(datetime.now(UTC), 3) == 3
    assert await task_store.purge_events_before(datetime.now(UTC), 100) == 1
    assert await unsent(task_store) == []


# -- migrations -----------------------------------------------------------------------------------------------


def schema_differences(connection: sa.Connection) -> list[Any]:
    return list(compare_metadata(MigrationContext.configure(connection), metadata))


async def test_the_migrations_build_exactly_the_schema_the_code_uses(task_store: TaskStore) -> None:
    async with task_store.engine.connect() as conn:
        assert await conn.run_sync(schema_differences) == []


async def test_migrating_again_changes_nothing(task_store: TaskStore) -> None:
    task_id = await new_task(task_store)
    await task_store.migrate()
    assert (await task_store.get(task_id)) is not None
    async with task_store.engine.connect() as conn:
        version = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar_one()
    assert version == ScriptDirectory(str(MIGRATIONS)).get_current_head()


def old_row(task_id: str, status: str, version: int) -> dict[str, Any]:
    """The columns of a task row that every schema has had."""
    created = datetime.now(UTC)
    return {
        "id": task_id,
        "integration": "echo",
        "owner": "alice",
        "status": status,
        "input": b"{}",
        "version": version,
        "created_at": created,
        "updated_at": created,
    }


async def test_a_store_from_before_migrations_keeps_its_tasks(database_url: str) -> None:
    """A store created by the code before migrations existed (the tasks table alone, with the callback secret it had
    then) is adopted, not rebuilt."""
    store = TaskStore.from_url(database_url)
    old_table = tasks_table.to_metadata(sa.MetaData())
    old_table.append_column(sa.Column("callback_secret", sa.String(64), nullable=True))
    row = {**old_row("old-task", "succeeded", 2), "callback_secret": "stored-in-the-old-days"}
    try:
        async with store.engine.begin() as conn:
            await conn.run_sync(lambda sync: old_table.create(sync))
            # An index and a column of later migrations, which that code did not create.
            await conn.execute(sa.text("DROP INDEX ix_tasks_queued"))
            await conn.execute(sa.text("DROP INDEX ix_tasks_finished"))
            for column in (
                "priority",
                "webhook_url",
                "webhook_events",
                "deadline_at",
                "started_at",
                "finished_at",
                "provider_attempts",
                "deleted_at",
            ):
                await conn.execute(sa.text(f"ALTER TABLE tasks DROP COLUMN {column}"))
            await conn.execute(old_table.insert(), row)
        await store.migrate()
        old = await store.get("old-task")
        assert old is not None
        assert (old.status, old.version, old.priority) == ("succeeded", 2, DEFAULT_PRIORITY)
        async with store.engine.connect() as conn:
            assert await conn.run_sync(schema_differences) == []
    finally:
        await store.close()


async def test_a_task_stored_before_priorities_were_kept_has_the_default_one(database_url: str) -> None:
    """A queued task of a store at 0005_leases (no priority column) is adopted by 0006_task_priority: its priority is
    NULL, read as the default, and a new task beside it keeps its own."""
    store = TaskStore.from_url(database_url)
    before = sa.table("tasks", *(sa.column(c.name, c.type) for c in tasks_table.columns if c.name != "priority"))
    row = old_row("queued-before-priorities", "queued", 0)
    try:
        async with store.engine.begin() as conn:
            await conn.run_sync(migrate.upgrade, "0005_leases")
            await conn.execute(before.insert(), row)
        await store.migrate()
        async with store.engine.connect() as conn:
            stored = await conn.execute(sa.select(tasks_table.c.priority).where(tasks_table.c.id == row["id"]))
            assert stored.scalar_one() is None
            assert await conn.run_sync(schema_differences) == []
        [old] = await store.queued_before(datetime.now(UTC), 10)
        assert (old.id, old.status, old.priority) == (row["id"], "queued", DEFAULT_PRIORITY)
        urgent = await new_task(store, priority=1)
        record = await store.get(urgent)
        assert record is not None and record.priority == 1
    finally:
        await store.close()


async def test_processes_starting_at_once_migrate_once(database_url: str) -> None:
    stores = [TaskStore.from_url(database_url) for _ in range(4)]
    try:
        await asyncio.gather(*(store.migrate() for store in stores))
        await new_task(stores[0])
        async with stores[3].engine.connect() as conn:
            assert await conn.run_sync(schema_differences) == []
    finally:
        for store in stores:
            await store.close()


# -- webhooks -----------------------------------------------------------------------------------------------


async def test_a_change_writes_the_deliveries_its_task_asked_for(task_store: TaskStore) -> None:
    """The deliveries commit with the change: `started` on running, `completed` on the end, nothing for an event the
    task did not ask for; the task reads back with them, and each is started and ended once."""
    record, _ = await task_store.create(
        integration="echo",
        owner="alice",
        input={"message": "hook"},
        idempotency_key=None,
        request_digest="d",
        priority=DEFAULT_PRIORITY,
        event=event,
        webhook_url="https://hooks.example/in",
        webhook_events=("started", "completed"),
    )
    plain = await new_task(task_store)
    await task_store.apply_report(plain, TaskReport(status="running"), event)
    await task_store.apply_report(record.id, TaskReport(status="running"), event)
    await task_store.apply_report(record.id, TaskReport(status="running", progress=0.5), event)
    _, done, _ = await task_store.apply_report(record.id, TaskReport(status="succeeded", progress=1.0), event)
    assert [(d.event, d.status, d.attempts) for d in done.webhooks] == [
        ("started", "pending", 0),
        ("completed", "pending", 0),
    ]
    read = await task_store.get(record.id)
    assert read is not None and read.webhooks == done.webhooks
    assert (read.webhook_url, read.webhook_events) == ("https://hooks.example/in", ("started", "completed"))
    untouched = await task_store.get(plain)
    assert untouched is not None and untouched.webhooks == ()

    unstarted = await task_store.unstarted_deliveries(10)
    assert list(unstarted) == [d.id for d in done.webhooks]
    await task_store.mark_deliveries_started(unstarted)
    assert await task_store.unstarted_deliveries(10) == ()

    started, completed = done.webhooks
    await task_store.record_attempt(started.id, "pending", "HTTP 500")
    await task_store.record_attempt(started.id, "delivered", None, datetime.now(UTC))
    await task_store.end_delivery(started.id, "failed", None)
    await task_store.end_delivery(completed.id, "dropped", "the task no longer exists")
    after = await task_store.delivery(started.id)
    assert after is not None and (after.status, after.attempts, after.last_error) == ("delivered", 2, None)
    assert after.delivered_at is not None
    ended = await task_store.delivery(completed.id)
    assert ended is not None and (ended.status, ended.attempts) == ("dropped", 0)

    # Retention takes the task's deliveries with it.
    assert await task_store.purge([record.id], datetime.now(UTC)) == 1
    assert await task_store.delivery(started.id) is None and await task_store.delivery(completed.id) is None


async def test_a_rotated_secret_signs_beside_the_new_one_for_the_overlap(task_store: TaskStore) -> None:
    first = await task_store.signing_secrets("alice", "whsec_first")
    assert (await task_store.signing_secrets("alice", "whsec_other")).secret == first.secret == "whsec_first"
    rotated = await task_store.rotate_signing_secret("alice", "whsec_second", timedelta(hours=1))
    now = datetime.now(UTC)
    assert rotated.signing(now) == ["whsec_second", "whsec_first"]
    assert rotated.signing(now + timedelta(hours=2)) == ["whsec_second"]
    assert (await task_store.signing_secrets("bob", "whsec_bob")).signing(now) == ["whsec_bob"]

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.main.store import StoreConflictError, TaskStore
from services.shared.tasks import StoredObject, TaskError, TaskReport, TaskResult

RESULT = TaskResult(objects={"text": StoredObject("tasks/x/echo.txt", "text/plain", 2)})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[TaskStore]:
    task_store = TaskStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'tasks.db'}")
    await task_store.create_schema()
    yield task_store
    await task_store.close()


async def new_task(store: TaskStore, key: str | None = None, digest: str = "d1") -> str:
    record, created = await store.create(
        integration="echo", owner="alice", input={"message": "hi"}, idempotency_key=key, request_digest=digest
    )
    assert created
    return record.id


async def test_lifecycle_and_terminal_states_never_change(store: TaskStore) -> None:
    task_id = await new_task(store)
    outcome, record, changes = await store.apply_report(task_id, TaskReport(status="running", progress=0.1))
    assert outcome.applied
    assert changes == {"status": "running", "progress": 0.1}
    outcome, record, changes = await store.apply_report(task_id, TaskReport(status="succeeded", result=RESULT))
    assert outcome.applied
    assert record.result == RESULT
    for late in (
        TaskReport(status="running"),
        TaskReport(status="failed", error=TaskError("x", "y")),
        TaskReport(status="succeeded", result=TaskResult()),
    ):
        outcome, record, changes = await store.apply_report(task_id, late)
        assert not outcome.applied
        assert outcome.reason == "task is already succeeded"
        assert changes == {}
    assert record.status == "succeeded"
    assert record.result == RESULT


async def test_duplicate_report_is_ignored(store: TaskStore) -> None:
    task_id = await new_task(store)
    first, _, _ = await store.apply_report(task_id, TaskReport(status="running", provider_task_id="p1"))
    again, _, changes = await store.apply_report(task_id, TaskReport(status="running", provider_task_id="p1"))
    assert first.applied
    assert not again.applied
    assert again.reason == "nothing changed"
    assert changes == {}


async def test_concurrent_terminal_reports_apply_exactly_once(store: TaskStore) -> None:
    task_id = await new_task(store)
    reports = [TaskReport(status="succeeded", result=RESULT)] * 10 + [
        TaskReport(status="failed", error=TaskError("boom", "x"))
    ] * 10
    outcomes = await asyncio.gather(*(store.apply_report(task_id, r) for r in reports))
    applied = [o for o, _, _ in outcomes if o.applied]
    assert len(applied) == 1
    final = await store.get(task_id)
    assert final is not None
    assert final.status == applied[0].status
    assert final.version == 1


async def test_idempotency_key_returns_the_same_task_and_rejects_a_different_request(store: TaskStore) -> None:
    task_id = await new_task(store, key="k-1")
    again, created = await store.create(
        integration="echo", owner="alice", input={"message": "hi"}, idempotency_key="k-1", request_digest="d1"
    )
    assert not created
    assert again.id == task_id
    other_user, created = await store.create(
        integration="echo", owner="bob", input={"message": "hi"}, idempotency_key="k-1", request_digest="d1"
    )
    assert created
    assert other_user.id != task_id
    with pytest.raises(StoreConflictError, match="already used with a different request"):
        await store.create(
            integration="echo", owner="alice", input={"message": "x"}, idempotency_key="k-1", request_digest="d2"
        )


async def test_unknown_task_report(store: TaskStore) -> None:
    with pytest.raises(KeyError):
        await store.apply_report("missing", TaskReport(status="running"))


async def test_list_filters_and_pages(store: TaskStore) -> None:
    ids = [await new_task(store) for _ in range(5)]
    await store.apply_report(ids[0], TaskReport(status="running"))
    page, total = await store.list(owner="alice", integration=None, status=None, limit=2, offset=0)
    assert total == 5
    assert len(page) == 2
    running, total = await store.list(owner="alice", integration="echo", status="running", limit=10, offset=0)
    assert [r.id for r in running] == [ids[0]]
    assert total == 1
    nobody, total = await store.list(owner="bob", integration=None, status=None, limit=10, offset=0)
    assert nobody == []
    assert total == 0

"""The per-user limits as the store keeps them, on SQLite and PostgreSQL: active tasks counted in the transactions
that change a task's status, token buckets taken by one conditional UPDATE, and neither doubled by a second store
(another main replica) on the same database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from services.main.store import Bucket, Charge, RateLimitedError, TaskStore, TooManyActiveTasksError
from services.shared.tasks import DEFAULT_PRIORITY, TaskError, TaskReport

from .test_store import RESULT, database_url, event, task_store  # noqa: F401 - fixtures

pytestmark = pytest.mark.every_store

BUCKET = Bucket(per_second=2.0, burst=5)


async def create(
    store: TaskStore, limit: int, owner: str = "alice", key: str | None = None, charge: Charge | None = None
) -> str:
    record, _ = await store.create(
        integration="echo",
        owner=owner,
        input={"message": "hi"},
        idempotency_key=key,
        request_digest="d1",
        priority=DEFAULT_PRIORITY,
        event=event,
        max_active=limit,
        charge=charge,
    )
    return record.id


@pytest.fixture
async def second_store(database_url: str) -> AsyncIterator[TaskStore]:  # noqa: F811 - the fixture
    """Another store on the same database, as a second main replica has."""
    store = TaskStore.from_url(database_url)
    yield store
    await store.close()


async def test_a_user_at_the_limit_gets_no_new_task_until_one_of_theirs_ends(task_store: TaskStore) -> None:  # noqa: F811
    ids = [await create(task_store, 3) for _ in range(3)]
    with pytest.raises(TooManyActiveTasksError):
        await create(task_store, 3)
    # Another user has an allowance of their own.
    await create(task_store, 3, owner="bob")
    assert await task_store.active_tasks("alice") == 3
    # Running is still active; an end frees one.
    await task_store.apply_report(ids[0], TaskReport(status="running"), event)
    with pytest.raises(TooManyActiveTasksError):
        await create(task_store, 3)
    await task_store.apply_report(ids[0], TaskReport(status="failed", error=TaskError("boom", "x")), event)
    await create(task_store, 3)
    # A deleted active task (its workflow never started) frees its place too; a late report on it changes nothing.
    await task_store.delete(ids[1], event)
    assert await task_store.active_tasks("alice") == 2
    await task_store.apply_report(ids[2], TaskReport(status="succeeded", result=RESULT), event)
    await task_store.apply_report(ids[2], TaskReport(status="succeeded", result=RESULT), event)
    assert await task_store.active_tasks("alice") == 1


async def test_a_retried_create_returns_its_task_even_at_the_limit(task_store: TaskStore) -> None:  # noqa: F811
    first = await create(task_store, 1, key="k1")
    assert await create(task_store, 1, key="k1") == first
    with pytest.raises(TooManyActiveTasksError):
        await create(task_store, 1, key="k2")


async def test_two_stores_on_one_database_share_one_allowance_of_active_tasks(
    task_store: TaskStore,  # noqa: F811
    second_store: TaskStore,
) -> None:
    async def attempt(store: TaskStore) -> bool:
        try:
            await create(store, 5)
        except TooManyActiveTasksError:
            return False
        return True

    granted = await asyncio.gather(*(attempt(s) for _ in range(10) for s in (task_store, second_store)))
    assert sum(granted) == 5
    assert await second_store.active_tasks("alice") == 5


async def test_a_bucket_gives_its_burst_then_one_token_per_refill(task_store: TaskStore) -> None:  # noqa: F811
    now = 1000.0
    assert [await task_store.take_token("key", BUCKET, now) for _ in range(5)] == [None] * 5
    # Empty: one token is back after half a second at 2 a second.
    assert await task_store.take_token("key", BUCKET, now) == pytest.approx(0.5)
    assert await task_store.tokens("key", BUCKET, now + 0.25) == pytest.approx(0.5)
    assert await task_store.take_token("key", BUCKET, now + 0.5) is None
    assert await task_store.take_token("key", BUCKET, now + 0.5) == pytest.approx(0.5)
    # Refilling stops at the burst; a clock behind the last refill adds nothing.
    assert await task_store.tokens("key", BUCKET, now + 100) == 5
    assert await task_store.tokens("key", BUCKET, now - 100) == pytest.approx(0.0)
    # Another key has a full bucket of its own.
    assert await task_store.tokens("other", BUCKET, now) == 5
    assert await task_store.take_token("other", BUCKET, now) is None


async def test_two_stores_on_one_database_share_one_bucket(task_store: TaskStore, second_store: TaskStore) -> None:  # noqa: F811
    now = 1000.0
    taken = await asyncio.gather(
        *(s.take_token("key", BUCKET, now) for _ in range(10) for s in (task_store, second_store))
    )
    assert sum(wait is None for wait in taken) == BUCKET.burst


async def test_a_create_takes_its_token_with_the_task_and_a_refused_or_retried_one_takes_one_too(
    task_store: TaskStore,  # noqa: F811
) -> None:
    charge = Charge("key", BUCKET, 1000.0)
    first = await create(task_store, 2, key="k1", charge=charge)
    await create(task_store, 2, charge=charge)
    assert await task_store.tokens("key", BUCKET, charge.now) == BUCKET.burst - 2
    # Answered from its key, and refused at the active limit: each a request all the same.
    assert await create(task_store, 2, key="k1", charge=charge) == first
    with pytest.raises(TooManyActiveTasksError):
        await create(task_store, 2, charge=charge)
    assert await task_store.tokens("key", BUCKET, charge.now) == BUCKET.burst - 4
    await create(task_store, 10, charge=charge)
    # The bucket is empty: nothing is stored and the wait until a token is back is said.
    with pytest.raises(RateLimitedError) as refused:
        await create(task_store, 10, charge=charge)
    assert refused.value.wait == pytest.approx(0.5)
    assert await task_store.active_tasks("alice") == 3

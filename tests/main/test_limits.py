"""Per-user limits through main's HTTP API, with two main processes on one store (SQLite and PostgreSQL): a user's
active tasks and an API key's request rate are one allowance across both, refused with 429, the structured body and
``Retry-After``; ``GET /api/limits`` shows them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from deploy.local import LocalStack
from tests.stack import USERS, MainProcess

pytestmark = [pytest.mark.integration, pytest.mark.every_store]

# No worker serves it in these tests: its tasks stay queued, so active.
UNSERVED = "nanobanana2-image"
BODY = {"prompt": "a lighthouse", "image_size": "512"}
ACTIVE_LIMIT = 3
BURST = 8
PER_SECOND = 0.5


class Callers:
    """Two users of their own: ``capped`` may have ACTIVE_LIMIT active tasks, ``busy`` the default."""

    def __init__(self) -> None:
        run = uuid.uuid4().hex[:8]
        self.capped, self.busy = f"capped-{run}", f"busy-{run}"
        self.keys = {self.capped: f"capped-key-{uuid.uuid4().hex}", self.busy: f"busy-key-{uuid.uuid4().hex}"}

    def api_keys(self) -> str:
        every = {**USERS, **self.keys}
        return ",".join(f"{key}:{user}" for user, key in every.items())

    def client(self, main: MainProcess, user: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=main.url, headers={"Authorization": f"Bearer {self.keys[user]}"}, timeout=30)


@pytest.fixture
async def callers() -> Callers:
    return Callers()


@pytest.fixture
async def mains(stack: LocalStack, worker_env: dict[str, str], callers: Callers) -> AsyncIterator[list[MainProcess]]:
    """Two main processes beside the stack's, on its store, with small limits."""
    settings = {
        "API_KEYS": callers.api_keys(),
        "MAIN_USER_MAX_ACTIVE_TASKS": f"{callers.capped}:{ACTIVE_LIMIT}",
        "MAIN_RATE_LIMIT_PER_SECOND": str(PER_SECOND),
        "MAIN_RATE_LIMIT_BURST": str(BURST),
    }
    started = [
        MainProcess(worker_env, stack.state_dir / f"main-limits-{uuid.uuid4().hex[:6]}.log", **settings)
        for _ in range(2)
    ]
    try:
        await asyncio.gather(*(main.wait_ready() for main in started))
        yield started
    finally:
        for main in started:
            main.kill()


async def create_on_both(callers: Callers, mains: list[MainProcess], user: str, count: int) -> list[httpx.Response]:
    clients = [callers.client(main, user) for main in mains]
    try:
        return await asyncio.gather(
            *(clients[i % 2].post(f"/api/integrations/{UNSERVED}/tasks", json=BODY) for i in range(count))
        )
    finally:
        for client in clients:
            await client.aclose()


async def test_a_users_active_tasks_are_one_allowance_across_replicas(
    callers: Callers, mains: list[MainProcess]
) -> None:
    answers = await create_on_both(callers, mains, callers.capped, 2 * ACTIVE_LIMIT)
    assert sorted(a.status_code for a in answers) == [202] * ACTIVE_LIMIT + [429] * ACTIVE_LIMIT
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.headers["retry-after"] == "5"
    body = refused.json()
    assert body["code"] == "too_many_active_tasks"
    assert body["retryable"] is True
    assert body["details"] == {"limit": ACTIVE_LIMIT, "retry_after_seconds": 5}
    assert str(ACTIVE_LIMIT) in body["message"]
    async with callers.client(mains[1], callers.capped) as http:
        limits = (await http.get("/api/limits")).json()
    assert limits["active_tasks"] == {"limit": ACTIVE_LIMIT, "used": ACTIVE_LIMIT}
    assert limits["requests"]["per_second"] == PER_SECOND
    assert limits["requests"]["burst"] == BURST
    # Six creates took six tokens (a refused one too: it was a request); half a token a second came back meanwhile.
    assert BURST - 2 * ACTIVE_LIMIT <= limits["requests"]["available"] < BURST - 2 * ACTIVE_LIMIT + 1
    assert (limits["highest_priority"], limits["default_priority"]) == (1, 3)


async def test_an_api_keys_request_rate_is_one_bucket_across_replicas(
    callers: Callers, mains: list[MainProcess]
) -> None:
    answers = await create_on_both(callers, mains, callers.busy, BURST + 4)
    assert sorted(a.status_code for a in answers) == [202] * BURST + [429] * 4
    refused = next(a for a in answers if a.status_code == 429)
    body = refused.json()
    assert body["code"] == "rate_limited"
    assert body["retryable"] is True
    # One token comes back every two seconds.
    assert refused.headers["retry-after"] in ("1", "2")
    assert body["details"] == {"retry_after_seconds": int(refused.headers["retry-after"])}
    # A refresh draws on the same bucket, before the task is looked for (a token that came back meanwhile lets one
    # through to a 404).
    async with callers.client(mains[0], callers.busy) as http:
        path = f"/api/integrations/fangzhouVideoGeneration/tasks/{uuid.uuid4()}/refresh"
        refreshes = [await http.post(path) for _ in range(3)]
        assert [r.status_code for r in refreshes][-2:] == [429, 429]
        assert refreshes[-1].json()["code"] == "rate_limited"
        # Reads are not limited.
        assert (await http.get("/api/limits")).status_code == 200
    # Another key's bucket is full.
    async with callers.client(mains[1], callers.capped) as http:
        assert (await http.post(f"/api/integrations/{UNSERVED}/tasks", json=BODY)).status_code == 202

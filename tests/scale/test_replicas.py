"""Two main and two communication replicas on one PostgreSQL store and one NATS stream: tasks created through one
main and reported to the other reach every socket of their user on either communication replica, each event once
and in version order; a main killed right after a commit loses no event; the clients of a communication replica that
dies resume on the other and miss nothing."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from deploy.local import LocalStack
from tests.faults.harness import EventLog, every_event_once
from tests.stack import Api, Launcher, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.faults]

# No worker serves this integration here, so only the reports the tests send change its tasks.
UNSERVED = "nanobanana2-image"


def ws_url(http_url: str) -> str:
    return http_url.replace("http", "ws", 1) + "/ws"


class Main:
    """One main replica: as alice (creates) and as a worker (reports)."""

    def __init__(self, stack: LocalStack, url: str, internal_url: str) -> None:
        self.alice = Api(url, "alice")
        self.internal = httpx.AsyncClient(
            base_url=internal_url, headers={"Authorization": f"Bearer {stack.secrets.report_token}"}, timeout=30
        )

    async def create(self, prompt: str) -> str:
        response = await self.alice.create(UNSERVED, {"prompt": prompt, "image_size": "512"})
        assert response.status_code == 202, response.text
        task_id: str = response.json()["id"]
        return task_id

    async def report(self, task_id: str, progress: float) -> None:
        response = await self.internal.post(
            f"/internal/tasks/{task_id}/report", json={"status": "running", "progress": progress}
        )
        assert response.status_code == 200, response.text
        assert response.json()["applied"], response.text

    async def close(self) -> None:
        await self.alice.close()
        await self.internal.aclose()


@pytest.fixture
async def mains(scale_stack: LocalStack) -> AsyncIterator[list[Main]]:
    urls = zip(scale_stack.main_urls, scale_stack.main_internal_urls, strict=True)
    replicas = [Main(scale_stack, url, internal) for url, internal in urls]
    yield replicas
    for replica in replicas:
        await replica.close()


def replica(http_url: str) -> Callable[[], str]:
    """Always the communication replica at ``http_url``."""
    return lambda: ws_url(http_url)


async def started(log: EventLog) -> EventLog:
    await log.start()
    return log


async def seen_everything(logs: list[EventLog], finals: dict[str, int]) -> None:
    async def done() -> bool:
        return all(log.versions(t)[-1:] == [v] for log in logs for t, v in finals.items())

    await wait_for(done, 60, "every socket to receive every task's last event", interval=0.05)
    problems = [p for log in logs for t, v in finals.items() if (p := every_event_once(log, t, v))]
    assert not problems, "\n".join(problems)


async def test_creates_on_one_main_and_reports_on_the_other_reach_both_communications(
    scale_stack: LocalStack, mains: list[Main], tmp_path_factory: pytest.TempPathFactory
) -> None:
    first, second = scale_stack.communication_urls
    logs = [await started(EventLog(mains[0].alice, replica(url))) for url in (first, second, second)]
    bob = await started(EventLog(Api(scale_stack.main_urls[1], "bob"), replica(first)))
    # The echo worker reports to the second main; the tasks are created through the first.
    env = {**scale_stack.service_env(), "MAIN_INTERNAL_URL": scale_stack.main_internal_urls[1]}
    worker = Launcher(env, ["echo"], tmp_path_factory.mktemp("scale-worker") / "echo.log")
    try:
        await worker.wait_serving()
        created = await asyncio.gather(
            *(
                mains[0].alice.create("echo", {"message": f"across replicas {i}", "delay_seconds": 0.2})
                for i in range(8)
            )
        )
        ids = [c.json()["id"] for c in created]
        finals = {t["id"]: t["version"] for t in [await mains[1].alice.wait_status(i, {"succeeded"}) for i in ids]}
        assert all(version >= 2 for version in finals.values())
        await seen_everything(logs, finals)
        # Reports straight to both mains, interleaved, on tasks no worker runs.
        unserved = [await mains[i % 2].create(f"progress {i}") for i in range(4)]
        for step in range(1, 11):
            await asyncio.gather(*(mains[(step + i) % 2].report(t, step / 100) for i, t in enumerate(unserved)))
        await seen_everything(logs, dict.fromkeys(unserved, 10))
        assert not any(e.get("task_id") in finals or e.get("task_id") in unserved for e in bob.events)
    finally:
        worker.kill()
        for log in [*logs, bob]:
            await log.close()
        await bob.api.close()


async def test_a_main_killed_right_after_a_commit_loses_no_event(
    scale_stack: LocalStack, mains: list[Main], tmp_path_factory: pytest.TempPathFactory
) -> None:
    log = await started(EventLog(mains[0].alice, lambda: ws_url(scale_stack.communication_urls[0])))
    mark = "kill-after-commit"
    task_id = await mains[0].create(f"a task whose report kills main ({mark})")
    # The second replica, replaced by one with the fault hook (same port and environment).
    spec = scale_stack.specs(["main-2"])[0]
    await asyncio.to_thread(scale_stack.stop, "main-2")
    hooked = Launcher(
        {**spec.env, "KILL_AFTER_COMMIT_MARK": mark},
        [],
        tmp_path_factory.mktemp("hooked-main") / "main.log",
        module="tests.scale.main_killed_after_commit",
    )
    try:

        async def serving() -> bool:
            try:
                return (await mains[1].alice.http.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(serving, 60, "the hooked main to serve")
        with pytest.raises(httpx.TransportError):
            await mains[1].report(task_id, 0.5)
        assert hooked.proc.wait(10) == -signal.SIGKILL
        # Committed before it died: the change is in the store, and its event reaches the socket through the relay
        # of the replica that is still up.
        await seen_everything([log], {task_id: 1})
        changes = log.of(task_id)[-1]["changes"]
        assert (changes.pop("status"), changes.pop("progress"), sorted(changes)) == ("running", 0.5, ["started_at"])
    finally:
        hooked.kill()
        await log.close()
        await asyncio.to_thread(scale_stack.start, "main-2")


async def test_clients_of_a_killed_communication_resume_on_the_other_and_miss_nothing(
    scale_stack: LocalStack, mains: list[Main]
) -> None:
    first, second = scale_stack.communication_urls
    alive = {"second": True}
    logs = [
        await started(EventLog(mains[0].alice, lambda: ws_url(second if alive["second"] else first))) for _ in range(3)
    ]
    tasks = [await mains[i % 2].create(f"through a failover {i}") for i in range(3)]
    try:
        for step in range(1, 4):
            await asyncio.gather(*(mains[step % 2].report(t, step / 100) for t in tasks))
        await seen_everything(logs, dict.fromkeys(tasks, 3))
        alive["second"] = False
        killed = await asyncio.to_thread(scale_stack.kill, "communication-2")
        assert killed == ["communication-2"]
        # Changes while the clients are cut off and while they reconnect to the first replica.
        for step in range(4, 21):
            await asyncio.gather(*(mains[step % 2].report(t, step / 100) for t in tasks))
        await seen_everything(logs, dict.fromkeys(tasks, 20))
        assert all(log.connections == 2 and log.resyncs == 0 for log in logs)
    finally:
        for log in logs:
            await log.close()
        await asyncio.to_thread(scale_stack.start, "communication-2")

"""fangzhouVideoGeneration on the real local stack: main, communication, Temporal, the S3 server, the Ark
simulator and the integration's worker process. The worker reads a fast poll policy from its environment."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest

from deploy.local import LocalStack
from services.shared.storage import ObjectStore
from tests.stack import Api, Events, Launcher, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.every_store]

NAME = "fangzhouVideoGeneration"
FAST_POLL = {
    "ARK_POLL_INITIAL_SECONDS": "0.5",
    "ARK_POLL_BACKOFF": "1.5",
    "ARK_POLL_MAX_SECONDS": "2",
    "ARK_DEADLINE_SECONDS": "600",
}
# Polls so rare that within a test only a callback (or a refresh) can make the workflow look at Ark.
SLOW_POLL = {**FAST_POLL, "ARK_POLL_INITIAL_SECONDS": "600", "ARK_POLL_MAX_SECONDS": "600"}


class Worker:
    """The integration's one worker process; a test may kill it or swap it for one with other settings."""

    def __init__(self, stack: LocalStack, env: Mapping[str, str]) -> None:
        self.stack = stack
        self.env = dict(env)
        self.launcher: Launcher | None = None
        self.starts = 0

    async def start(self, poll: Mapping[str, str]) -> None:
        self.kill()
        self.starts += 1
        log = self.stack.state_dir / f"fangzhou-worker-{self.starts}.log"
        self.launcher = Launcher({**self.env, **poll}, [NAME], log)
        await self.launcher.wait_serving()

    def kill(self) -> None:
        if self.launcher is not None:
            self.launcher.kill()
            self.launcher = None


class Simulator:
    """The simulator's control API (``/_sim``): what Ark saw."""

    def __init__(self, url: str) -> None:
        self.http = httpx.AsyncClient(base_url=url, timeout=10)

    async def ark_task(self, provider_task_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/_sim/ark/tasks/{provider_task_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def attempts(self, prompt: str) -> int:
        stats = (await self.http.get("/_sim/stats")).json()
        return int(stats["prompt_attempts"].get("ark", {}).get(prompt, 0))

    async def config(self, **patch: Any) -> dict[str, Any]:
        response = await self.http.post("/_sim/config", json=patch)
        assert response.status_code in (200, 201), response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="module")
async def worker(stack: LocalStack, worker_env: dict[str, str]) -> AsyncIterator[Worker]:
    process = Worker(stack, worker_env)
    await process.start(FAST_POLL)
    yield process
    process.kill()


@pytest.fixture
async def sim(stack: LocalStack) -> AsyncIterator[Simulator]:
    simulator = Simulator(stack.simulator_url)
    yield simulator
    await simulator.http.aclose()


def unique(prompt: str) -> str:
    # The simulator counts attempts per exact prompt, across the whole test session.
    return f"{prompt} ({uuid.uuid4().hex[:8]})"


async def create(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.create(NAME, body)
    assert response.status_code == 202, response.text
    task: dict[str, Any] = response.json()
    assert task["status"] == "queued"
    return task


async def submitted(api: Api, task_id: str) -> str:
    async def provider_task_id() -> str | None:
        task = await api.task(task_id)
        assert task["status"] in ("queued", "running"), task
        return task["provider_task_id"] if task["status"] == "running" else None

    return await wait_for(provider_task_id, 30, f"task {task_id} to be submitted to Ark")


def of(events: list[dict[str, Any]], task_id: str) -> list[str]:
    return [e["status"] for e in events if e.get("task_id") == task_id]


async def events_until_marker(api: Api, events: Events) -> list[dict[str, Any]]:
    """Every event up to a new task's first one: proof that nothing else was still on its way."""
    marker = await api.create("fangzhouVideoGeneration", {"prompt": unique("marker"), "duration": 2})
    marker_id = marker.json()["id"]
    return await events.until(marker_id, "queued")


async def test_video_task_end_to_end(
    worker: Worker, alice: Api, bob: Api, objects: ObjectStore, sim: Simulator
) -> None:
    events = await alice.socket()
    prompt = unique("a red kite above a beach")
    task = await create(
        alice, {"prompt": prompt, "duration": 2, "resolution": "480p", "ratio": "16:9", "return_last_frame": True}
    )
    seen = await events.until(task["id"], "succeeded")
    assert of(seen, task["id"]) == ["queued", "running", "succeeded"]
    running_event = next(e for e in seen if e.get("task_id") == task["id"] and e["status"] == "running")
    assert running_event["changes"]["provider_task_id"].startswith("cgt-")
    final_event = seen[-1]
    assert set(final_event["changes"]["output"]["objects"]) == {"video", "last_frame"}

    read = await alice.task(task["id"])
    assert read["status"] == "succeeded"
    provider_task_id = read["provider_task_id"]
    output = read["output"]
    data = output["data"]
    assert (data["resolution"], data["ratio"], data["duration"], data["model"]) == (
        "480p",
        "16:9",
        2,
        "doubao-seedance-1-0-pro-250528",
    )
    assert isinstance(data["seed"], int)
    assert data["usage"]["total_tokens"] > 0
    video, frame = output["objects"]["video"], output["objects"]["last_frame"]
    assert (video["key"], frame["key"]) == (f"tasks/{task['id']}/video.mp4", f"tasks/{task['id']}/last_frame.png")
    async with httpx.AsyncClient() as anonymous:
        mp4 = await anonymous.get(video["url"])
        png = await anonymous.get(frame["url"])
    assert mp4.status_code == 200
    assert mp4.content[4:8] == b"ftyp"
    assert len(mp4.content) == video["size"]
    assert png.content.startswith(b"\x89PNG")
    assert sorted(await objects.list_keys(f"tasks/{task['id']}/")) == [frame["key"], video["key"]]

    ark = await sim.ark_task(provider_task_id)
    assert ark["prompt"] == prompt
    assert ark["callback_url"].startswith(
        f"{alice.main_url}/api/integrations/{NAME}/tasks/{task['id']}/callback?secret="
    )
    assert await sim.attempts(prompt) == 1

    # A refresh of a finished task returns it; another user's task does not exist for bob.
    refreshed = await alice.http.post(f"/api/integrations/{NAME}/tasks/{task['id']}/refresh")
    assert refreshed.status_code == 200
    assert refreshed.json()["status"] == "succeeded"
    assert refreshed.json()["output"]["objects"]["video"]["key"] == video["key"]
    assert (await bob.http.post(f"/api/integrations/{NAME}/tasks/{task['id']}/refresh")).status_code == 404
    await events.close()


async def test_refresh_racing_the_poller_concludes_once(worker: Worker, alice: Api, sim: Simulator) -> None:
    events = await alice.socket()
    task = await create(alice, {"prompt": unique("waves at dusk"), "duration": 2})
    await submitted(alice, task["id"])

    answers: list[str] = []

    async def refreshed_to_success() -> bool:
        # Several refreshes at once, racing each other, the poller and Ark's callbacks.
        responses = await asyncio.gather(
            *(alice.http.post(f"/api/integrations/{NAME}/tasks/{task['id']}/refresh") for _ in range(4))
        )
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
        answers.extend(r.json()["status"] for r in responses)
        return "succeeded" in answers

    await wait_for(refreshed_to_success, 60, "a refresh to find the result", interval=0.2)
    assert set(answers) <= {"running", "succeeded"}
    seen = await events_until_marker(alice, events)
    assert of(seen, task["id"]).count("succeeded") == 1
    assert of(seen, task["id"])[-1] == "succeeded"
    read = await alice.task(task["id"])
    assert read["status"] == "succeeded" and read["output"]["objects"]["video"]["size"] > 0
    await events.close()


async def test_worker_restart_mid_poll_loses_nothing(worker: Worker, alice: Api, sim: Simulator) -> None:
    events = await alice.socket()
    # Ark works for 8 s: the worker is killed while it polls.
    prompt = unique("a slow train [sim:slow=8]")
    task = await create(alice, {"prompt": prompt, "duration": 2})
    provider_task_id = await submitted(alice, task["id"])

    async def polled() -> bool:
        return int((await sim.ark_task(provider_task_id))["queries"]) >= 1

    await wait_for(polled, 30, "the worker to poll Ark")
    worker.kill()
    queries_at_kill = (await sim.ark_task(provider_task_id))["queries"]
    assert (await sim.ark_task(provider_task_id))["task"]["status"] != "succeeded"
    await worker.start(FAST_POLL)

    seen = await events.until(task["id"], "succeeded", timeout=120)
    assert of(seen, task["id"]) == ["queued", "running", "succeeded"]
    assert (await sim.ark_task(provider_task_id))["queries"] > queries_at_kill
    assert await sim.attempts(prompt) == 1, "the Ark task must be created once"
    after = await events_until_marker(alice, events)
    assert of(after, task["id"]) == []
    await events.close()


async def test_callback_wakes_the_workflow(worker: Worker, alice: Api, sim: Simulator) -> None:
    await worker.start(SLOW_POLL)
    try:
        started = time.monotonic()
        task = await create(alice, {"prompt": unique("fireflies in a jar"), "duration": 2})
        done = await alice.wait_status(task["id"], {"succeeded", "failed"}, timeout=60)
        elapsed = time.monotonic() - started
    finally:
        await worker.start(FAST_POLL)
    assert done["status"] == "succeeded", done
    # The first poll would have been 600 s after the submit: Ark's callbacks made the workflow query it.
    assert elapsed < 60
    ark = await sim.ark_task(done["provider_task_id"])
    assert [(c["status"], c["delivered"], c["last_status_code"]) for c in ark["callbacks"]] == [
        ("running", True, 200),
        ("succeeded", True, 200),
    ]
    assert 1 <= ark["queries"] <= 2

    # The callback route: the per-task secret is required, and a finished task ignores callbacks.
    callback = f"/api/integrations/{NAME}/tasks/{task['id']}/callback"
    secret = ark["callback_url"].partition("secret=")[2]
    async with httpx.AsyncClient(base_url=alice.main_url) as anonymous:
        missing = await anonymous.post(callback, json=ark["task"])
        wrong = await anonymous.post(callback, params={"secret": "not-the-secret"}, json=ark["task"])
        late = await anonymous.post(callback, params={"secret": secret}, json=ark["task"])
    assert (missing.status_code, missing.json()["code"]) == (401, "unauthorized")
    assert (wrong.status_code, wrong.json()["code"]) == (404, "not_found")
    assert (late.status_code, late.json()) == (200, {"accepted": False})


async def queued_on_ark(api: Api, sim: Simulator, prompt: str) -> tuple[dict[str, Any], str]:
    """A task whose Ark job stays queued (Ark cancels a job only while it is queued), and the job's id."""
    before = await sim.config()
    await sim.config(ark_queue_seconds=300)
    try:
        task = await create(api, {"prompt": unique(prompt), "duration": 2})
        provider_task_id = await submitted(api, task["id"])
    finally:
        await sim.config(ark_queue_seconds=before["ark_queue_seconds"])
    assert (await sim.ark_task(provider_task_id))["task"]["status"] == "queued"
    return task, provider_task_id


async def test_cancel_while_queued_cancels_on_ark(worker: Worker, alice: Api, sim: Simulator) -> None:
    events = await alice.socket()
    task, provider_task_id = await queued_on_ark(alice, sim, "a queue that never moves")

    response = await alice.http.post(f"/api/tasks/{task['id']}/cancel")
    assert response.status_code == 202, response.text
    cancelled = await alice.wait_status(task["id"], {"cancelled"})
    assert cancelled["error"]["code"] == "cancelled"
    assert "dropped the queued job" in cancelled["error"]["message"]
    ark = await sim.ark_task(provider_task_id)
    assert (ark["final_status"], ark["task"]["status"]) == ("cancelled", "cancelled")
    seen = await events_until_marker(alice, events)
    assert of(seen, task["id"]) == ["queued", "running", "cancelled"]
    await events.close()


async def test_ark_failure_keeps_arks_error_code(worker: Worker, alice: Api) -> None:
    task = await create(alice, {"prompt": unique("something [sim:fail]"), "duration": 2})
    failed = await alice.wait_status(task["id"], {"failed", "succeeded"})
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "OutputVideoSensitiveContentDetected"
    assert "sensitive" in failed["error"]["message"]
    assert failed["error"]["retryable"] is False
    assert failed["output"] is None


async def test_rate_limited_submit_is_retried(worker: Worker, alice: Api, sim: Simulator) -> None:
    prompt = unique("a busy endpoint [sim:429x1]")
    task = await create(alice, {"prompt": prompt, "duration": 2})
    done = await alice.wait_status(task["id"], {"failed", "succeeded"})
    assert done["status"] == "succeeded", done
    assert await sim.attempts(prompt) == 2


async def test_invalid_combinations_are_rejected(alice: Api) -> None:
    mixed = await alice.create(
        NAME,
        {"prompt": "p", "first_frame": "https://example.com/a.png", "reference_images": ["https://example.com/b.png"]},
    )
    assert mixed.status_code == 422
    assert (mixed.json()["code"], mixed.json()["details"]) == ("invalid_input", {"field": "reference_images"})
    lonely = await alice.create(NAME, {"prompt": "p", "last_frame": "https://example.com/z.png"})
    assert (lonely.status_code, lonely.json()["details"]) == (422, {"field": "last_frame"})
    unknown = await alice.create(NAME, {"prompt": "p", "fps": 30})
    assert unknown.status_code == 400


async def test_deleting_a_running_task_cancels_its_ark_job(worker: Worker, alice: Api, sim: Simulator) -> None:
    task, provider_task_id = await queued_on_ark(alice, sim, "a film nobody wants any more")
    response = await alice.http.delete(f"/api/tasks/{task['id']}")
    assert response.status_code == 204, response.text
    assert (await alice.http.get(f"/api/tasks/{task['id']}")).status_code == 404

    async def cancelled_on_ark() -> bool:
        final: str = (await sim.ark_task(provider_task_id))["final_status"]
        return final == "cancelled"

    await wait_for(cancelled_on_ark, 30, f"Ark job {provider_task_id} to be cancelled")

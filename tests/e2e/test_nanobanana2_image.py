"""nanobanana2-image through the running stack: main, communication, Temporal, S3, the provider simulator and a
worker launched as its container runs it."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from deploy.local import LocalStack
from services.shared.storage import ObjectStore
from services.simulator.media import encode_png, gemini_image_size, render_rows
from tests.integrations.nanobanana2_image.helpers import png_dimensions_checked
from tests.stack import Api, Events, Launcher, statuses, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.every_store]

NAME = "nanobanana2-image"
REFERENCE = encode_png(12, 8, render_rows(12, 8, (30, 60, 90), (250, 200, 10), 3))


class Workers:
    """The module's nanobanana2-image worker; a test may kill it and start another in its place."""

    def __init__(self, stack: LocalStack, env: dict[str, str]) -> None:
        self._stack = stack
        self._env = env
        self._started = 0
        self.current: Launcher | None = None

    async def start(self) -> Launcher:
        self._started += 1
        log = self._stack.state_dir / f"nanobanana2-worker-{self._started}.log"
        self.current = Launcher(self._env, [NAME], log)
        await self.current.wait_serving()
        return self.current

    def kill(self) -> None:
        if self.current is not None:
            self.current.kill()
            self.current = None


def simulator_env(stack: LocalStack, worker_env: dict[str, str]) -> dict[str, str]:
    """The worker environment, always aimed at the simulator (even when the caller has a real key)."""
    env = {k: v for k, v in worker_env.items() if k != "GEMINI_API_KEY"}
    return {**env, "PROVIDER_SIMULATOR_URL": stack.simulator_url}


@pytest.fixture(scope="module")
async def workers(stack: LocalStack, worker_env: dict[str, str]) -> AsyncIterator[Workers]:
    running = Workers(stack, simulator_env(stack, worker_env))
    await running.start()
    yield running
    running.kill()


@pytest.fixture
async def simulator(stack: LocalStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.simulator_url, timeout=10) as client:
        yield client


async def attempts(simulator: httpx.AsyncClient, prompt: str) -> int:
    """generateContent calls the simulator has seen with exactly this prompt."""
    stats = (await simulator.get("/_sim/stats")).json()
    count: int = stats["prompt_attempts"].get("gemini", {}).get(prompt, 0)
    return count


async def answered(simulator: httpx.AsyncClient, status: str) -> int:
    stats = (await simulator.get("/_sim/stats")).json()
    count: int = stats["responses"].get("gemini", {}).get("generate_content", {}).get(status, 0)
    return count


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def unique(prompt: str) -> str:
    return f"{prompt} ({uuid.uuid4().hex[:8]})"


async def create(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.create(NAME, body)
    assert response.status_code == 202, response.text
    task: dict[str, Any] = response.json()
    assert task["status"] == "queued"
    assert response.headers["location"] == f"/api/tasks/{task['id']}"
    return task


async def download(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as anonymous:
        return await anonymous.get(url)


async def only_events_of_a_new_task_follow(api: Api, events: Events) -> None:
    """No further event for earlier tasks: the next event on the socket belongs to a task created now."""
    marker = await create(api, {"prompt": unique("a marker")})
    following = await events.next()
    assert following["task_id"] == marker["id"], following
    await api.wait_status(marker["id"], {"succeeded"})


async def test_create_follow_events_and_download_the_png(
    workers: Workers, alice: Api, objects: ObjectStore, simulator: httpx.AsyncClient
) -> None:
    events = await alice.socket()
    prompt = unique("a lighthouse at dusk")
    body = {"prompt": prompt, "aspect_ratio": "9:16", "image_size": "2K", "reference_images": [data_url(REFERENCE)]}
    task = await create(alice, body)

    seen = await events.until(task["id"], "succeeded")
    assert statuses(seen, task["id"]) == ["queued", "running", "succeeded"]
    final = [e for e in seen if e.get("task_id") == task["id"]][-1]
    assert final["event"] == "task.updated" and final["integration"] == NAME
    assert final["changes"]["output"]["objects"]["image"]["content_type"] == "image/png"

    read = await alice.http.get(f"/api/integrations/{NAME}/tasks/{task['id']}")
    assert read.status_code == 200, read.text
    body = read.json()
    assert body["status"] == "succeeded"
    assert body["progress"] == 1.0
    image = body["output"]["objects"]["image"]
    key = f"tasks/{task['id']}/image.png"
    assert (image["key"], image["content_type"]) == (key, "image/png")
    expected = gemini_image_size("9:16", "2K")
    data = body["output"]["data"]
    assert (data["aspect_ratio"], data["image_size"], data["width"], data["height"]) == ("9:16", "2K", *expected)

    fetched = await download(image["url"])
    assert fetched.status_code == 200
    assert fetched.headers["content-type"] == "image/png"
    assert len(fetched.content) == image["size"]
    assert png_dimensions_checked(fetched.content) == expected
    assert await objects.list_keys(f"tasks/{task['id']}/") == [key]
    assert await attempts(simulator, prompt) == 1
    await events.close()


async def test_a_worker_killed_mid_generation_still_gives_one_result_and_one_success(
    workers: Workers, alice: Api, objects: ObjectStore, simulator: httpx.AsyncClient
) -> None:
    events = await alice.socket()
    prompt = unique("a slow lighthouse [sim:slow=5]")
    task = await create(alice, {"prompt": prompt, "aspect_ratio": "4:3", "image_size": "1K"})
    seen = await events.until(task["id"], "running")

    async def in_flight() -> bool:
        return await attempts(simulator, prompt) == 1

    await wait_for(in_flight, 30, "the generateContent call to reach the simulator")
    workers.kill()
    await workers.start()

    seen += await events.until(task["id"], "succeeded", timeout=120)
    # The second attempt says running again, counting itself.
    assert statuses(seen, task["id"]) == ["queued", "running", "running", "succeeded"]
    assert [e["changes"].get("provider_attempts") for e in seen if e.get("task_id") == task["id"]][1:3] == [1, 2]
    # The new worker repeated the call after the heartbeat timeout: the first one was really cut off.
    assert await attempts(simulator, prompt) == 2
    await only_events_of_a_new_task_follow(alice, events)

    key = f"tasks/{task['id']}/image.png"
    assert await objects.list_keys(f"tasks/{task['id']}/") == [key]
    read = await alice.task(task["id"])
    assert read["status"] == "succeeded"
    assert png_dimensions_checked(await objects.get_bytes(key)) == gemini_image_size("4:3", "1K")
    await events.close()


async def test_transient_provider_errors_are_retried_to_success(
    workers: Workers, alice: Api, simulator: httpx.AsyncClient
) -> None:
    prompt = unique("a harbour [sim:503x2]")
    task = await create(alice, {"prompt": prompt})
    done = await alice.wait_status(task["id"], {"succeeded", "failed"}, timeout=90)
    assert done["status"] == "succeeded", done
    assert await attempts(simulator, prompt) == 3


async def test_a_blocked_prompt_fails_at_once_with_the_reason(
    workers: Workers, alice: Api, objects: ObjectStore, simulator: httpx.AsyncClient
) -> None:
    events = await alice.socket()
    prompt = unique("something forbidden [sim:blocked=PROHIBITED_CONTENT]")
    task = await create(alice, {"prompt": prompt})
    seen = await events.until(task["id"], "failed")
    assert statuses(seen, task["id"]) == ["queued", "running", "failed"]
    error = [e for e in seen if e.get("task_id") == task["id"]][-1]["changes"]["error"]
    assert error["code"] == "blocked_prompt"
    assert "PROHIBITED_CONTENT" in error["message"]
    assert error["retryable"] is False

    read = await alice.task(task["id"])
    assert (read["status"], read["error"], read["output"]) == ("failed", error, None)
    assert await attempts(simulator, prompt) == 1
    assert await objects.list_keys(f"tasks/{task['id']}/") == []
    await events.close()


async def test_cancel_stops_the_provider_call(workers: Workers, alice: Api, simulator: httpx.AsyncClient) -> None:
    prompt = unique("a never-ending picture [sim:hang]")
    before = await answered(simulator, "499")
    task = await create(alice, {"prompt": prompt})

    async def in_flight() -> bool:
        return await attempts(simulator, prompt) == 1

    await wait_for(in_flight, 30, "the generateContent call to reach the simulator")
    cancelled = await alice.http.post(f"/api/tasks/{task['id']}/cancel")
    assert cancelled.status_code == 202, cancelled.text
    final = await alice.wait_status(task["id"], {"cancelled"})
    assert final["error"]["code"] == "cancelled"

    async def abandoned() -> bool:
        return await answered(simulator, "499") == before + 1

    # The held request ended because the worker closed it, not because the simulator gave up.
    await wait_for(abandoned, 30, "the simulator to see the call abandoned")


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"prompt": "x", "aspect_ratio": "7:3"}, 400, "aspect_ratio"),
        ({"prompt": "x", "image_size": "8K"}, 400, "image_size"),
        ({"prompt": ""}, 400, "prompt"),
        ({"prompt": "x" * 10_001}, 400, "prompt"),
        ({"prompt": " \n "}, 422, "prompt"),
        ({}, 400, "prompt"),
        ({"prompt": "x", "reference_images": [data_url(REFERENCE)] * 15}, 400, "reference_images"),
        ({"prompt": "x", "reference_images": ["data:image/png;base64,@@@"]}, 422, "reference_images[0]"),
        ({"prompt": "x", "reference_images": [data_url(REFERENCE), "not a data url"]}, 422, "reference_images[1]"),
        ({"prompt": "x", "reference_images": [data_url(b"GIF89a", "image/gif")]}, 422, "reference_images[0]"),
        ({"prompt": "x", "reference_images": [data_url(b"hello")]}, 422, "reference_images[0]"),
        ({"prompt": "x", "negative_prompt": "y"}, 400, "negative_prompt"),
    ],
)
async def test_bad_input_gets_a_4xx_naming_the_field(alice: Api, body: dict[str, Any], status: int, field: str) -> None:
    before = (await alice.http.get("/api/tasks", params={"integration": NAME, "limit": 1})).json()["total"]
    response = await alice.create(NAME, body)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["code"] == "invalid_input"
    assert error["retryable"] is False
    assert field in error["message"]
    if status == 422:
        assert error["details"] == {"field": field}
    after = (await alice.http.get("/api/tasks", params={"integration": NAME, "limit": 1})).json()["total"]
    assert after == before


async def test_a_worker_without_a_key_for_google_stops_naming_the_variable(
    stack: LocalStack, worker_env: dict[str, str]
) -> None:
    env = {k: v for k, v in worker_env.items() if not k.startswith("GEMINI_") and k != "PROVIDER_SIMULATOR_URL"}
    launcher = Launcher(env, [NAME], stack.state_dir / "nanobanana2-no-key.log")
    try:
        assert launcher.proc.wait(30) == 2
        assert "environment variable GEMINI_API_KEY (or GEMINI_API_KEY_FILE) is required" in launcher.output()
    finally:
        launcher.kill()

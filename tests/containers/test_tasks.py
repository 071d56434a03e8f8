"""A task of every integration through the compose stack, as a client on the host sees it: create over HTTP,
the websocket events queued -> running -> succeeded, and the result downloaded through the presigned URL that
main hands out. Provider integrations talk to the simulator container."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.stack import Api, Events

from .conftest import ComposeStack, integration_present

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _statuses(events: list[dict[str, Any]], task_id: str) -> list[str]:
    """The task's statuses in the order its events came, repeats (progress updates) folded."""
    statuses: list[str] = []
    for event in events:
        if event.get("task_id") == task_id and (not statuses or statuses[-1] != event["status"]):
            statuses.append(event["status"])
    return statuses


async def _run_task(
    alice: Api, integration: str, body: dict[str, Any], timeout: float = 120
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Create a task with a socket open; the task as main reads it after the succeeded event, and its events."""
    events: Events = await alice.socket()
    try:
        created = await alice.create(integration, body)
        assert created.status_code == 202, created.text
        task_id = created.json()["id"]
        seen = await events.until(task_id, "succeeded", timeout=timeout)
    finally:
        await events.close()
    mine = [e for e in seen if e.get("task_id") == task_id]
    assert _statuses(mine, task_id) == ["queued", "running", "succeeded"], mine
    assert all(e["event"] == "task.updated" for e in mine)
    task = await alice.task(task_id)
    assert task["status"] == "succeeded", task
    return task, mine


async def _download(stack: ComposeStack, stored: dict[str, Any]) -> bytes:
    # Presigned for the front door's port on this host, which passes it on to MinIO; fetched with no credentials.
    assert urlsplit(stored["url"]).netloc == urlsplit(stack.main_url).netloc, stored["url"]
    async with httpx.AsyncClient(timeout=60) as anonymous:
        response = await anonymous.get(stored["url"])
    assert response.status_code == 200, response.text[:500]
    assert len(response.content) == stored["size"]
    return response.content


async def test_echo(compose_stack: ComposeStack, alice: Api) -> None:
    message = f"hello from the host {uuid.uuid4().hex[:6]}"
    task, events = await _run_task(alice, "echo", {"message": message})
    text = task["output"]["objects"]["text"]
    assert (await _download(compose_stack, text)).decode() == message
    assert events[-1]["changes"]["output"]["objects"]["text"]["size"] == len(message)
    assert compose_stack.object_keys(f"tasks/{task['id']}/") == [text["key"]]


@pytest.mark.skipif(not integration_present("nanobanana2_image"), reason="integrations/nanobanana2_image is absent")
async def test_nanobanana2_image(compose_stack: ComposeStack, alice: Api) -> None:
    body = {"prompt": f"a lighthouse at dusk {uuid.uuid4().hex[:6]}", "aspect_ratio": "16:9", "image_size": "512"}
    task, _ = await _run_task(alice, "nanobanana2-image", body)
    image = task["output"]["objects"]["image"]
    data = await _download(compose_stack, image)
    assert data.startswith(PNG_SIGNATURE)
    assert compose_stack.object_keys(f"tasks/{task['id']}/") == [image["key"]]


@pytest.mark.skipif(
    not integration_present("fangzhou_video_generation"), reason="integrations/fangzhou_video_generation is absent"
)
async def test_fangzhou_video_generation(compose_stack: ComposeStack, alice: Api) -> None:
    body = {"prompt": f"waves on a beach {uuid.uuid4().hex[:6]}", "duration": 2, "resolution": "480p"}
    task, _ = await _run_task(alice, "fangzhouVideoGeneration", body, timeout=180)
    video = task["output"]["objects"]["video"]
    data = await _download(compose_stack, video)
    assert data[4:8] == b"ftyp", data[:16]
    assert video["key"] in compose_stack.object_keys(f"tasks/{task['id']}/")

    # Ark's callbacks reached main through the front door from the simulator's container (MAIN_PUBLIC_URL is
    # http://front-door:8000).
    script = (
        "import json, sys, urllib.request\n"
        "url = 'http://127.0.0.1:8002/_sim/ark/tasks/' + sys.argv[1]\n"
        "print(urllib.request.urlopen(url, timeout=10).read().decode())\n"
    )
    shown = compose_stack.run("exec", "-T", "simulator", "python", "-c", script, task["provider_task_id"])
    ark_task = json.loads(shown.stdout)
    assert ark_task["callback_url"].startswith("http://front-door:8000/"), ark_task["callback_url"]
    delivered = [c for c in ark_task["callbacks"] if c["delivered"]]
    assert delivered, ark_task["callbacks"]
    assert all(c["last_status_code"] == 200 for c in delivered), delivered

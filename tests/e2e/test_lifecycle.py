"""Task deadlines and the task timeline on the real local stack: main, Temporal, the S3 server, the simulator (Ark's
and Gemini's HTTP contracts) and a worker process for each provider integration."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from deploy.local import LocalStack
from services.shared.discovery import discover
from tests.e2e.test_flow_control import Workers
from tests.stack import Api

pytestmark = pytest.mark.integration

IMAGE = "nanobanana2-image"
VIDEO = "fangzhouVideoGeneration"
FAST_POLL = {"ARK_POLL_INITIAL_SECONDS": "0.5", "ARK_POLL_BACKOFF": "1", "ARK_POLL_MAX_SECONDS": "0.5"}


@pytest.fixture(scope="module")
async def worker(stack: LocalStack, worker_env: dict[str, str]) -> AsyncIterator[Workers]:
    started = Workers(stack, worker_env)
    await started.start(IMAGE)
    await started.start(VIDEO, **FAST_POLL)
    yield started
    for launcher in started.running:
        launcher.kill()


@pytest.fixture
async def sim(stack: LocalStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.simulator_url, timeout=10) as client:
        before = (await client.post("/_sim/config", json={})).json()
        yield client
        # Other tests of this session expect the simulator's timings as they were.
        await client.post("/_sim/config", json={k: before[k] for k in ("ark_queue_seconds", "ark_run_seconds")})


def unique(prompt: str) -> str:
    # The simulator counts attempts per exact prompt, across the whole test session.
    return f"{prompt} ({uuid.uuid4().hex[:8]})"


async def create(api: Api, integration: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.create(integration, body)
    assert response.status_code == 202, response.text
    task: dict[str, Any] = response.json()
    return task


def at(task: dict[str, Any], field: str) -> datetime:
    value = task[field]
    assert value is not None, (field, task)
    return datetime.fromisoformat(value)


async def ark_job(sim: httpx.AsyncClient, provider_task_id: str) -> dict[str, Any]:
    response = await sim.get(f"/_sim/ark/tasks/{provider_task_id}")
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


async def test_a_queued_ark_job_past_its_deadline_is_cancelled_and_the_task_fails(
    worker: Workers, alice: Api, sim: httpx.AsyncClient
) -> None:
    # A job that Ark keeps queued for 30 s: Ark cancels only queued jobs, so at the 8-s deadline it can. The deadline
    # leaves a loaded host time to submit the job before it passes.
    await sim.post("/_sim/config", json={"ark_queue_seconds": 30, "ark_run_seconds": 0})
    task = await create(
        alice, VIDEO, {"prompt": unique("a deadline in the queue"), "duration": 2, "deadline_seconds": 8}
    )
    assert at(task, "deadline_at") - at(task, "created_at") == timedelta(seconds=8)
    failed = await alice.wait_status(task["id"], {"failed", "succeeded", "cancelled"}, timeout=60)
    assert failed["status"] == "failed", failed
    assert (failed["error"]["code"], failed["error"]["retryable"]) == ("deadline_exceeded", True)
    assert failed["error"]["message"].endswith("; Ark dropped the queued job"), failed["error"]
    assert failed["output"] is None
    job = await ark_job(sim, failed["provider_task_id"])
    assert (job["final_status"], job["task"]["status"]) == ("cancelled", "cancelled")
    # Ended at the deadline, not after the job's 30 s.
    assert at(failed, "deadline_at") <= at(failed, "finished_at") < at(failed, "created_at") + timedelta(seconds=30)


async def test_a_running_ark_job_past_its_deadline_fails_the_task_and_runs_on_at_ark(
    worker: Workers, alice: Api, sim: httpx.AsyncClient
) -> None:
    # Running from the start for 30 s: Ark refuses to cancel a running job (409), so it runs on there. The 8-s deadline
    # leaves a loaded host time to submit the job before it passes.
    await sim.post("/_sim/config", json={"ark_queue_seconds": 0, "ark_run_seconds": 30})
    task = await create(alice, VIDEO, {"prompt": unique("a deadline mid-run"), "duration": 2, "deadline_seconds": 8})
    failed = await alice.wait_status(task["id"], {"failed", "succeeded", "cancelled"}, timeout=60)
    assert failed["status"] == "failed", failed
    assert failed["error"]["code"] == "deadline_exceeded"
    assert failed["error"]["message"].endswith("; Ark was already generating the video and cannot stop a running job")
    job = await ark_job(sim, failed["provider_task_id"])
    assert job["task"]["status"] == "running"
    assert at(failed, "finished_at") < at(failed, "created_at") + timedelta(seconds=30)


async def test_an_image_call_past_its_deadline_is_cancelled_and_the_task_fails(worker: Workers, alice: Api) -> None:
    # Gemini answers after 10 s; the task may take 2.
    task = await create(alice, IMAGE, {"prompt": unique("a slow picture [sim:slow=10]"), "deadline_seconds": 2})
    failed = await alice.wait_status(task["id"], {"failed", "succeeded"}, timeout=60)
    assert failed["status"] == "failed", failed
    assert (failed["error"]["code"], failed["error"]["retryable"]) == ("deadline_exceeded", True)
    assert failed["error"]["message"].endswith("; the provider call in flight was cancelled")
    assert failed["output"] is None
    assert at(failed, "created_at") <= at(failed, "started_at") <= at(failed, "finished_at")
    assert at(failed, "finished_at") < at(failed, "created_at") + timedelta(seconds=10)
    assert failed["provider_attempts"] == 1


async def test_a_deadline_out_of_bounds_is_refused_naming_the_field(alice: Api) -> None:
    maximum = {i.name: i.manifest.deadline.max_seconds for i in discover().integrations}
    for integration, body in ((IMAGE, {"prompt": "p"}), (VIDEO, {"prompt": "p", "duration": 2})):
        for deadline in (maximum[integration] + 1, 0, -5):
            response = await alice.create(integration, {**body, "deadline_seconds": deadline})
            assert response.status_code == 422, (integration, deadline, response.text)
            error = response.json()
            assert error["code"] == "invalid_input"
            assert error["details"] == {"field": "deadline_seconds", "max_seconds": maximum[integration]}
            assert error["message"].startswith("deadline_seconds: ")


async def test_an_idempotency_key_is_bound_to_the_deadline(worker: Workers, alice: Api) -> None:
    key = uuid.uuid4().hex
    body = {"prompt": unique("one picture"), "image_size": "512", "deadline_seconds": 60}
    first = await alice.create(IMAGE, body, **{"Idempotency-Key": key})
    again = await alice.create(IMAGE, body, **{"Idempotency-Key": key})
    other = await alice.create(IMAGE, {**body, "deadline_seconds": 61}, **{"Idempotency-Key": key})
    assert (first.status_code, again.status_code, other.status_code) == (202, 202, 409)
    assert again.json()["id"] == first.json()["id"]
    assert other.json()["code"] == "idempotency_conflict"


async def test_the_timeline_is_set_in_order_and_counts_each_attempt(worker: Workers, alice: Api) -> None:
    default = {i.name: i.manifest.deadline.default_seconds for i in discover().integrations}
    # One failed generateContent, then a success: two attempts of the call.
    image = await create(alice, IMAGE, {"prompt": unique("a lighthouse [sim:500x1]"), "image_size": "512"})
    # One refused submit (429), then an accepted one: two submits.
    video = await create(alice, VIDEO, {"prompt": unique("waves [sim:429x1]"), "duration": 2})
    for task in (image, video):
        assert (task["started_at"], task["finished_at"], task["provider_attempts"]) == (None, None, 0)
    for task, integration in ((image, IMAGE), (video, VIDEO)):
        done = await alice.wait_status(task["id"], {"succeeded", "failed", "cancelled"}, timeout=90)
        assert done["status"] == "succeeded", done
        assert at(done, "created_at") <= at(done, "started_at") <= at(done, "finished_at")
        assert at(done, "deadline_at") - at(done, "created_at") == timedelta(seconds=default[integration])
        assert done["provider_attempts"] == 2
        own = (await alice.http.get(f"/api/integrations/{integration}/tasks/{task['id']}")).json()
        listed = (await alice.http.get("/api/tasks", params={"integration": integration, "limit": 100})).json()
        [in_list] = [t for t in listed["items"] if t["id"] == task["id"]]
        timeline = ("deadline_at", "started_at", "finished_at", "provider_attempts")
        assert {k: own[k] for k in timeline} == {k: in_list[k] for k in timeline} == {k: done[k] for k in timeline}


async def test_the_openapi_schema_describes_the_deadline_and_the_timeline(stack: LocalStack) -> None:
    async with httpx.AsyncClient(base_url=stack.main_url, timeout=10) as http:
        schema = (await http.get("/docs/openapi.json")).json()
    components = schema["components"]["schemas"]
    task = components["TaskRead"]
    for field in ("deadline_at", "started_at", "finished_at", "provider_attempts"):
        assert field in task["properties"] and field in task["required"], field
    create_body = schema["paths"][f"/api/integrations/{IMAGE}/tasks"]["post"]["requestBody"]["content"]
    body_ref = create_body["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert "deadline_seconds" in components[body_ref]["properties"]

"""The activities and the Ark client against the provider simulator (in process, on a fake clock), the request
mapping and the settings."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from integrations.fangzhou_video_generation.schemas import VideoCopy, VideoRequest, VideoSubmit
from integrations.fangzhou_video_generation.workflows.activities import FangzhouActivities
from integrations.fangzhou_video_generation.workflows.provider import (
    SIMULATOR_API_KEY,
    ArkClient,
    ArkSettings,
    create_body,
)
from services.shared import activity_kit
from services.shared.activity_kit import ActivityKit
from services.shared.settings import Env, SettingsError
from services.shared.storage import ObjectStore
from services.shared.submit_poll import CancelOutcome, JobRef, PollPolicy
from services.shared.tasks import TaskEnvelope, TaskReport
from services.simulator.app import create_app
from services.simulator.config import RuntimeConfig, SimulatorSettings
from services.simulator.media import encode_png, render_rows
from tests.fakes import MemoryStore, Reports
from tests.simulator.helpers import FakeClock

SIM = "http://testserver.local"
PNG = encode_png(8, 8, render_rows(8, 8, (10, 20, 30), (200, 100, 50), 2))
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
TASKS = "/api/v3/contents/generations/tasks"
TASK = TaskEnvelope("t1")

Client = AsyncTestClient[Litestar]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[Client]:
    settings = SimulatorSettings(runtime=RuntimeConfig(ark_queue_seconds=10, ark_run_seconds=20, hang_seconds=0.2))
    async with AsyncTestClient(create_app(settings, clock=clock)) as client:
        yield client


def settings(**overrides: Any) -> ArkSettings:
    values: dict[str, Any] = {"base_url": SIM, "api_key": SIMULATOR_API_KEY, **overrides}
    return ArkSettings(**values)


def activities_for(
    http: httpx.AsyncClient,
    ark_settings: ArkSettings,
    store: ObjectStore | None = None,
    reports: Reports | None = None,
) -> FangzhouActivities:
    kit = ActivityKit(store or MemoryStore(), reports or Reports())
    return FangzhouActivities(kit, ArkClient(http, ark_settings), ark_settings)


async def submit(acts: FangzhouActivities, request: VideoRequest, callback_url: str | None = None) -> str:
    submitted = await ActivityEnvironment().run(acts.submit, VideoSubmit(TASK, request, callback_url, None))
    return submitted.provider_task_id


def job(provider_task_id: str) -> JobRef:
    return JobRef(TASK, provider_task_id)


async def failure(coro: Any) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await coro
    return caught.value


async def inspect(sim: Client, provider_task_id: str) -> dict[str, Any]:
    response = await sim.get(f"/_sim/ark/tasks/{provider_task_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- request mapping and settings -----------------------------------------------------------------------------


def test_create_body_maps_every_field() -> None:
    request = VideoRequest(
        prompt="a fox in snow",
        first_frame="https://example.com/a.png",
        last_frame=PNG_URL,
        ratio="9:16",
        duration=8,
        resolution="720p",
        seed=7,
        watermark=False,
        camera_fixed=True,
        return_last_frame=True,
    )
    assert create_body(request, "m-1", "https://main.example/cb?secret=s", 7200) == {
        "model": "m-1",
        "content": [
            {"type": "text", "text": "a fox in snow"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}, "role": "first_frame"},
            {"type": "image_url", "image_url": {"url": PNG_URL}, "role": "last_frame"},
        ],
        "execution_expires_after": 7200,
        "ratio": "9:16",
        "duration": 8,
        "resolution": "720p",
        "seed": 7,
        "watermark": False,
        "camera_fixed": True,
        "return_last_frame": True,
        "callback_url": "https://main.example/cb?secret=s",
    }
    minimal = create_body(VideoRequest(prompt="p", reference_images=("https://x/1.png",)), "m", None, 3600)
    assert minimal == {
        "model": "m",
        "content": [
            {"type": "text", "text": "p"},
            {"type": "image_url", "image_url": {"url": "https://x/1.png"}, "role": "reference_image"},
        ],
        "execution_expires_after": 3600,
    }


def test_settings_from_env() -> None:
    with pytest.raises(SettingsError, match="ARK_API_KEY"):
        ArkSettings.from_env(Env({}))
    simulated = ArkSettings.from_env(Env({"ARK_BASE_URL": "http://127.0.0.1:8002/"}))
    assert (simulated.base_url, simulated.api_key) == ("http://127.0.0.1:8002", SIMULATOR_API_KEY)
    real = ArkSettings.from_env(
        Env({"ARK_API_KEY": "secret-key", "ARK_POLL_INITIAL_SECONDS": "2", "ARK_DEADLINE_SECONDS": "600"})
    )
    assert real.base_url == "https://ark.cn-beijing.volces.com"
    assert real.model == "doubao-seedance-1-0-pro-250528"
    assert real.poll == PollPolicy(initial_seconds=2, deadline_seconds=600)
    assert "secret-key" not in repr(real)
    with pytest.raises(SettingsError, match="backoff"):
        ArkSettings.from_env(Env({"ARK_API_KEY": "k", "ARK_POLL_BACKOFF": "0.5"}))


# --- submit ---------------------------------------------------------------------------------------------------


async def test_submit_sends_ark_the_request_and_reports_running(sim: Client) -> None:
    reports = Reports()
    acts = activities_for(sim, settings(poll=PollPolicy(deadline_seconds=7200)), reports=reports)
    request = VideoRequest(
        prompt="a kite over dunes",
        first_frame=PNG_URL,
        ratio="adaptive",
        duration=3,
        resolution="480p",
        seed=11,
        return_last_frame=True,
    )
    provider_task_id = await submit(acts, request, "http://127.0.0.1:9/cb?secret=s")
    seen = await inspect(sim, provider_task_id)
    assert seen["prompt"] == "a kite over dunes"
    assert seen["callback_url"] == "http://127.0.0.1:9/cb?secret=s"
    task = seen["task"]
    assert (task["model"], task["ratio"], task["duration"], task["resolution"], task["seed"]) == (
        "doubao-seedance-1-0-pro-250528",
        "1:1",  # adaptive follows the square first frame
        3,
        "480p",
        11,
    )
    assert task["execution_expires_after"] == 7200
    # The submit is what tells main the task is running, with Ark's id.
    assert reports.reports == [TaskReport(status="running", progress=0.0, provider_task_id=provider_task_id)]


async def test_submit_maps_ark_errors(sim: Client) -> None:
    acts = activities_for(sim, settings())
    limited = await failure(submit(acts, VideoRequest(prompt="busy [sim:429]")))
    assert (limited.type, limited.non_retryable) == ("RateLimitExceeded.EndpointRPMExceeded", False)
    overloaded = await failure(submit(acts, VideoRequest(prompt="busy [sim:500]")))
    assert (overloaded.type, overloaded.non_retryable) == ("InternalServiceError", False)
    invalid = await failure(submit(acts, VideoRequest(prompt="p", model="doubao-seedance-1-5-pro-251215", duration=2)))
    assert (invalid.type, invalid.non_retryable) == ("InvalidParameter", True)
    assert "duration" in invalid.message
    unknown = await failure(submit(acts, VideoRequest(prompt="p", model="no-such-model")))
    assert (unknown.type, unknown.non_retryable) == ("InvalidEndpointOrModel.NotFound", True)
    unauthorized = await failure(submit(activities_for(sim, settings(api_key="wrong")), VideoRequest(prompt="p")))
    assert (unauthorized.type, unauthorized.non_retryable) == ("AuthenticationError", True)
    # A gateway timeout or an unreadable 200 may hide a created task: never retried.
    for tag in ("[sim:hang]", "[sim:malformed]"):
        uncertain = await failure(submit(acts, VideoRequest(prompt=f"p {tag}")))
        assert (uncertain.type, uncertain.non_retryable) == ("ark_submit_uncertain", True), tag
    stats = (await sim.get("/_sim/stats")).json()
    assert stats["ark_tasks"] == {}, "none of these requests may have created a task"


async def test_submit_transport_failures() -> None:
    async with httpx.AsyncClient() as http:
        # Nothing listens on port 9 (discard): the request is never sent, so a retry is safe.
        refused = activities_for(http, settings(base_url="http://127.0.0.1:9"))
        unreachable = await failure(submit(refused, VideoRequest(prompt="p")))
        assert (unreachable.type, unreachable.non_retryable) == ("ark_unreachable", False)

        # A server that reads the request and never answers: Ark may have created the task.
        received = asyncio.Event()

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            received.set()
            await reader.read()
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            slow = activities_for(http, settings(base_url=f"http://127.0.0.1:{port}", request_timeout_seconds=0.3))
            uncertain = await failure(submit(slow, VideoRequest(prompt="p")))
        finally:
            server.close()
        assert received.is_set()
        assert (uncertain.type, uncertain.non_retryable) == ("ark_submit_uncertain", True)


# --- query and cancel -----------------------------------------------------------------------------------------


async def test_query_follows_the_task(sim: Client, clock: FakeClock) -> None:
    acts = activities_for(sim, settings())
    provider_task_id = await submit(acts, VideoRequest(prompt="rain on a window", duration=2, return_last_frame=True))
    query = job(provider_task_id)
    env = ActivityEnvironment()
    assert (await env.run(acts.query, query)).status == "queued"
    clock.advance(15)
    assert (await env.run(acts.query, query)).status == "running"
    clock.advance(20)
    done = await env.run(acts.query, query)
    assert done.status == "succeeded"
    assert done.video_url == f"{SIM}/_media/{provider_task_id}.mp4?X-Sim-Expires={int(clock.now - 5 + 86400)}"
    assert done.last_frame_url is not None and done.last_frame_url.startswith(f"{SIM}/_media/{provider_task_id}-last")
    assert (done.model, done.duration, done.ratio, done.resolution, done.framespersecond) == (
        "doubao-seedance-1-0-pro-250528",
        2,
        "16:9",
        "1080p",
        24,
    )
    assert done.seed is not None and done.usage["total_tokens"] > 0


async def test_query_maps_failures(sim: Client, clock: FakeClock) -> None:
    acts = activities_for(sim, settings())
    env = ActivityEnvironment()
    failed_id = await submit(acts, VideoRequest(prompt="x [sim:fail=InputTextSensitiveContentDetected]"))
    clock.advance(60)
    failed = await env.run(acts.query, job(failed_id))
    assert (failed.status, failed.error_code) == ("failed", "InputTextSensitiveContentDetected")
    assert failed.error_message and "sensitive" in failed.error_message

    fault = {"provider": "ark", "kind": "429", "route": "get_task", "error_code": "ServerOverloaded"}
    assert (await sim.post("/_sim/faults", json=fault)).status_code in (200, 201)
    limited = await failure(env.run(acts.query, job(failed_id)))
    assert (limited.type, limited.non_retryable) == ("ServerOverloaded", False)
    missing = await failure(env.run(acts.query, job("cgt-20200101000000-nope0")))
    assert (missing.type, missing.non_retryable) == ("ResourceNotFound", True)


async def test_cancel_deletes_only_queued_jobs(sim: Client, clock: FakeClock) -> None:
    acts = activities_for(sim, settings())
    env = ActivityEnvironment()
    queued = await submit(acts, VideoRequest(prompt="queued one"))
    assert await env.run(acts.cancel, job(queued)) == CancelOutcome(True, "cancelled")
    assert (await inspect(sim, queued))["final_status"] == "cancelled"

    running = await submit(acts, VideoRequest(prompt="running one"))
    clock.advance(15)
    assert await env.run(acts.cancel, job(running)) == CancelOutcome(False, "running")
    clock.advance(60)
    # A finished job is left alone: DELETE would erase its record and its video link.
    assert await env.run(acts.cancel, job(running)) == CancelOutcome(False, "succeeded")
    assert (await sim.get(f"{TASKS}/{running}", headers={"Authorization": "Bearer sim-ark-key"})).status_code == 200
    gone = await env.run(acts.cancel, job("cgt-20200101000000-nope0"))
    assert gone == CancelOutcome(False, "not_found")


# --- copy to storage (real S3 server from the local stack) -------------------------------------------------


@pytest.mark.integration
async def test_copy_streams_video_and_last_frame_into_storage(
    sim: Client, clock: FakeClock, objects: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Spill to disk after 4 KiB, so the upload reads from a real temporary file.
    monkeypatch.setattr(activity_kit, "SPOOL_BYTES", 4096)
    acts = activities_for(sim, settings(), objects)
    env = ActivityEnvironment()
    provider_task_id = await submit(acts, VideoRequest(prompt="a lantern", duration=2, return_last_frame=True))
    clock.advance(60)
    done = await env.run(acts.query, job(provider_task_id))
    assert done.video_url is not None
    task_id = str(uuid.uuid4())
    copied = await env.run(acts.copy_result, VideoCopy(TaskEnvelope(task_id), done))

    video, frame = copied.objects["video"], copied.objects["last_frame"]
    assert (video.key, video.content_type) == (f"tasks/{task_id}/video.mp4", "video/mp4")
    assert (frame.key, frame.content_type) == (f"tasks/{task_id}/last_frame.png", "image/png")
    stored_video = await objects.get_bytes(video.key)
    assert stored_video == (await sim.get(done.video_url)).content
    assert len(stored_video) == video.size > 4096
    assert stored_video[4:8] == b"ftyp"
    stored_frame = await objects.get_bytes(frame.key)
    assert stored_frame.startswith(b"\x89PNG") and len(stored_frame) == frame.size

    # Copying again (a retried attempt) overwrites the same keys.
    await env.run(acts.copy_result, VideoCopy(TaskEnvelope(task_id), done))
    assert sorted(await objects.list_keys(f"tasks/{task_id}/")) == [frame.key, video.key]


@pytest.mark.integration
async def test_copy_failures_are_final(sim: Client, clock: FakeClock, objects: ObjectStore) -> None:
    env = ActivityEnvironment()
    acts = activities_for(sim, settings(max_video_bytes=1000), objects)
    provider_task_id = await submit(acts, VideoRequest(prompt="a lantern", duration=2))
    clock.advance(60)
    done = await env.run(acts.query, job(provider_task_id))
    assert done.video_url is not None
    task_id = str(uuid.uuid4())
    too_large = await failure(env.run(acts.copy_result, VideoCopy(TaskEnvelope(task_id), done)))
    assert (too_large.type, too_large.non_retryable) == ("ark_media_too_large", True)
    clock.advance(86400 + 60)
    expired = await failure(env.run(acts.copy_result, VideoCopy(TaskEnvelope(task_id), done)))
    assert (expired.type, expired.non_retryable) == ("ark_media_unavailable", True)
    assert await objects.list_keys(f"tasks/{task_id}/") == []

"""The activities and the Ark client against the provider simulator (in process, on a fake clock; served on a port
where the copy fetches its media links), the request mapping and the settings, and the outbound rules the copy keeps
to."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from integrations.fangzhou_video_generation.schemas import ArkTaskView, VideoCopy, VideoRequest, VideoSubmit
from integrations.fangzhou_video_generation.workflows.activities import FangzhouActivities
from integrations.fangzhou_video_generation.workflows.provider import ArkClient, ArkSettings, create_body
from services.shared import activity_kit
from services.shared.activity_kit import ActivityKit
from services.shared.discovery import discover
from services.shared.outbound import Outbound, OutboundRules
from services.shared.settings import Env, ProviderEndpoint, SettingsError
from services.shared.storage import ObjectStore
from services.shared.submit_poll import CancelOutcome, JobRef, PollPolicy
from services.shared.tasks import TaskEnvelope, TaskReport
from services.simulator.app import create_app
from services.simulator.config import RuntimeConfig, SimulatorSettings
from services.simulator.media import encode_png, render_rows
from tests.fakes import MemoryStore, Reports
from tests.simulator.helpers import FakeClock
from tests.stack import serve

SIM = "http://testserver.local"
SIM_KEY = "sim-ark-key"
PNG = encode_png(8, 8, render_rows(8, 8, (10, 20, 30), (200, 100, 50), 2))
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
TASKS = "/api/v3/contents/generations/tasks"
TASK = TaskEnvelope("t1")

Client = AsyncTestClient[Litestar]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


SIM_SETTINGS = SimulatorSettings(runtime=RuntimeConfig(ark_queue_seconds=10, ark_run_seconds=20, hang_seconds=0.2))


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[Client]:
    async with AsyncTestClient(create_app(SIM_SETTINGS, clock=clock)) as client:
        yield client


@dataclass
class Served:
    """The simulator on a port of 127.0.0.1, as the copy reaches it: over the network, through the outbound rules
    that allow it (as the local stack's do)."""

    url: str
    http: httpx.AsyncClient
    outbound: Outbound


@pytest.fixture
async def served(clock: FakeClock) -> AsyncIterator[Served]:
    async with serve(create_app(SIM_SETTINGS, clock=clock)) as url, httpx.AsyncClient(base_url=url) as http:
        outbound = Outbound(OutboundRules(allow_http=True, allowed_hosts=(url.removeprefix("http://"),)))
        try:
            yield Served(url, http, outbound)
        finally:
            await outbound.aclose()


def settings(base_url: str = SIM, api_key: str = SIM_KEY, **overrides: Any) -> ArkSettings:
    return ArkSettings(ProviderEndpoint(base_url, api_key), **overrides)


def activities_for(
    http: httpx.AsyncClient,
    ark_settings: ArkSettings,
    store: ObjectStore | None = None,
    reports: Reports | None = None,
    outbound: Outbound | None = None,
) -> FangzhouActivities:
    kit = ActivityKit(store or MemoryStore(), reports or Reports(), outbound=outbound)
    return FangzhouActivities(kit, ArkClient(http, ark_settings), ark_settings)


async def submit(acts: FangzhouActivities, request: VideoRequest) -> str:
    submitted = await ActivityEnvironment().run(acts.submit, VideoSubmit(TASK, request, None))
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
    provider = discover().get("fangzhouVideoGeneration").manifest.provider
    assert provider is not None
    with pytest.raises(SettingsError, match=r"ARK_API_KEY .*PROVIDER_SIMULATOR_URL"):
        ProviderEndpoint.from_env(Env({"ARK_BASE_URL": "http://127.0.0.1:8002"}), provider)
    simulated = ProviderEndpoint.from_env(Env({"PROVIDER_SIMULATOR_URL": "http://127.0.0.1:8002/"}), provider)
    assert simulated == ProviderEndpoint("http://127.0.0.1:8002", SIM_KEY, simulated=True)
    endpoint = ProviderEndpoint.from_env(Env({"ARK_API_KEY": "secret-key"}), provider)
    assert endpoint == ProviderEndpoint("https://ark.cn-beijing.volces.com", "secret-key")
    real = ArkSettings.from_env(Env({"ARK_POLL_INITIAL_SECONDS": "2", "ARK_DEADLINE_SECONDS": "600"}), endpoint)
    assert real.model == "doubao-seedance-1-0-pro-250528"
    assert real.poll == PollPolicy(initial_seconds=2, deadline_seconds=600)
    assert (real.request_timeout_seconds, real.media_timeout_seconds) == (30.0, 60.0)
    assert "secret-key" not in repr(real)
    with pytest.raises(SettingsError, match="backoff"):
        ArkSettings.from_env(Env({"ARK_POLL_BACKOFF": "0.5"}), endpoint)
    with pytest.raises(SettingsError, match="ARK_MEDIA_TIMEOUT_SECONDS"):
        ArkSettings.from_env(Env({"ARK_MEDIA_TIMEOUT_SECONDS": "0"}), endpoint)


# --- submit ---------------------------------------------------------------------------------------------------


async def test_submit_sends_ark_the_request_and_reports_running(sim: Client) -> None:
    reports = Reports()
    # main's callback URL for the task, which the submit asks for.
    reports.callback_urls[TASK.id] = "http://127.0.0.1:9/cb?secret=s"
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
    provider_task_id = await submit(acts, request)
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
    assert reports.reports == [
        TaskReport(status="running", progress=0.0, provider_task_id=provider_task_id, provider_attempts=1)
    ]

    # A task main gives no callback URL is submitted without one.
    without = await inspect(sim, await submit(activities_for(sim, settings()), VideoRequest(prompt="no callback")))
    assert without["callback_url"] is None


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


async def finished(served: Served, clock: FakeClock, acts: FangzhouActivities, request: VideoRequest) -> ArkTaskView:
    """A job the simulator has finished: its view with the media links."""
    provider_task_id = await submit(acts, request)
    clock.advance(60)
    done = await ActivityEnvironment().run(acts.query, job(provider_task_id))
    assert done.status == "succeeded" and done.video_url is not None
    assert done.video_url.startswith(f"{served.url}/_media/")
    return done


@pytest.mark.integration
async def test_copy_streams_video_and_last_frame_into_storage(
    served: Served, clock: FakeClock, objects: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Spill to disk after 4 KiB, so the upload reads from a real temporary file.
    monkeypatch.setattr(activity_kit, "SPOOL_BYTES", 4096)
    acts = activities_for(served.http, settings(served.url), objects, outbound=served.outbound)
    env = ActivityEnvironment()
    done = await finished(served, clock, acts, VideoRequest(prompt="a lantern", duration=2, return_last_frame=True))
    task_id = str(uuid.uuid4())
    copied = await env.run(acts.copy_result, VideoCopy(TaskEnvelope(task_id), done))

    video, frame = copied.objects["video"], copied.objects["last_frame"]
    assert (video.key, video.content_type) == (f"tasks/{task_id}/video.mp4", "video/mp4")
    assert (frame.key, frame.content_type) == (f"tasks/{task_id}/last_frame.png", "image/png")
    stored_video = await objects.get_bytes(video.key)
    assert done.video_url is not None
    assert stored_video == (await served.http.get(done.video_url)).content
    assert len(stored_video) == video.size > 4096
    assert stored_video[4:8] == b"ftyp"
    stored_frame = await objects.get_bytes(frame.key)
    assert stored_frame.startswith(b"\x89PNG") and len(stored_frame) == frame.size

    # Copying again (a retried attempt) overwrites the same keys.
    await env.run(acts.copy_result, VideoCopy(TaskEnvelope(task_id), done))
    assert sorted(await objects.list_keys(f"tasks/{task_id}/")) == [frame.key, video.key]


@pytest.mark.integration
async def test_copy_failures_are_final(served: Served, clock: FakeClock, objects: ObjectStore) -> None:
    env = ActivityEnvironment()
    acts = activities_for(served.http, settings(served.url, max_video_bytes=1000), objects, outbound=served.outbound)
    done = await finished(served, clock, acts, VideoRequest(prompt="a lantern", duration=2))
    task_id = str(uuid.uuid4())
    too_large = await failure(env.run(acts.copy_result, VideoCopy(TaskEnvelope(task_id), done)))
    assert (too_large.type, too_large.non_retryable) == ("ark_media_too_large", True)
    clock.advance(86400 + 60)
    expired = await failure(env.run(acts.copy_result, VideoCopy(TaskEnvelope(task_id), done)))
    assert (expired.type, expired.non_retryable) == ("ark_media_unavailable", True)
    assert await objects.list_keys(f"tasks/{task_id}/") == []


@pytest.fixture
async def redirector() -> AsyncIterator[tuple[str, list[str]]]:
    """A plain-http server on 127.0.0.1 that answers every request with a redirect to the URL in its path
    (``/to/<url>``); the request lines it saw."""
    seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = (await reader.readline()).decode()
        await reader.readuntil(b"\r\n\r\n")
        seen.append(line.strip())
        target = line.split(" ")[1].removeprefix("/to/")
        writer.write(f"HTTP/1.1 302 Found\r\nlocation: {target}\r\ncontent-length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}", seen


async def test_copy_refuses_links_to_our_own_networks_with_a_final_code(
    served: Served, redirector: tuple[str, list[str]]
) -> None:
    """The production rules (https to public addresses only, no allowed hosts), except where a case needs plain
    http to reach a local server first; every refusal fails the copy at once, and nothing is stored."""
    origin, seen = redirector
    port = origin.partition(":")[2]
    production = OutboundRules()
    # Plain http allowed, to show the address check on its own; nothing allowed by host.
    http_only = OutboundRules(allow_http=True)
    # The local redirector is allowed (as the simulator is in the local stack); where it sends the copy is not.
    redirecting = OutboundRules(allow_http=True, allowed_hosts=(origin,))
    cases = {
        "loopback": (http_only, f"http://127.0.0.1:{port}/video.mp4", "ark_media_url_not_allowed"),
        "loopback, production rules": (production, f"http://127.0.0.1:{port}/video.mp4", "ark_media_url_not_allowed"),
        "the metadata address": (http_only, "http://169.254.169.254/latest/meta-data/", "ark_media_url_not_allowed"),
        "plain http to a public address": (production, "http://93.184.216.34/video.mp4", "ark_media_url_not_allowed"),
        "https to a name that resolves to loopback": (
            production,
            f"https://localhost:{port}/video.mp4",
            "ark_media_url_not_allowed",
        ),
        "a redirect to the metadata address": (
            redirecting,
            f"http://{origin}/to/http://169.254.169.254/latest/meta-data/",
            "ark_media_url_not_allowed",
        ),
        "a redirect to a private address": (
            redirecting,
            f"http://{origin}/to/https://10.1.2.3/video.mp4",
            "ark_media_url_not_allowed",
        ),
        "a redirect to a name for loopback": (
            redirecting,
            f"http://{origin}/to/http://localhost:{port}/video.mp4",
            "ark_media_url_not_allowed",
        ),
    }
    for what, (rules, url, code) in cases.items():
        store = MemoryStore()
        outbound = Outbound(rules)
        try:
            acts = activities_for(served.http, settings(served.url), store, outbound=outbound)
            view = ArkTaskView(id="cgt-1", status="succeeded", video_url=url)
            refused = await failure(ActivityEnvironment().run(acts.copy_result, VideoCopy(TASK, view)))
        finally:
            await outbound.aclose()
        assert (refused.type, refused.non_retryable) == (code, True), (what, refused.message)
        assert "Ark's media link" in refused.message, what
        assert store.objects == {}, what
    # Only the allowed redirector was ever asked, once per redirect case: nothing reached a refused address.
    assert len(seen) == 3 and all(line.startswith("GET /to/") for line in seen)

"""The generate activity against the provider simulator (served in process, recording what it receives) and the
stack's real S3 server."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import msgspec
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from integrations.nanobanana2_image.schemas import GeneratedImage, GenerateInput, ImageJob, InlineImage
from integrations.nanobanana2_image.workflows.activities import ImageActivities
from integrations.nanobanana2_image.workflows.provider import GeminiClient, GeminiSettings
from services.shared.activity_kit import ActivityKit
from services.shared.settings import ProviderEndpoint, StorageSettings
from services.shared.storage import ObjectStore
from services.shared.tasks import TaskEnvelope
from services.simulator.config import RuntimeConfig, SimulatorSettings
from services.simulator.media import encode_png, gemini_image_size, render_rows
from tests.fakes import Reports
from tests.stack import wait_for

from .helpers import SimulatorServer, png_dimensions_checked

pytestmark = pytest.mark.integration

MODEL = "gemini-3.1-flash-image-preview"
REFERENCE = encode_png(8, 8, render_rows(8, 8, (200, 10, 10), (10, 10, 200), 2))


@pytest.fixture(scope="module")
async def simulator() -> AsyncIterator[SimulatorServer]:
    settings = SimulatorSettings(runtime=RuntimeConfig(hang_seconds=60, gemini_retry_delay_seconds=1.5))
    async with SimulatorServer(settings) as server:
        yield server


@pytest.fixture
async def sim(simulator: SimulatorServer) -> SimulatorServer:
    await simulator.reset()
    return simulator


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def activities(
    http: httpx.AsyncClient,
    store: ObjectStore,
    base_url: str,
    *,
    api_key: str = "sim-gemini-key",
    model: str = MODEL,
    timeout: float = 30.0,
    heartbeat_seconds: float = 2.0,
    reports: Reports | None = None,
) -> ImageActivities:
    settings = GeminiSettings(ProviderEndpoint(base_url, api_key), model=model, timeout_seconds=timeout)
    client = GeminiClient(http, settings)
    return ImageActivities(ActivityKit(store, reports or Reports(), heartbeat_seconds), client)


def generate_input(task_id: str, image_job: ImageJob) -> GenerateInput:
    return GenerateInput(TaskEnvelope(task_id), image_job)


def job(prompt: str, aspect_ratio: str = "16:9", image_size: str = "2K", *refs: bytes) -> ImageJob:
    images = tuple(InlineImage("image/png", base64.b64encode(r).decode()) for r in refs)
    return ImageJob(prompt, aspect_ratio, image_size, images)


async def fails(run: ImageActivities, input: GenerateInput) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(run.generate, input)
    return caught.value


async def test_generates_stores_and_returns_only_where_the_image_is(
    sim: SimulatorServer, http: httpx.AsyncClient, objects: ObjectStore
) -> None:
    task_id = str(uuid.uuid4())
    input = generate_input(task_id, job("a lighthouse at dusk", "16:9", "2K", REFERENCE))
    reports = Reports()
    result = await ActivityEnvironment().run(activities(http, objects, sim.url, reports=reports).generate, input)
    # The activity that calls Gemini is the one that tells main the task is running.
    assert reports.statuses() == ["running"]

    (request,) = sim.recording.requests
    assert (request.method, request.path, request.query) == ("POST", f"/v1beta/models/{MODEL}:generateContent", "")
    assert request.headers["x-goog-api-key"] == "sim-gemini-key"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.body) == {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "a lighthouse at dusk"},
                    {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(REFERENCE).decode()}},
                ],
            }
        ],
        "generationConfig": {
            "responseModalities": ["TEXT", "IMAGE"],
            "imageConfig": {"aspectRatio": "16:9", "imageSize": "2K"},
        },
    }

    key = f"tasks/{task_id}/image.png"
    assert result.image.key == key
    assert result.image.content_type == "image/png"
    assert (result.width, result.height) == gemini_image_size("16:9", "2K")
    assert result.model_version == MODEL
    assert result.text is not None and "a lighthouse at dusk" in result.text
    assert result.usage is not None and result.usage.total_tokens
    # Only the object's key and metadata travel through Temporal.
    assert len(msgspec.json.encode(result)) < 1000

    assert await objects.list_keys(f"tasks/{task_id}/") == [key]
    download = await http.get(objects.presigned_get(key))
    assert download.status_code == 200
    assert download.headers["content-type"] == "image/png"
    assert len(download.content) == result.image.size
    assert png_dimensions_checked(download.content) == gemini_image_size("16:9", "2K")


async def test_a_retried_attempt_overwrites_the_same_object(
    sim: SimulatorServer, http: httpx.AsyncClient, objects: ObjectStore
) -> None:
    task_id = str(uuid.uuid4())
    run = activities(http, objects, sim.url)
    first = await ActivityEnvironment().run(run.generate, generate_input(task_id, job("a red apple", "1:1", "512")))
    second = await ActivityEnvironment().run(run.generate, generate_input(task_id, job("a red apple", "1:1", "512")))
    assert first.image.key == second.image.key
    assert await objects.list_keys(f"tasks/{task_id}/") == [first.image.key]
    assert len(sim.recording.requests) == 2


async def test_heartbeats_while_the_provider_is_working(
    sim: SimulatorServer, http: httpx.AsyncClient, objects: ObjectStore
) -> None:
    env = ActivityEnvironment()
    heartbeats: list[tuple[object, ...]] = []
    env.on_heartbeat = lambda *details: heartbeats.append(details)
    run = activities(http, objects, sim.url, heartbeat_seconds=0.05)
    result = await env.run(run.generate, generate_input(str(uuid.uuid4()), job("slowly [sim:slow=1]")))
    assert isinstance(result, GeneratedImage)
    assert len(heartbeats) >= 10


@pytest.mark.parametrize(
    ("tag", "code", "words", "retry_delay"),
    [
        ("[sim:429]", "provider_unavailable", "HTTP 429 RESOURCE_EXHAUSTED", timedelta(seconds=1.5)),
        ("[sim:500]", "provider_unavailable", "HTTP 500 INTERNAL", None),
        ("[sim:503]", "provider_unavailable", "HTTP 503 UNAVAILABLE: The model is overloaded", None),
        ("[sim:malformed]", "provider_unavailable", "malformed answer", None),
    ],
)
async def test_transient_faults_are_retryable_errors(
    sim: SimulatorServer,
    http: httpx.AsyncClient,
    objects: ObjectStore,
    tag: str,
    code: str,
    words: str,
    retry_delay: timedelta | None,
) -> None:
    task_id = str(uuid.uuid4())
    error = await fails(activities(http, objects, sim.url), generate_input(task_id, job(f"a cat {tag}")))
    assert error.type == code
    assert error.non_retryable is False
    assert words in error.message
    assert error.next_retry_delay == retry_delay
    assert await objects.list_keys(f"tasks/{task_id}/") == []


@pytest.mark.parametrize(
    ("tag", "code", "words"),
    [
        ("[sim:blocked]", "blocked_prompt", "blocked the prompt (blockReason SAFETY)"),
        ("[sim:blocked=PROHIBITED_CONTENT]", "blocked_prompt", "(blockReason PROHIBITED_CONTENT)"),
        ("[sim:image_safety]", "image_blocked", "withheld the image (finishReason IMAGE_SAFETY)"),
        ("[sim:no_image]", "no_image", "no image (finishReason NO_IMAGE): I couldn't make an image"),
    ],
)
async def test_blocked_and_imageless_answers_are_final_errors(
    sim: SimulatorServer, http: httpx.AsyncClient, objects: ObjectStore, tag: str, code: str, words: str
) -> None:
    task_id = str(uuid.uuid4())
    error = await fails(activities(http, objects, sim.url), generate_input(task_id, job(f"a cat {tag}")))
    assert (error.type, error.non_retryable) == (code, True)
    assert words in error.message
    assert await objects.list_keys(f"tasks/{task_id}/") == []


async def test_wrong_key_unknown_model_and_bad_arguments_are_final(
    sim: SimulatorServer, http: httpx.AsyncClient, objects: ObjectStore
) -> None:
    input = generate_input(str(uuid.uuid4()), job("a cat"))
    auth = await fails(activities(http, objects, sim.url, api_key="wrong"), input)
    assert (auth.type, auth.non_retryable) == ("provider_auth", True)
    assert "HTTP 403 PERMISSION_DENIED: API key not valid" in auth.message
    assert sim.recording.requests[-1].headers["x-goog-api-key"] == "wrong"

    model = await fails(activities(http, objects, sim.url, model="gemini-9-image"), input)
    assert (model.type, model.non_retryable) == ("provider_rejected", True)
    assert "HTTP 404 NOT_FOUND: models/gemini-9-image is not found" in model.message

    ratio = await fails(activities(http, objects, sim.url), generate_input(input.task.id, job("a cat", "7:3")))
    assert (ratio.type, ratio.non_retryable) == ("provider_rejected", True)
    assert "HTTP 400 INVALID_ARGUMENT" in ratio.message and "unsupported aspect ratio '7:3'" in ratio.message


async def test_a_provider_that_never_answers_times_out_as_retryable(
    sim: SimulatorServer, http: httpx.AsyncClient, objects: ObjectStore
) -> None:
    run = activities(http, objects, sim.url, timeout=0.5)
    error = await fails(run, generate_input(str(uuid.uuid4()), job("a cat [sim:hang]")))
    assert (error.type, error.non_retryable) == ("provider_unavailable", False)
    assert "no answer from Gemini within 0.5s (ReadTimeout)" in error.message

    async def abandoned() -> bool:
        return await sim.answered("499") == 1

    # The simulator saw the client go away (it records that as 499) instead of holding the request.
    await wait_for(abandoned, 10, "the simulator to see the abandoned request")


async def test_cancelling_the_activity_abandons_the_provider_call(
    sim: SimulatorServer, http: httpx.AsyncClient, objects: ObjectStore
) -> None:
    env = ActivityEnvironment()
    run = activities(http, objects, sim.url, heartbeat_seconds=0.05)
    attempt = asyncio.create_task(env.run(run.generate, generate_input(str(uuid.uuid4()), job("a cat [sim:hang]"))))

    async def received() -> bool:
        return len(sim.recording.requests) == 1

    await wait_for(received, 10, "the simulator to receive the call")
    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(attempt, 10)

    async def abandoned() -> bool:
        return await sim.answered("499") == 1

    await wait_for(abandoned, 10, "the simulator to see the abandoned request")


async def test_an_unreachable_object_store_is_a_retryable_storage_error(
    sim: SimulatorServer, http: httpx.AsyncClient
) -> None:
    # A port nothing listens on (bound, then closed).
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    down = ObjectStore(StorageSettings("any", "any-secret", endpoint=f"127.0.0.1:{port}"))
    task_id = str(uuid.uuid4())
    error = await fails(activities(http, down, sim.url), generate_input(task_id, job("a cat")))
    assert (error.type, error.non_retryable) == ("storage_unavailable", False)
    assert f"could not store the image at tasks/{task_id}/image.png" in error.message
    assert len(sim.recording.requests) == 1

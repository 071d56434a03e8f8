"""The Gemini client against fake HTTP: settings, request shape, answer parsing and error mapping."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from integrations.nanobanana2_image.schemas import ImageJob, InlineImage
from integrations.nanobanana2_image.workflows.provider import (
    GeminiClient,
    GeminiSettings,
    parse_response,
    png_dimensions,
)
from services.shared.discovery import discover
from services.shared.provider_client import ProviderError
from services.shared.settings import Env, ProviderEndpoint, SettingsError
from services.simulator.media import encode_png, render_rows

PNG = encode_png(6, 4, render_rows(6, 4, (1, 2, 3), (4, 5, 6), 2))
JOB = ImageJob("a fox in snow", "9:16", "2K", (InlineImage("image/png", base64.b64encode(PNG).decode()),))
SETTINGS = GeminiSettings(ProviderEndpoint("http://gemini.test", "k-123"), model="gemini-3.1-flash-image-preview")
PROVIDER = discover().get("nanobanana2-image").manifest.provider


def image_part(data: bytes = PNG, thought: bool = False) -> dict[str, Any]:
    part: dict[str, Any] = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(data).decode()}}
    if thought:
        part["thought"] = True
    return part


def answer(*parts: dict[str, Any], finish: str = "STOP", **extra: Any) -> bytes:
    body = {
        "candidates": [{"content": {"role": "model", "parts": list(parts)}, "finishReason": finish, "index": 0}],
        "usageMetadata": {"promptTokenCount": 260, "candidatesTokenCount": 1690, "totalTokenCount": 1950},
        "modelVersion": "gemini-3.1-flash-image-preview",
        "responseId": "r-1",
        **extra,
    }
    return json.dumps(body).encode()


def google_error(status: int, name: str, message: str, details: list[dict[str, Any]] | None = None) -> bytes:
    error: dict[str, Any] = {"code": status, "message": message, "status": name}
    if details is not None:
        error["details"] = details
    return json.dumps({"error": error}).encode()


async def call(handler: Callable[[httpx.Request], httpx.Response], job: ImageJob = JOB) -> Any:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        return await GeminiClient(http, SETTINGS).generate(job)


async def failure(handler: Callable[[httpx.Request], httpx.Response]) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await call(handler)
    return caught.value


def replying(status: int, content: bytes) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _: httpx.Response(status, content=content)


# --- settings --------------------------------------------------------------------------------------------


def endpoint(environ: dict[str, str]) -> ProviderEndpoint:
    assert PROVIDER is not None
    return ProviderEndpoint.from_env(Env(environ), PROVIDER)


def test_the_manifest_declares_google_and_its_variables() -> None:
    for environ in ({"GEMINI_API_KEY": "real"}, {"GEMINI_API_KEY": "real", "GEMINI_BASE_URL": ""}):
        assert endpoint(environ) == ProviderEndpoint("https://generativelanguage.googleapis.com", "real")
    assert endpoint({"GEMINI_API_KEY": "real", "GEMINI_BASE_URL": "https://proxy.example/"}).base_url == (
        "https://proxy.example"
    )


def test_without_a_key_only_the_explicit_simulator_setting_stands_in() -> None:
    for environ in ({}, {"GEMINI_BASE_URL": "http://127.0.0.1:8002"}):
        with pytest.raises(SettingsError, match=r"GEMINI_API_KEY .*PROVIDER_SIMULATOR_URL"):
            endpoint(environ)
    simulated = endpoint({"PROVIDER_SIMULATOR_URL": "http://127.0.0.1:8002/"})
    assert simulated == ProviderEndpoint("http://127.0.0.1:8002", "sim-gemini-key", simulated=True)


def test_settings_read_the_model_and_timeout_and_keep_the_key_out_of_repr() -> None:
    found = endpoint({"GEMINI_API_KEY": "real-key-value"})
    defaults = GeminiSettings.from_env(Env({}), found)
    assert (defaults.model, defaults.timeout_seconds) == ("gemini-3.1-flash-image-preview", 300.0)
    custom = GeminiSettings.from_env(
        Env({"GEMINI_MODEL": "gemini-3-pro-image-preview", "GEMINI_TIMEOUT_SECONDS": "90"}), found
    )
    assert (custom.model, custom.timeout_seconds) == ("gemini-3-pro-image-preview", 90.0)
    assert "real-key-value" not in repr(custom)
    with pytest.raises(SettingsError, match="GEMINI_TIMEOUT_SECONDS"):
        GeminiSettings.from_env(Env({"GEMINI_TIMEOUT_SECONDS": "0"}), found)


# --- request and success ---------------------------------------------------------------------------------


async def test_request_shape_and_the_final_image_is_chosen_over_thought_images() -> None:
    seen: list[httpx.Request] = []
    thought = encode_png(2, 2, render_rows(2, 2, (9, 9, 9), (8, 8, 8), 1))

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = answer(
            {"text": "thinking", "thought": True}, image_part(thought, thought=True), {"text": "Here"}, image_part()
        )
        return httpx.Response(200, content=body)

    content = await call(handler)
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == "http://gemini.test/v1beta/models/gemini-3.1-flash-image-preview:generateContent"
    assert request.headers["x-goog-api-key"] == "k-123"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "a fox in snow"},
                    {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}},
                ],
            }
        ],
        "generationConfig": {
            "responseModalities": ["TEXT", "IMAGE"],
            "imageConfig": {"aspectRatio": "9:16", "imageSize": "2K"},
        },
    }
    assert content.image == PNG
    assert content.mime_type == "image/png"
    assert content.text == "Here"
    assert (content.prompt_tokens, content.output_tokens, content.total_tokens) == (260, 1690, 1950)
    assert (content.model_version, content.response_id) == ("gemini-3.1-flash-image-preview", "r-1")


def test_png_dimensions_read_the_ihdr_chunk() -> None:
    assert png_dimensions(PNG) == (6, 4)
    assert png_dimensions(b"\xff\xd8\xff\xe0 not a png") is None
    assert png_dimensions(PNG[:20]) is None


# --- answers without an image: final ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (
            {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 3}},
            "blocked_prompt",
            "blocked the prompt (blockReason PROHIBITED_CONTENT)",
        ),
        (
            {"promptFeedback": {"blockReason": "OTHER", "blockReasonMessage": "policy"}, "candidates": []},
            "blocked_prompt",
            "(blockReason OTHER): policy",
        ),
        (
            {"candidates": [{"finishReason": "IMAGE_SAFETY", "finishMessage": "filtered", "index": 0}]},
            "image_blocked",
            "withheld the image (finishReason IMAGE_SAFETY): filtered",
        ),
        (
            {"candidates": [{"content": {"parts": [{"text": "Try again"}]}, "finishReason": "NO_IMAGE"}]},
            "no_image",
            "no image (finishReason NO_IMAGE): Try again",
        ),
        (
            {"candidates": [{"content": {"parts": [{"text": "Only words"}]}, "finishReason": "STOP"}]},
            "no_image",
            "no image (finishReason STOP): Only words",
        ),
        ({"candidates": []}, "no_image", "without any candidate"),
    ],
)
def test_answers_without_an_image_are_final_and_name_the_reason(body: dict[str, Any], code: str, words: str) -> None:
    with pytest.raises(ProviderError) as caught:
        parse_response(json.dumps(body).encode())
    assert caught.value.code == code
    assert caught.value.retryable is False
    assert words in caught.value.message


@pytest.mark.parametrize(
    "body",
    [
        b'{"candidates": [{"content": {"role": "model", "parts": [{"inlineData": {"mimeType": "image/png", "da',
        b"<html>bad gateway</html>",
        answer({"inlineData": {"mimeType": "image/png", "data": "not base64!"}}),
    ],
)
def test_malformed_answers_are_retryable(body: bytes) -> None:
    with pytest.raises(ProviderError) as caught:
        parse_response(body)
    assert caught.value.code == "provider_unavailable"
    assert caught.value.retryable is True


# --- HTTP errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "code", "retryable", "retry_after"),
    [
        (400, google_error(400, "INVALID_ARGUMENT", "unsupported aspect ratio"), "provider_rejected", False, None),
        (
            400,
            google_error(400, "INVALID_ARGUMENT", "API key not valid.", [{"reason": "API_KEY_INVALID"}]),
            "provider_auth",
            False,
            None,
        ),
        (401, google_error(401, "UNAUTHENTICATED", "no credentials"), "provider_auth", False, None),
        (403, google_error(403, "PERMISSION_DENIED", "API key not valid."), "provider_auth", False, None),
        (404, google_error(404, "NOT_FOUND", "models/x is not found"), "provider_rejected", False, None),
        (
            429,
            google_error(
                429,
                "RESOURCE_EXHAUSTED",
                "quota",
                [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}],
            ),
            "provider_unavailable",
            True,
            1.5,
        ),
        (429, google_error(429, "RESOURCE_EXHAUSTED", "quota"), "provider_unavailable", True, None),
        (408, b"", "provider_unavailable", True, None),
        (500, google_error(500, "INTERNAL", "internal"), "provider_unavailable", True, None),
        (503, google_error(503, "UNAVAILABLE", "overloaded"), "provider_unavailable", True, None),
        (504, google_error(504, "DEADLINE_EXCEEDED", "deadline"), "provider_unavailable", True, None),
        (502, b"<html>Bad Gateway</html>", "provider_unavailable", True, None),
    ],
)
async def test_http_errors_map_to_a_code_and_keep_the_providers_words(
    status: int, body: bytes, code: str, retryable: bool, retry_after: float | None
) -> None:
    error = await failure(replying(status, body))
    assert (error.code, error.retryable, error.status, error.retry_after) == (code, retryable, status, retry_after)
    assert error.message.startswith(f"Gemini answered HTTP {status} ")
    if body.startswith(b"{"):
        said = json.loads(body)["error"]
        assert f"{said['status']}: {said['message']}" in error.message


@pytest.mark.parametrize(
    ("raised", "words"),
    [
        (httpx.ConnectError("connection refused"), "could not reach Gemini: ConnectError"),
        (httpx.RemoteProtocolError("server disconnected"), "could not reach Gemini: RemoteProtocolError"),
        (httpx.ReadTimeout("read timed out"), "no answer from Gemini within 300s (ReadTimeout)"),
        (httpx.ConnectTimeout("connect timed out"), "no answer from Gemini within 300s (ConnectTimeout)"),
    ],
)
async def test_transport_errors_and_timeouts_are_retryable(raised: Exception, words: str) -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        raise raised

    error = await failure(handler)
    assert (error.code, error.retryable) == ("provider_unavailable", True)
    assert words in error.message

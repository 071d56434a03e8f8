"""The Gemini generateContent stand-in, through HTTP, in process."""

from __future__ import annotations

import base64
import time
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from services.simulator.media import encode_png, gemini_image_size, png_size, render_rows

from .helpers import GEMINI_HEADERS, GEMINI_PATH, gemini_body
from .test_media import decode_png

Client = AsyncTestClient[Litestar]


def image_parts(body: dict[str, Any]) -> list[bytes]:
    parts = body["candidates"][0].get("content", {}).get("parts", [])
    return [base64.b64decode(p["inlineData"]["data"]) for p in parts if "inlineData" in p]


async def generate(client: Client, prompt: str, **kwargs: Any) -> Any:
    return await client.post(GEMINI_PATH, headers=GEMINI_HEADERS, json=gemini_body(prompt, **kwargs))


def google_error(response: Any, code: int, status: str) -> str:
    assert response.status_code == code, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["status"] == status
    return str(error["message"])


async def test_success_returns_a_png_of_the_requested_shape(client: Client) -> None:
    response = await generate(client, "a lighthouse at dusk", aspect_ratio="16:9", image_size="1K")
    assert response.status_code == 200
    body = response.json()
    candidate = body["candidates"][0]
    assert candidate["finishReason"] == "STOP"
    assert candidate["index"] == 0
    assert candidate["content"]["role"] == "model"
    assert any("text" in part for part in candidate["content"]["parts"])
    assert body["modelVersion"] == "gemini-3.1-flash-image-preview"
    assert body["responseId"]
    usage = body["usageMetadata"]
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]
    (png,) = image_parts(body)
    width, height, _ = decode_png(png)
    assert (width, height) == gemini_image_size("16:9", "1K") == (172, 96)
    assert abs(width / height - 16 / 9) < 0.05


@pytest.mark.parametrize(("ratio", "size"), [("9:16", "2K"), ("1:1", "512"), ("21:9", "4K"), ("1:8", "1K")])
async def test_sizes_follow_ratio_and_size(client: Client, ratio: str, size: str) -> None:
    (png,) = image_parts((await generate(client, f"shape {ratio}", aspect_ratio=ratio, image_size=size)).json())
    assert png_size(png) == gemini_image_size(ratio, size)


async def test_different_prompts_give_different_images(client: Client) -> None:
    first = image_parts((await generate(client, "a red apple")).json())
    again = image_parts((await generate(client, "a red apple")).json())
    other = image_parts((await generate(client, "a green pear")).json())
    assert first == again
    assert first != other


async def test_snake_case_fields_and_key_parameter_are_accepted(client: Client) -> None:
    source = encode_png(30, 10, render_rows(30, 10, (10, 20, 30), (200, 100, 0), 3))
    body = {
        "contents": [
            {
                "parts": [
                    {"text": "make it brighter"},
                    {"inline_data": {"mime_type": "image/png", "data": base64.b64encode(source).decode()}},
                ]
            }
        ],
        "generation_config": {"response_modalities": ["IMAGE"], "image_config": {"image_size": "1K"}},
    }
    response = await client.post(GEMINI_PATH + "?key=sim-gemini-key", json=body)
    assert response.status_code == 200, response.text
    parts = response.json()["candidates"][0]["content"]["parts"]
    assert [list(p) for p in parts] == [["inlineData"]]  # IMAGE only: no text part
    # No aspectRatio: an edit keeps the input's shape (30x10 -> closest supported ratio 21:9... or 4:1).
    width, height = png_size(base64.b64decode(parts[0]["inlineData"]["data"]))
    assert width / height > 2.3


async def test_missing_or_wrong_key_is_permission_denied(client: Client) -> None:
    missing = await client.post(GEMINI_PATH, json=gemini_body("x"))
    google_error(missing, 403, "PERMISSION_DENIED")
    wrong = await client.post(GEMINI_PATH, headers={"x-goog-api-key": "nope"}, json=gemini_body("x"))
    assert "API key not valid" in google_error(wrong, 403, "PERMISSION_DENIED")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (gemini_body("x", aspect_ratio="7:3"), "aspect ratio"),
        (gemini_body("x", image_size="8K"), "image size"),
        (gemini_body("x", image_size="1k"), "image size"),
        ({"contents": []}, "contents"),
        ({"contents": [{"role": "user", "parts": []}]}, "parts"),
        ({"contents": [{"role": "robot", "parts": [{"text": "x"}]}]}, "role"),
        ({"contents": [{"parts": [{"text": ""}]}]}, "empty text"),
        ({"contents": [{"parts": [{"text": "x"}]}], "unknownField": 1}, "Unknown name"),
        ({"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "@@@"}}]}]}, "Base64"),
        ({"contents": [{"parts": [{"inlineData": {"mimeType": "text/html", "data": "AAAA"}}]}]}, "MIME"),
        (
            {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"responseModalities": ["SMELL"]}},
            "response_modalities",
        ),
        ([1, 2], "Expected an object"),
    ],
)
async def test_invalid_requests_are_invalid_argument(client: Client, body: Any, fragment: str) -> None:
    response = await client.post(GEMINI_PATH, headers=GEMINI_HEADERS, json=body)
    assert fragment in google_error(response, 400, "INVALID_ARGUMENT")


async def test_malformed_json_body_is_invalid_argument(client: Client) -> None:
    response = await client.post(
        GEMINI_PATH, headers={**GEMINI_HEADERS, "Content-Type": "application/json"}, content=b"{"
    )
    assert "Invalid JSON payload" in google_error(response, 400, "INVALID_ARGUMENT")


async def test_extreme_ratios_only_on_nano_banana_2(client: Client) -> None:
    path = "/v1beta/models/gemini-3-pro-image-preview:generateContent"
    pro = await client.post(path, headers=GEMINI_HEADERS, json=gemini_body("x", aspect_ratio="1:8"))
    google_error(pro, 400, "INVALID_ARGUMENT")
    ok = await client.post(path, headers=GEMINI_HEADERS, json=gemini_body("x", aspect_ratio="21:9", image_size="2K"))
    assert ok.status_code == 200


async def test_unknown_model_or_method_is_not_found(client: Client) -> None:
    unknown = await client.post(
        "/v1beta/models/gemini-0-nothing:generateContent", headers=GEMINI_HEADERS, json=gemini_body("x")
    )
    assert "gemini-0-nothing" in google_error(unknown, 404, "NOT_FOUND")
    method = await client.post(
        "/v1beta/models/gemini-3.1-flash-image-preview:countTokens", headers=GEMINI_HEADERS, json=gemini_body("x")
    )
    google_error(method, 404, "NOT_FOUND")


async def test_blocked_prompt_is_200_with_block_reason(client: Client) -> None:
    response = await generate(client, "something bad [sim:blocked]")
    assert response.status_code == 200
    body = response.json()
    assert body["promptFeedback"]["blockReason"] == "SAFETY"
    assert "candidates" not in body


@pytest.mark.parametrize(("tag", "reason"), [("no_image", "NO_IMAGE"), ("image_safety", "IMAGE_SAFETY")])
async def test_finish_reasons_without_image(client: Client, tag: str, reason: str) -> None:
    response = await generate(client, f"draw it [sim:{tag}]")
    assert response.status_code == 200
    body = response.json()
    assert body["candidates"][0]["finishReason"] == reason
    assert image_parts(body) == []


async def test_429_is_resource_exhausted_with_retry_info(client: Client) -> None:
    response = await generate(client, "busy [sim:429]")
    google_error(response, 429, "RESOURCE_EXHAUSTED")
    details = response.json()["error"]["details"]
    assert details == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.1s"}]
    # Without a count the tag fails every attempt.
    google_error(await generate(client, "busy [sim:429]"), 429, "RESOURCE_EXHAUSTED")


async def test_503_twice_then_success(client: Client) -> None:
    prompt = "flaky [sim:503x2]"
    google_error(await generate(client, prompt), 503, "UNAVAILABLE")
    google_error(await generate(client, prompt), 503, "UNAVAILABLE")
    third = await generate(client, prompt)
    assert third.status_code == 200
    assert image_parts(third.json())
    stats = (await client.get("/_sim/stats")).json()
    assert stats["prompt_attempts"]["gemini"][prompt] == 3
    assert stats["responses"]["gemini"]["generate_content"] == {"200": 1, "503": 2}


async def test_counted_tags_apply_one_after_another(client: Client) -> None:
    prompt = "chain [sim:429x1][sim:500x1]"
    google_error(await generate(client, prompt), 429, "RESOURCE_EXHAUSTED")
    google_error(await generate(client, prompt), 500, "INTERNAL")
    assert (await generate(client, prompt)).status_code == 200


async def test_malformed_response(client: Client) -> None:
    response = await generate(client, "garbled [sim:malformed]")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(response.content)


async def test_hang_holds_the_request_then_times_out(client: Client) -> None:
    started = time.monotonic()
    response = await generate(client, "stuck [sim:hang]")
    assert time.monotonic() - started >= 0.3  # hang_seconds in the test settings
    google_error(response, 504, "DEADLINE_EXCEEDED")


async def test_slow_tag_delays_the_answer(client: Client) -> None:
    started = time.monotonic()
    response = await generate(client, "take your time [sim:slow=0.4]")
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.4


async def test_latency_from_config(client: Client) -> None:
    set_config = await client.post("/_sim/config", json={"gemini_latency_ms": 300})
    assert set_config.status_code == 200
    assert set_config.json()["gemini_latency_ms"] == 300
    started = time.monotonic()
    assert (await generate(client, "patience")).status_code == 200
    assert time.monotonic() - started >= 0.3


async def test_queued_faults_are_consumed_in_order(client: Client) -> None:
    queued = await client.post(
        "/_sim/faults",
        json=[
            {"provider": "gemini", "kind": "503", "count": 1},
            {"provider": "gemini", "kind": "no_image", "count": 1, "match": "kitten"},
        ],
    )
    assert queued.status_code == 200
    assert len(queued.json()) == 2
    google_error(await generate(client, "a puppy"), 503, "UNAVAILABLE")
    assert image_parts((await generate(client, "a puppy")).json())  # the no_image fault only matches kittens
    assert (await generate(client, "a kitten")).json()["candidates"][0]["finishReason"] == "NO_IMAGE"
    assert image_parts((await generate(client, "a kitten")).json())
    assert (await client.get("/_sim/faults")).json() == []


async def test_invalid_faults_are_rejected(client: Client) -> None:
    for body in (
        {"provider": "gemini", "kind": "expired"},
        {"provider": "gemini", "kind": "teapot"},
        {"provider": "gemini", "kind": "429", "route": "create_task"},
        {"provider": "gemini", "kind": "429", "surprise": True},
    ):
        response = await client.post("/_sim/faults", json=body)
        assert response.status_code == 400, body
        assert "invalid fault" in response.json()["detail"]


async def test_tag_values_choose_the_reason(client: Client) -> None:
    blocked = (await generate(client, "x [sim:blocked=PROHIBITED_CONTENT]")).json()
    assert blocked["promptFeedback"]["blockReason"] == "PROHIBITED_CONTENT"
    once = "y [sim:image_safetyx1]"
    assert (await generate(client, once)).json()["candidates"][0]["finishReason"] == "IMAGE_SAFETY"
    assert image_parts((await generate(client, once)).json())

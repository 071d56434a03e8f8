"""Typed client for Gemini image generation (``POST {base}/v1beta/models/{model}:generateContent``).

Used only by activities. It knows nothing about Temporal: every failure is a ``ProviderError`` whose ``code``
says what happened and whose ``retryable`` says whether trying again can help: ``blocked_prompt``
(promptFeedback.blockReason), ``image_blocked`` (a safety finishReason), ``no_image`` (finished without an
image), ``provider_rejected`` (400/404/other 4xx), ``provider_auth`` (401/403, invalid key) are final;
``provider_unavailable`` (408, 429, 5xx, timeouts, connection errors, malformed answers) is worth retrying, after
``retry_after`` seconds when Google says so.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

from services.shared.provider_client import ProviderError, ProviderHttp, is_transient, said
from services.shared.settings import Env, ProviderEndpoint, SettingsError

from ..schemas import ImageJob

# Finish reasons that mean the output was withheld by a safety or policy filter.
_FILTERED_REASONS = frozenset(
    {
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "SAFETY",
        "PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
    }
)
_DURATION = re.compile(r"(?P<seconds>\d+(?:\.\d+)?)s")
_MAX_MESSAGE = 500


@dataclass(frozen=True)
class GeminiSettings:
    """The worker's Gemini settings. Google's address and key come from the manifest's provider variables
    (GEMINI_BASE_URL, GEMINI_API_KEY: ``ProviderEndpoint``); GEMINI_MODEL and GEMINI_TIMEOUT_SECONDS from here."""

    endpoint: ProviderEndpoint
    model: str = "gemini-3.1-flash-image-preview"
    # Bound on one generateContent call; large images can take minutes.
    timeout_seconds: float = 300.0

    @classmethod
    def from_env(cls, env: Env, endpoint: ProviderEndpoint) -> GeminiSettings:
        return cls(
            endpoint=endpoint,
            model=env.get("GEMINI_MODEL", cls.model),
            timeout_seconds=env.get_float("GEMINI_TIMEOUT_SECONDS", cls.timeout_seconds),
        )

    def __post_init__(self) -> None:
        if self.timeout_seconds <= 0:
            raise SettingsError(f"GEMINI_TIMEOUT_SECONDS must be positive, got {self.timeout_seconds:g}")


# --- the parts of Google's answer we read (camelCase on the wire; unknown fields are ignored) ---------------


class _InlineData(msgspec.Struct, frozen=True, rename="camel"):
    mime_type: str = ""
    data: str = ""


class _Part(msgspec.Struct, frozen=True, rename="camel"):
    text: str | None = None
    inline_data: _InlineData | None = None
    # Gemini 3 image models may send interim "thought" images before the final one.
    thought: bool = False


class _Content(msgspec.Struct, frozen=True, rename="camel"):
    parts: list[_Part] = msgspec.field(default_factory=list)


class _Candidate(msgspec.Struct, frozen=True, rename="camel"):
    content: _Content | None = None
    finish_reason: str | None = None
    finish_message: str | None = None


class _PromptFeedback(msgspec.Struct, frozen=True, rename="camel"):
    block_reason: str | None = None
    block_reason_message: str | None = None


class _UsageMetadata(msgspec.Struct, frozen=True, rename="camel"):
    prompt_token_count: int | None = None
    candidates_token_count: int | None = None
    total_token_count: int | None = None


class _Response(msgspec.Struct, frozen=True, rename="camel"):
    candidates: list[_Candidate] = msgspec.field(default_factory=list)
    prompt_feedback: _PromptFeedback | None = None
    usage_metadata: _UsageMetadata | None = None
    model_version: str | None = None
    response_id: str | None = None


class _ErrorDetail(msgspec.Struct, frozen=True, rename="camel"):
    type: str | None = msgspec.field(default=None, name="@type")
    reason: str | None = None
    retry_delay: str | None = None


class _Error(msgspec.Struct, frozen=True):
    code: int | None = None
    message: str = ""
    status: str | None = None
    details: list[_ErrorDetail] = msgspec.field(default_factory=list)


class _ErrorBody(msgspec.Struct, frozen=True):
    error: _Error


# --- results ---------------------------------------------------------------------------------------------


class GeneratedContent(msgspec.Struct, frozen=True):
    image: bytes
    mime_type: str
    text: str | None
    model_version: str | None
    response_id: str | None
    prompt_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None


class GeminiClient:
    def __init__(self, http: httpx.AsyncClient, settings: GeminiSettings) -> None:
        self._http = ProviderHttp(http, "Gemini", http_error)
        self.settings = settings

    @property
    def url(self) -> str:
        return f"{self.settings.endpoint.base_url}/v1beta/models/{self.settings.model}:generateContent"

    async def generate(self, job: ImageJob) -> GeneratedContent:
        response = await self._http.send(
            "POST",
            self.url,
            timeout_seconds=self.settings.timeout_seconds,
            content=msgspec.json.encode(request_body(job)),
            headers={"x-goog-api-key": self.settings.endpoint.api_key, "Content-Type": "application/json"},
        )
        return parse_response(response.content)


def request_body(job: ImageJob) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"text": job.prompt}]
    parts += [{"inlineData": {"mimeType": image.mime_type, "data": image.data}} for image in job.reference_images]
    return {
        "contents": [{"role": "user", "parts": parts}],
        "generationConfig": {
            "responseModalities": ["TEXT", "IMAGE"],
            "imageConfig": {"aspectRatio": job.aspect_ratio, "imageSize": job.image_size},
        },
    }


def parse_response(body: bytes) -> GeneratedContent:
    """The final image of a 200 answer, or the ProviderError that explains why there is none."""
    try:
        response = msgspec.json.decode(body, type=_Response)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _unavailable(f"Gemini sent a malformed answer: {exc}") from exc
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason:
        detail = f": {feedback.block_reason_message}" if feedback.block_reason_message else ""
        message = f"Gemini blocked the prompt (blockReason {feedback.block_reason}){detail}"
        raise ProviderError("blocked_prompt", message, retryable=False)
    if not response.candidates:
        raise ProviderError("no_image", "Gemini answered without any candidate", retryable=False)
    candidate = response.candidates[0]
    parts = candidate.content.parts if candidate.content is not None else []
    images = [p.inline_data for p in parts if p.inline_data is not None and p.inline_data.data and not p.thought]
    texts = [p.text for p in parts if p.text and not p.thought]
    text = "\n".join(texts)[:_MAX_MESSAGE] or None
    reason = candidate.finish_reason or "unspecified"
    if not images:
        words = candidate.finish_message or text
        detail = f": {words[:_MAX_MESSAGE]}" if words else ""
        if reason in _FILTERED_REASONS:
            raise ProviderError(
                "image_blocked", f"Gemini withheld the image (finishReason {reason}){detail}", retryable=False
            )
        raise ProviderError("no_image", f"Gemini returned no image (finishReason {reason}){detail}", retryable=False)
    final = images[-1]
    try:
        data = base64.b64decode(final.data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _unavailable("Gemini sent an image that is not valid base64") from exc
    usage = response.usage_metadata or _UsageMetadata()
    return GeneratedContent(
        image=data,
        mime_type=final.mime_type or "image/png",
        text=text,
        model_version=response.model_version,
        response_id=response.response_id,
        prompt_tokens=usage.prompt_token_count,
        output_tokens=usage.candidates_token_count,
        total_tokens=usage.total_token_count,
    )


def http_error(response: httpx.Response) -> ProviderError:
    """Map a non-200 answer; the message keeps Google's own status and message."""
    status = response.status_code
    error: _Error | None
    try:
        error = msgspec.json.decode(response.content, type=_ErrorBody).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        error = None
    words = f"{error.status or 'error'}: {error.message[:_MAX_MESSAGE]}" if error is not None else said(response)
    message = f"Gemini answered HTTP {status} {words}"
    reasons = {d.reason for d in error.details} if error is not None else set()
    if status in (401, 403) or "API_KEY_INVALID" in reasons:
        return ProviderError("provider_auth", message, retryable=False, status=status)
    if is_transient(status):
        delay = _retry_delay(error)
        return ProviderError("provider_unavailable", message, retryable=True, status=status, retry_after=delay)
    return ProviderError("provider_rejected", message, retryable=False, status=status)


def _retry_delay(error: _Error | None) -> float | None:
    """google.rpc.RetryInfo.retryDelay (e.g. "1s", "0.5s"), when the answer carries one."""
    if error is None:
        return None
    for detail in error.details:
        if detail.retry_delay and (match := _DURATION.fullmatch(detail.retry_delay)):
            return float(match["seconds"])
    return None


def _unavailable(message: str) -> ProviderError:
    return ProviderError("provider_unavailable", message, retryable=True)


def png_dimensions(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk, or None for anything else."""
    if len(data) < 24 or not data.startswith(b"\x89PNG\r\n\x1a\n") or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)

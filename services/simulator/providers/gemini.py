"""Stand-in for Gemini image generation ("Nano Banana 2"): ``POST /v1beta/models/{model}:generateContent``.

Speaks the REST contract of the Gemini API: ``x-goog-api-key`` (or ``?key=``) auth, camelCase or snake_case
request fields, Google's error body ``{"error": {"code", "message", "status"}}``, the image as base64
``inlineData`` in ``candidates[0].content.parts``, and a block as HTTP 200 with ``promptFeedback.blockReason``
or a ``finishReason`` such as ``IMAGE_SAFETY``. The PNG is real; see ``media`` for its size.

Deliberate difference: a wrong key gets 403 PERMISSION_DENIED, like a missing one (Google answers a wrong key
with 400 API_KEY_INVALID); both are final errors for a client.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from ..errors import ProviderError, json_response
from ..faults import Fault
from ..media import gemini_nominal_size, gemini_png, parse_ratio, png_size
from ..stand_in import NonNegative, StandIn
from ..state import Incoming, Shared

ROUTE = "generate_content"

_BASE_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")


@dataclass(frozen=True)
class ModelInfo:
    aspect_ratios: tuple[str, ...]
    # Empty: the model takes no imageSize and always makes 1K images.
    image_sizes: tuple[str, ...]
    max_input_images: int


MODELS: dict[str, ModelInfo] = {
    "gemini-3.1-flash-image-preview": ModelInfo(
        (*_BASE_RATIOS, "1:4", "4:1", "1:8", "8:1"), ("512", "1K", "2K", "4K"), 14
    ),
    "gemini-3-pro-image-preview": ModelInfo(_BASE_RATIOS, ("1K", "2K", "4K"), 14),
    "gemini-2.5-flash-image": ModelInfo(_BASE_RATIOS, (), 3),
}

# Output tokens billed per image, by size (published figures for the Gemini 3 image models).
_IMAGE_TOKENS = {"512": 747, "1K": 1120, "2K": 1680, "4K": 2520}
_INPUT_IMAGE_TOKENS = 258
_INPUT_MIME_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"})

# Accepted spellings (camelCase and snake_case, as Google's JSON parser accepts) -> canonical name.
_REQUEST_FIELDS = {
    "contents",
    "generationConfig",
    "safetySettings",
    "systemInstruction",
    "tools",
    "toolConfig",
    "cachedContent",
}
_CONTENT_FIELDS = {"role", "parts"}
_PART_FIELDS = {
    "text",
    "inlineData",
    "fileData",
    "thought",
    "thoughtSignature",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
    "videoMetadata",
    "mediaResolution",
}
_INLINE_DATA_FIELDS = {"mimeType", "data"}
_GENERATION_FIELDS = {
    "temperature",
    "topP",
    "topK",
    "candidateCount",
    "maxOutputTokens",
    "stopSequences",
    "presencePenalty",
    "frequencyPenalty",
    "seed",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "responseLogprobs",
    "logprobs",
    "imageConfig",
    "thinkingConfig",
    "mediaResolution",
    "speechConfig",
}
_IMAGE_CONFIG_FIELDS = {"aspectRatio", "imageSize"}


class GeminiKnobs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # retryDelay that 429 answers advertise (google.rpc.RetryInfo).
    gemini_retry_delay_seconds: NonNegative = 1.0


class GeminiErrors:
    """Google's error bodies for request faults."""

    malformed_body = (
        b'{"candidates": [{"content": {"role": "model", "parts": [{"inlineData": {"mimeType": "image/png", "da'
    )

    def __init__(self, shared: Shared) -> None:
        self._shared = shared

    def rate_limited(self, code: str | None) -> ProviderError:
        # protobuf Duration JSON: decimal seconds with an "s", e.g. "1s" or "0.5s".
        seconds = self._shared.config.of(GeminiKnobs).gemini_retry_delay_seconds
        delay = f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
        return google_error(
            429,
            "RESOURCE_EXHAUSTED",
            "Resource has been exhausted (e.g. check quota).",
            details=[{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}],
        )

    def server_error(self, status: int, code: str | None) -> ProviderError:
        if status == 503:
            return google_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
        return google_error(500, "INTERNAL", "An internal error has occurred. Please retry or report the problem.")

    def timed_out(self) -> ProviderError:
        return google_error(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete.")


def google_error(code: int, status: str, message: str, details: list[dict[str, Any]] | None = None) -> ProviderError:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return ProviderError(code, {"error": error})


def _invalid(message: str) -> ProviderError:
    return google_error(400, "INVALID_ARGUMENT", message)


@dataclass(frozen=True)
class ImageRequest:
    model: str
    prompt: str
    images: list[bytes]
    aspect_ratio: str
    image_size: str
    modalities: tuple[str, ...]


class Gemini(StandIn):
    name = "gemini"
    routes = frozenset({ROUTE})
    prompt_routes = frozenset({ROUTE})
    outcome_tags = {"blocked": "blocked", "no_image": "no_image", "image_safety": "image_safety"}
    knobs = GeminiKnobs

    def __init__(self, shared: Shared) -> None:
        super().__init__(shared)
        self.errors = GeminiErrors(shared)

    def http_routes(self) -> list[HTTPRouteHandler]:
        @post(
            "/v1beta/models/{model_and_method:str}",
            status_code=200,
            operation_id="GeminiGenerateContent",
            description="Gemini generateContent; the path segment is '{model}:generateContent'.",
        )
        async def generate_content(model_and_method: FromPath[str], request: Request[Any, Any, Any]) -> Response[bytes]:
            incoming = await self.shared.incoming(request)
            return await self.serve(ROUTE, incoming, self._authenticate, lambda i: self._generate(model_and_method, i))

        return [generate_content]

    async def _generate(self, model_and_method: str, incoming: Incoming) -> Response[bytes]:
        model, _, method = model_and_method.partition(":")
        if method != "generateContent":
            raise google_error(404, "NOT_FOUND", f"Method {method or '(none)'} is not supported by this simulator.")
        if model not in MODELS:
            raise google_error(
                404,
                "NOT_FOUND",
                f"models/{model} is not found for API version v1beta, or is not supported for generateContent. "
                "Call ListModels to see the list of available models and their supported methods.",
            )
        request = parse_request(model, incoming.body)
        decision = self.shared.faults.decide(self.name, ROUTE, request.prompt)
        if decision.slow_seconds:
            await asyncio.sleep(decision.slow_seconds)
        if decision.fault is not None:
            return await self.fault_response(decision.fault, incoming)
        return json_response(build_response(request, decision.outcome))

    def _authenticate(self, incoming: Incoming) -> None:
        key = incoming.headers.get("x-goog-api-key") or next(iter(incoming.query.get("key", [])), None)
        if not key:
            raise google_error(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
            )
        if key not in self.api_keys:
            raise google_error(403, "PERMISSION_DENIED", "API key not valid. Please pass a valid API key.")


STAND_IN = Gemini


def parse_request(model: str, body: bytes) -> ImageRequest:
    """Validate a generateContent body the way Google does; raises ProviderError(400)."""
    info = MODELS[model]
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise _invalid(f"Invalid JSON payload received. {exc}") from exc
    root = _object(raw, "")
    contents = root.get("contents")
    if not contents:
        raise _invalid("* GenerateContentRequest.contents: contents is not specified")
    if not isinstance(contents, list):
        raise _invalid("Invalid JSON payload received. Invalid value at 'contents': expected a list.")
    texts: list[str] = []
    images: list[bytes] = []
    for i, item in enumerate(contents):
        content = _object(item, f"contents[{i}]", _CONTENT_FIELDS)
        role = content.get("role", "user")
        if role not in ("user", "model"):
            raise _invalid("Please use a valid role: user, model.")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise _invalid(f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.")
        for j, item_part in enumerate(parts):
            part = _object(item_part, f"contents[{i}].parts[{j}]", _PART_FIELDS)
            if "text" in part:
                if not isinstance(part["text"], str):
                    raise _invalid(f"Invalid value at 'contents[{i}].parts[{j}].text' (TYPE_STRING)")
                if not part["text"]:
                    raise _invalid(
                        "Unable to submit request because it has an empty text parameter. "
                        "Add a value to the parameter and try again."
                    )
                if role == "user" and not part.get("thought"):
                    texts.append(part["text"])
            if "inlineData" in part:
                data = _inline_data(part["inlineData"], f"contents[{i}].parts[{j}].inline_data")
                if role == "user":
                    images.append(data)
    if not texts and not images:
        raise _invalid("* GenerateContentRequest.contents: the request has no user text or image to work from")
    if len(images) > info.max_input_images:
        raise _invalid(f"Too many input images: {len(images)}; {model} accepts at most {info.max_input_images}.")
    generation = _object(root.get("generationConfig", {}), "generation_config", _GENERATION_FIELDS)
    modalities = _modalities(generation.get("responseModalities"))
    image_config = _object(generation.get("imageConfig", {}), "generation_config.image_config", _IMAGE_CONFIG_FIELDS)
    aspect_ratio = image_config.get("aspectRatio")
    if aspect_ratio is None:
        aspect_ratio = _ratio_of_input(images, info) or "1:1"
    elif aspect_ratio not in info.aspect_ratios:
        raise _invalid(
            f"* GenerateContentRequest.generation_config.image_config.aspect_ratio: unsupported aspect ratio "
            f"{aspect_ratio!r} for {model}; supported: {', '.join(info.aspect_ratios)}"
        )
    image_size = image_config.get("imageSize")
    if image_size is None:
        image_size = "1K"
    elif not info.image_sizes:
        raise _invalid(f"* GenerateContentRequest.generation_config.image_config.image_size: not supported by {model}")
    elif image_size not in info.image_sizes:
        raise _invalid(
            f"* GenerateContentRequest.generation_config.image_config.image_size: unsupported image size "
            f"{image_size!r} for {model}; supported: {', '.join(info.image_sizes)}"
        )
    return ImageRequest(model, "\n".join(texts), images, str(aspect_ratio), str(image_size), modalities)


def _object(value: Any, path: str, known: set[str] | None = None) -> dict[str, Any]:
    """A JSON object with snake_case keys turned into camelCase; unknown keys are rejected like Google does."""
    where = f" at '{path}'" if path else ""
    if not isinstance(value, dict):
        raise _invalid(f"Invalid JSON payload received. Expected an object{where}.")
    known = _REQUEST_FIELDS if known is None else known
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = _camel(key)
        if name not in known:
            raise _invalid(f'Invalid JSON payload received. Unknown name "{key}"{where}: Cannot find field.')
        out[name] = item
    return out


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def _inline_data(value: Any, path: str) -> bytes:
    blob = _object(value, path, _INLINE_DATA_FIELDS)
    mime_type = blob.get("mimeType")
    if not isinstance(mime_type, str) or not mime_type:
        raise _invalid(f"* GenerateContentRequest.{path}.mime_type: mime_type is not specified")
    if mime_type not in _INPUT_MIME_TYPES:
        raise _invalid(f"Unsupported MIME type: {mime_type}")
    data = blob.get("data")
    if not isinstance(data, str) or not data:
        raise _invalid(f"* GenerateContentRequest.{path}.data: data is not specified")
    try:
        return base64.b64decode(data.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _invalid(f"Invalid value at '{path}.data' (TYPE_BYTES), Base64 decoding failed") from exc


def _modalities(value: Any) -> tuple[str, ...]:
    if value is None or value == []:
        return ("TEXT", "IMAGE")
    if not isinstance(value, list):
        raise _invalid("Invalid value at 'generation_config.response_modalities': expected a list.")
    out: list[str] = []
    for i, item in enumerate(value):
        if item not in ("TEXT", "IMAGE", "AUDIO"):
            raise _invalid(
                f"Invalid value at 'generation_config.response_modalities[{i}]' "
                f"(type.googleapis.com/google.ai.generativelanguage.v1beta.GenerationConfig.Modality), {item!r}"
            )
        if item == "AUDIO":
            raise _invalid("Model does not support the requested response modalities: audio")
        out.append(item)
    return tuple(out)


def _ratio_of_input(images: list[bytes], info: ModelInfo) -> str | None:
    """Without an aspectRatio an edit keeps the input image's shape: the supported ratio closest to it."""
    for image in images:
        try:
            width, height = png_size(image)
        except ValueError:
            continue
        target = width / height
        return min(info.aspect_ratios, key=lambda r: abs(_ratio_value(r) - target))
    return None


def _ratio_value(ratio: str) -> float:
    w, h = parse_ratio(ratio)
    return w / h


def build_response(request: ImageRequest, outcome: Fault | None) -> dict[str, Any]:
    prompt_tokens = max(1, len(request.prompt) // 4) + _INPUT_IMAGE_TOKENS * len(request.images)
    common = {"modelVersion": request.model, "responseId": secrets.token_urlsafe(16)}
    prompt_details = [{"modality": "TEXT", "tokenCount": prompt_tokens - _INPUT_IMAGE_TOKENS * len(request.images)}]
    if request.images:
        prompt_details.append({"modality": "IMAGE", "tokenCount": _INPUT_IMAGE_TOKENS * len(request.images)})
    if outcome is not None and outcome.kind == "blocked":
        return {
            "promptFeedback": {
                "blockReason": outcome.error_code or "SAFETY",
                "safetyRatings": [
                    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
                ],
            },
            "usageMetadata": {
                "promptTokenCount": prompt_tokens,
                "totalTokenCount": prompt_tokens,
                "promptTokensDetails": prompt_details,
            },
            **common,
        }
    candidate: dict[str, Any]
    output_tokens = 0
    if outcome is not None and outcome.kind == "image_safety":
        candidate = {
            "finishReason": outcome.error_code or "IMAGE_SAFETY",
            "finishMessage": "Unable to show the generated image: it was filtered out by a safety check.",
            "index": 0,
        }
    elif outcome is not None and outcome.kind == "no_image":
        text = "I couldn't make an image for that request. Could you describe it differently?"
        output_tokens = len(text) // 4
        candidate = {
            "content": {"role": "model", "parts": [{"text": text}]},
            "finishReason": outcome.error_code or "NO_IMAGE",
            "index": 0,
        }
    else:
        parts: list[dict[str, Any]] = []
        if "TEXT" in request.modalities:
            width, height = gemini_nominal_size(request.aspect_ratio, request.image_size)
            text = f"Here is a {request.aspect_ratio} image ({width}x{height}) of: {request.prompt[:200]}"
            parts.append({"text": text})
            output_tokens += len(text) // 4
        if "IMAGE" in request.modalities:
            seed = hashlib.sha256(b"".join(request.images)).digest() if request.images else b""
            png = gemini_png(request.prompt, request.aspect_ratio, request.image_size, seed)
            parts.append({"inlineData": {"mimeType": "image/png", "data": base64.b64encode(png).decode()}})
            output_tokens += _IMAGE_TOKENS[request.image_size]
        candidate = {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
    usage: dict[str, Any] = {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": prompt_tokens + output_tokens,
        "promptTokensDetails": prompt_details,
    }
    if "IMAGE" in request.modalities and candidate.get("finishReason") == "STOP":
        usage["candidatesTokensDetails"] = [{"modality": "IMAGE", "tokenCount": _IMAGE_TOKENS[request.image_size]}]
    return {"candidates": [candidate], "usageMetadata": usage, **common}

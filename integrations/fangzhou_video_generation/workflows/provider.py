"""A typed client for Volcengine Ark's video generation tasks (``/api/v3/contents/generations/tasks``), and the
worker's Ark settings. Used only by the activities: neither main nor the workflow code imports it. Every failure
is a ``ProviderError`` with Ark's own ``error.code`` when Ark gave one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from services.shared.provider_client import ErrorDetail, ProviderError, ProviderHttp, envelope_error
from services.shared.settings import Env, ProviderEndpoint, SettingsError
from services.shared.submit_poll import PollPolicy

from ..schemas import ArkTaskView, VideoRequest

TASKS_PATH = "/api/v3/contents/generations/tasks"
# Ark's bounds for execution_expires_after.
MIN_EXPIRES_AFTER = 3600
MAX_EXPIRES_AFTER = 259_200


@dataclass(frozen=True)
class ArkSettings:
    """The worker's Ark settings. Ark's address and key come from the manifest's provider variables (ARK_BASE_URL,
    ARK_API_KEY: ``ProviderEndpoint``); the rest from ``ARK_*`` here."""

    endpoint: ProviderEndpoint
    model: str = "doubao-seedance-1-0-pro-250528"
    poll: PollPolicy = field(default_factory=PollPolicy)
    request_timeout_seconds: float = 30.0
    # Each wait for the next bytes of a media download.
    media_timeout_seconds: float = 60.0
    max_video_bytes: int = 512 * 1024 * 1024

    @classmethod
    def from_env(cls, env: Env, endpoint: ProviderEndpoint) -> ArkSettings:
        return cls(
            endpoint=endpoint,
            model=env.get("ARK_MODEL", cls.model),
            poll=PollPolicy.from_env(env, "ARK"),
            request_timeout_seconds=env.get_float("ARK_REQUEST_TIMEOUT_SECONDS", cls.request_timeout_seconds),
            media_timeout_seconds=env.get_float("ARK_MEDIA_TIMEOUT_SECONDS", cls.media_timeout_seconds),
            max_video_bytes=env.get_int("ARK_MAX_VIDEO_BYTES", cls.max_video_bytes, minimum=1),
        )

    def __post_init__(self) -> None:
        if self.request_timeout_seconds <= 0 or self.media_timeout_seconds <= 0:
            raise SettingsError("ARK_REQUEST_TIMEOUT_SECONDS and ARK_MEDIA_TIMEOUT_SECONDS must be positive")


# --- Ark's wire format ---------------------------------------------------------------------------------------


class _Created(msgspec.Struct):
    id: str


class _Content(msgspec.Struct):
    video_url: str | None = None
    last_frame_url: str | None = None


class _Task(msgspec.Struct):
    id: str
    status: str
    model: str = ""
    content: _Content | None = None
    error: ErrorDetail | None = None
    usage: dict[str, Any] | None = None
    seed: int | None = None
    resolution: str | None = None
    ratio: str | None = None
    duration: int | None = None
    framespersecond: int | None = None

    def view(self) -> ArkTaskView:
        content = self.content or _Content()
        return ArkTaskView(
            id=self.id,
            status=self.status,
            model=self.model,
            video_url=content.video_url,
            last_frame_url=content.last_frame_url,
            error_code=self.error.code if self.error else None,
            error_message=self.error.message if self.error else None,
            seed=self.seed,
            resolution=self.resolution,
            ratio=self.ratio,
            duration=self.duration,
            framespersecond=self.framespersecond,
            usage={k: v for k, v in (self.usage or {}).items() if isinstance(v, int) and not isinstance(v, bool)},
        )


def expires_after(poll: PollPolicy) -> int:
    """Ark's execution_expires_after matching our deadline, so Ark gives up on a job about when we do."""
    return int(min(max(poll.deadline_seconds, MIN_EXPIRES_AFTER), MAX_EXPIRES_AFTER))


def create_body(request: VideoRequest, model: str, callback_url: str | None, expires: int) -> dict[str, Any]:
    """Ark's create-task request for a user's request."""
    content: list[dict[str, Any]] = [{"type": "text", "text": request.prompt}]
    images = [("first_frame", request.first_frame), ("last_frame", request.last_frame)]
    images += [("reference_image", url) for url in request.reference_images]
    content += [{"type": "image_url", "image_url": {"url": url}, "role": role} for role, url in images if url]
    body: dict[str, Any] = {"model": model, "content": content, "execution_expires_after": expires}
    optional = {
        "ratio": request.ratio,
        "duration": request.duration,
        "resolution": request.resolution,
        "seed": request.seed,
        "watermark": request.watermark,
        "camera_fixed": request.camera_fixed,
    }
    body.update({name: value for name, value in optional.items() if value is not None})
    if request.return_last_frame:
        body["return_last_frame"] = True
    if callback_url:
        body["callback_url"] = callback_url
    return body


class ArkClient:
    def __init__(self, http: httpx.AsyncClient, settings: ArkSettings) -> None:
        codes = {"unavailable": "ark_unreachable", "uncertain": "ark_submit_uncertain", "media": "ark_media"}
        self.http = ProviderHttp(http, "Ark", envelope_error, **codes)
        self._settings = settings
        self._tasks_url = f"{settings.endpoint.base_url}{TASKS_PATH}"
        self._headers = {"Authorization": f"Bearer {settings.endpoint.api_key}"}

    async def create(self, body: dict[str, Any]) -> str:
        """Create a task; its id. Ark has no idempotency key: once the request may have reached Ark, a failure is
        final (``ark_submit_uncertain``), since retrying could start a second, paid job nobody tracks."""
        timeout = self._settings.request_timeout_seconds
        created = await self.http.submit_json(
            "POST", self._tasks_url, _Created, timeout_seconds=timeout, json=body, headers=self._headers
        )
        return created.id

    async def get(self, task_id: str) -> ArkTaskView:
        response = await self._send("GET", task_id)
        try:
            return msgspec.json.decode(response.content, type=_Task).view()
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ProviderError("ark_bad_response", f"Ark's task could not be read: {exc}", retryable=True) from exc

    async def delete(self, task_id: str) -> None:
        """Cancel a queued task (or delete a finished one's record: callers check the status first)."""
        await self._send("DELETE", task_id)

    async def _send(self, method: str, task_id: str) -> httpx.Response:
        url = f"{self._tasks_url}/{quote(task_id, safe='')}"
        timeout = self._settings.request_timeout_seconds
        return await self.http.send(method, url, timeout_seconds=timeout, headers=self._headers)

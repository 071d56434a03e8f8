"""Stand-in for Volcengine Ark (火山方舟) video generation (Seedance): ``/api/v3/contents/generations/tasks``.

Each task moves queued -> running -> succeeded over time (``queue_seconds``, then ``run_seconds``); the status
is computed from timestamps whenever it is read, so nothing needs to tick. Only callbacks use timers: when a
task starts running and when it reaches its final status, the task JSON (the same body as GET) is POSTed to
the task's ``callback_url``, with retries. An expired task stays queued until it expires, as a task that never
got a worker does.

``content.video_url`` and ``content.last_frame_url`` point back at this simulator (``/_media/...``) and stop
working ``media_ttl_seconds`` after the task succeeded, like Ark's 24-hour links.

Where Ark lets both a ``--ratio``-style command in the prompt text and a top-level field set a parameter,
the top-level field wins here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import random
import re
import secrets
import string
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import httpx
import msgspec
from litestar import Request, Response, delete, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from ..errors import ControlError, ProviderError, json_response
from ..media import Media, parse_ratio, png_size
from ..mp4 import ARK_VIDEO_SIZES, ark_video_spec, build_mp4, last_frame_png
from ..stand_in import NonNegative, StandIn
from ..state import Incoming, Shared

logger = logging.getLogger(__name__)

AnyRequest = Request[Any, Any, Any]
TASKS_PATH = "/api/v3/contents/generations/tasks"
ROUTES = frozenset({"create_task", "get_task", "list_tasks", "delete_task"})
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "expired")
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "expired"})
RATIOS = ("16:9", "4:3", "1:1", "3:4", "9:16", "21:9")
ROLES = ("first_frame", "last_frame", "reference_image")
FPS = 24
_MEDIA_CACHE_SIZE = 8


@dataclass(frozen=True)
class ArkModel:
    default_resolution: str
    min_duration: int
    max_duration: int
    text_to_video: bool
    # Image roles the model takes: "first_frame", "first_last_frame", "reference_image".
    image_modes: frozenset[str]


MODELS: dict[str, ArkModel] = {
    "doubao-seedance-1-0-pro-250528": ArkModel("1080p", 2, 12, True, frozenset({"first_frame", "first_last_frame"})),
    "doubao-seedance-1-0-pro-fast-251015": ArkModel("1080p", 2, 12, True, frozenset({"first_frame"})),
    "doubao-seedance-1-0-lite-t2v-250428": ArkModel("720p", 2, 12, True, frozenset()),
    "doubao-seedance-1-0-lite-i2v-250428": ArkModel(
        "720p", 2, 12, False, frozenset({"first_frame", "first_last_frame", "reference_image"})
    ),
    "doubao-seedance-1-5-pro-251215": ArkModel("720p", 4, 12, True, frozenset({"first_frame", "first_last_frame"})),
}

# Text commands Ark reads from the end of the prompt, by long and short name.
_COMMANDS = {
    "ratio": "ratio",
    "rt": "ratio",
    "resolution": "resolution",
    "rs": "resolution",
    "duration": "duration",
    "dur": "duration",
    "framespersecond": "framespersecond",
    "framepersecond": "framespersecond",
    "fps": "framespersecond",
    "seed": "seed",
    "watermark": "watermark",
    "wm": "watermark",
    "camerafixed": "camera_fixed",
    "cf": "camera_fixed",
}
_COMMAND = re.compile(r"--([a-z]+)\s+(\S+)")
_DEFAULT_FAIL_CODE = "OutputVideoSensitiveContentDetected"
_FAIL_MESSAGES = {
    _DEFAULT_FAIL_CODE: "The request failed because the output video may contain sensitive information.",
    "InputTextSensitiveContentDetected": "The request failed because the input text may contain sensitive information.",
    "InternalServiceError": "The service encountered an unexpected internal error.",
}


class ArkKnobs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Default phase lengths of a new task.
    ark_queue_seconds: NonNegative = 1.0
    ark_run_seconds: NonNegative = 3.0
    # How long video_url / last_frame_url stay valid after the task succeeded.
    media_ttl_seconds: NonNegative = 24 * 3600.0
    # Callback delivery: total attempts per status change, and the first pause between them (doubling).
    callback_attempts: Annotated[int, msgspec.Meta(ge=1)] = 3
    callback_retry_seconds: NonNegative = 0.5


def request_id() -> str:
    return secrets.token_hex(16)


def ark_error(status: int, code: str, message: str, kind: str, param: str = "") -> ProviderError:
    return ProviderError(
        status,
        {"error": {"code": code, "message": f"{message} Request id: {request_id()}", "param": param, "type": kind}},
    )


def _invalid(param: str, message: str | None = None) -> ProviderError:
    text = message or f"The parameter `{param}` specified in the request is not valid."
    return ark_error(400, "InvalidParameter", text, "BadRequest", param)


class ArkErrors:
    malformed_body = b'{"id": "cgt-20250101000000-abcde", "model": "doubao-seedance-1-0-pro-250528", "status": "runn'

    def rate_limited(self, code: str | None) -> ProviderError:
        code = code or "RateLimitExceeded.EndpointRPMExceeded"
        if code == "ServerOverloaded":
            message = "The service is currently unable to handle additional requests due to server overload."
        else:
            message = "The request has exceeded the requests per minute (RPM) limit of the endpoint. Retry later."
        return ark_error(429, code, message, "TooManyRequests")

    def server_error(self, status: int, code: str | None) -> ProviderError:
        if status == 503:
            return ark_error(
                503, code or "ServiceUnavailable", "The service is temporarily unavailable.", "ServiceUnavailable"
            )
        return ark_error(
            500,
            code or "InternalServiceError",
            "The service encountered an unexpected internal error.",
            "InternalServerError",
        )

    def timed_out(self) -> ProviderError:
        return ark_error(504, "RequestTimeout", "The request timed out.", "GatewayTimeout")


@dataclass
class CallbackRecord:
    status: str
    attempts: int = 0
    delivered: bool = False
    last_status_code: int | None = None
    last_error: str | None = None


@dataclass
class ArkTask:
    id: str
    # What was asked for, validated; its seed is drawn when the request asked for a random one.
    request: CreateRequest
    created_at: float
    queue_seconds: float
    run_seconds: float
    base_url: str
    outcome: str = "succeeded"  # final status unless cancelled: succeeded, failed or expired
    error_code: str | None = None
    error_message: str | None = None
    cancelled_at: float | None = None
    deleted: bool = False
    queries: int = 0
    callbacks: list[CallbackRecord] = field(default_factory=list)
    notified: set[str] = field(default_factory=set)
    # Callbacks of one task go out one at a time, in order of the status changes.
    delivery: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def running_at(self) -> float:
        return self.created_at + self.queue_seconds

    @property
    def finished_at(self) -> float:
        """When the final status is reached (Ark also expires tasks older than execution_expires_after)."""
        return min(self.running_at + self.run_seconds, self.created_at + self.request.execution_expires_after)

    @property
    def final_status(self) -> str:
        if self.running_at + self.run_seconds > self.created_at + self.request.execution_expires_after:
            return "expired"
        return self.outcome

    def status(self, now: float) -> str:
        if self.cancelled_at is not None and now >= self.cancelled_at:
            return "cancelled"
        if now >= self.finished_at:
            return self.final_status
        if now >= self.running_at and self.final_status != "expired":
            return "running"
        return "queued"

    def updated_at(self, now: float) -> float:
        status = self.status(now)
        if status == "cancelled" and self.cancelled_at is not None:
            return self.cancelled_at
        if status in TERMINAL:
            return self.finished_at
        return self.running_at if status == "running" else self.created_at

    def transitions(self) -> list[tuple[str, float]]:
        """Status changes still ahead of a task that is not cancelled, with their times."""
        if self.final_status == "expired":
            return [("expired", self.finished_at)]
        return [("running", self.running_at), (self.final_status, self.finished_at)]

    def video_spec_seed(self) -> str:
        return f"{self.request.prompt}\x00{self.request.seed}"

    def completion_tokens(self) -> int:
        # Ark bills (width x height x fps x duration) / 1024 tokens for the nominal output size.
        width, height = ARK_VIDEO_SIZES[self.request.resolution][self.request.ratio]
        return width * height * FPS * self.request.duration // 1024

    def to_json(self, now: float, media_ttl: float) -> dict[str, Any]:
        status = self.status(now)
        body: dict[str, Any] = {"id": self.id, "model": self.request.model, "status": status}
        if status == "succeeded":
            expires = int(self.finished_at + media_ttl)
            content = {"video_url": f"{self.base_url}/_media/{self.id}.mp4?X-Sim-Expires={expires}"}
            if self.request.return_last_frame:
                content["last_frame_url"] = f"{self.base_url}/_media/{self.id}-last.png?X-Sim-Expires={expires}"
            body["content"] = content
            tokens = self.completion_tokens()
            body["usage"] = {"completion_tokens": tokens, "total_tokens": tokens}
        if status == "failed":
            body["error"] = {"code": self.error_code, "message": self.error_message}
        body.update(
            {
                "created_at": int(self.created_at),
                "updated_at": int(self.updated_at(now)),
                "seed": self.request.seed,
                "resolution": self.request.resolution,
                "ratio": self.request.ratio,
                "duration": self.request.duration,
                "framespersecond": FPS,
                "service_tier": self.request.service_tier,
                "execution_expires_after": self.request.execution_expires_after,
            }
        )
        return body


class TaskPatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Control API: change a task that has not finished yet. Times count from the task's creation."""

    queue_seconds: NonNegative | None = None
    run_seconds: NonNegative | None = None
    outcome: Literal["succeeded", "failed", "expired"] | None = None
    error_code: str | None = None
    error_message: str | None = None


class Ark(StandIn):
    name = "ark"
    routes = ROUTES
    prompt_routes = frozenset({"create_task"})
    outcome_tags = {"fail": "task_failed", "failed": "task_failed", "task_failed": "task_failed", "expired": "expired"}
    knobs = ArkKnobs

    def __init__(self, shared: Shared) -> None:
        super().__init__(shared)
        self.errors = ArkErrors()
        self._tasks: dict[str, ArkTask] = {}
        self._timers: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        # Media is deterministic, so a few recent files are kept only to spare repeated downloads the encoding.
        self._media_cache: OrderedDict[str, Media] = OrderedDict()

    # --- provider routes -------------------------------------------------------------------------------------

    def http_routes(self) -> list[HTTPRouteHandler]:
        @post(TASKS_PATH, status_code=200, operation_id="ArkCreateTask", description="Create a video generation task.")
        async def create_task(request: AnyRequest) -> Response[bytes]:
            return await self._serve("create_task", request, self._create)

        @get(TASKS_PATH, operation_id="ArkListTasks", description="List tasks (page_num, page_size, filter.*).")
        async def list_tasks(request: AnyRequest) -> Response[bytes]:
            return await self._serve("list_tasks", request, self._list)

        @get(TASKS_PATH + "/{task_id:str}", operation_id="ArkGetTask", description="Query one task.")
        async def get_task(task_id: FromPath[str], request: AnyRequest) -> Response[bytes]:
            return await self._serve("get_task", request, lambda i: self._get(task_id, i))

        @delete(
            TASKS_PATH + "/{task_id:str}",
            status_code=200,
            operation_id="ArkDeleteTask",
            description="Cancel a queued task, or delete a finished one.",
        )
        async def delete_task(task_id: FromPath[str], request: AnyRequest) -> Response[bytes]:
            return await self._serve("delete_task", request, lambda i: self._delete(task_id, i))

        @get(
            "/_media/{name:str}",
            operation_id="ArkMedia",
            description="Video ({id}.mp4) or last frame ({id}-last.png) of a succeeded task, until the link expires.",
        )
        async def media(name: FromPath[str]) -> Response[bytes]:
            return await self._media_response(name)

        return [create_task, list_tasks, get_task, delete_task, media]

    async def _serve(
        self, route: str, request: AnyRequest, handle: Callable[[Incoming], Awaitable[Response[bytes]]]
    ) -> Response[bytes]:
        return await self.serve(route, await self.shared.incoming(request), self._authenticate, handle)

    def _authenticate(self, incoming: Incoming) -> None:
        scheme, _, key = incoming.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or key.strip() not in self.api_keys:
            raise ark_error(
                401,
                "AuthenticationError",
                "The API key or AK/SK in the request is missing or invalid.",
                "Unauthorized",
            )

    @property
    def _knobs(self) -> ArkKnobs:
        return self.shared.config.of(ArkKnobs)

    async def _create(self, incoming: Incoming) -> Response[bytes]:
        request = parse_create(incoming.body)
        decision = self.shared.faults.decide(self.name, "create_task", request.prompt)
        if decision.fault is not None:
            return await self.fault_response(decision.fault, incoming)
        knobs = self._knobs
        now = self.shared.clock()
        task = ArkTask(
            id=_task_id(now),
            request=request,
            created_at=now,
            queue_seconds=knobs.ark_queue_seconds,
            run_seconds=knobs.ark_run_seconds if decision.slow_seconds is None else decision.slow_seconds,
            base_url=incoming.base_url,
        )
        if decision.outcome is not None:
            _apply_outcome(task, decision.outcome.kind, decision.outcome.error_code, None)
        self._tasks[task.id] = task
        self._schedule(task)
        logger.info("ark task %s created (%s, final status %s)", task.id, task.request.model, task.final_status)
        return json_response({"id": task.id})

    async def _get(self, task_id: str, incoming: Incoming) -> Response[bytes]:
        task = self._find(task_id)
        task.queries += 1
        decision = self.shared.faults.decide(self.name, "get_task", task.request.prompt)
        if decision.fault is not None:
            return await self.fault_response(decision.fault, incoming)
        return json_response(task.to_json(self.shared.clock(), self._knobs.media_ttl_seconds))

    async def _list(self, incoming: Incoming) -> Response[bytes]:
        query = incoming.query
        page_num = _int_param(query, "page_num", 1, 1, 500)
        page_size = _int_param(query, "page_size", 10, 1, 500)
        status = _one(query, "filter.status")
        if status is not None and status not in STATUSES:
            raise _invalid("filter.status")
        ids = {i for raw in query.get("filter.task_ids", []) for i in raw.split(",") if i}
        model = _one(query, "filter.model")
        decision = self.shared.faults.decide(self.name, "list_tasks", None)
        if decision.fault is not None:
            return await self.fault_response(decision.fault, incoming)
        now = self.shared.clock()
        ttl = self._knobs.media_ttl_seconds
        selected = [
            t
            for t in reversed(self._tasks.values())
            if not t.deleted
            and (status is None or t.status(now) == status)
            and (not ids or t.id in ids)
            and (model is None or t.request.model == model)
        ]
        page = selected[(page_num - 1) * page_size : page_num * page_size]
        return json_response({"items": [t.to_json(now, ttl) for t in page], "total": len(selected)})

    async def _delete(self, task_id: str, incoming: Incoming) -> Response[bytes]:
        task = self._find(task_id)
        decision = self.shared.faults.decide(self.name, "delete_task", task.request.prompt)
        if decision.fault is not None:
            return await self.fault_response(decision.fault, incoming)
        now = self.shared.clock()
        status = task.status(now)
        if status == "queued":
            task.cancelled_at = now
            self._cancel_timer(task.id)
            if task.request.callback_url:
                self._spawn(self._notify(task, "cancelled", now))
            logger.info("ark task %s cancelled", task.id)
        elif status in ("succeeded", "failed", "expired"):
            task.deleted = True
        else:
            raise ark_error(
                400,
                "InvalidParameter",
                f"The task {task.id} is {status} and cannot be cancelled or deleted; only queued tasks can be "
                "cancelled and only finished tasks deleted.",
                "BadRequest",
                "id",
            )
        return json_response({})

    def _find(self, task_id: str) -> ArkTask:
        task = self._tasks.get(task_id)
        if task is None or task.deleted:
            raise ark_error(404, "ResourceNotFound", f"The specified task {task_id} is not found.", "NotFound", "id")
        return task

    # --- media -----------------------------------------------------------------------------------------------

    async def _media_response(self, name: str) -> Response[bytes]:
        stats = self.shared.stats
        stats.request(self.name, "media", self.shared.clock())
        try:
            media = await self.media(name)
        except ControlError as error:
            stats.response(self.name, "media", error.status)
            message = "Request has expired" if error.status == 403 else "The specified key does not exist."
            xml = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{error.detail}</Code><Message>{message}</Message>"
                f"<RequestId>{request_id()}</RequestId></Error>"
            )
            return Response(content=xml.encode(), status_code=error.status, media_type="application/xml")
        stats.response(self.name, "media", 200)
        return Response(content=media.body, media_type=media.media_type)

    async def media(self, name: str) -> Media:
        """The video or last frame behind a task's URLs; ControlError 404/403 (S3 words) when it cannot be had."""
        task_id, kind = _media_name(name)
        task = self._tasks.get(task_id or "")
        now = self.shared.clock()
        if task is None or task.status(now) != "succeeded" or (kind == "png" and not task.request.return_last_frame):
            raise ControlError(404, "NoSuchKey")
        if now > task.finished_at + self._knobs.media_ttl_seconds:
            raise ControlError(403, "AccessDenied")
        cached = self._media_cache.get(name)
        if cached is not None:
            self._media_cache.move_to_end(name)
            return cached
        asked = task.request
        spec = ark_video_spec(task.video_spec_seed(), asked.resolution, asked.ratio, FPS, asked.duration)
        # Encoding takes up to a few hundred milliseconds: keep the event loop free meanwhile.
        if kind == "mp4":
            media = Media(await asyncio.to_thread(build_mp4, spec), "video/mp4")
        else:
            media = Media(await asyncio.to_thread(last_frame_png, spec), "image/png")
        self._media_cache[name] = media
        while len(self._media_cache) > _MEDIA_CACHE_SIZE:
            self._media_cache.popitem(last=False)
        return media

    # --- control API -----------------------------------------------------------------------------------------

    def control_routes(self) -> list[HTTPRouteHandler]:
        @get("/tasks/{task_id:str}", operation_id="SimGetArkTask", description="A task with queries and callbacks.")
        async def inspect_task(task_id: FromPath[str]) -> Response[bytes]:
            return json_response(self.inspect(task_id))

        @post(
            "/tasks/{task_id:str}",
            status_code=200,
            operation_id="SimPatchArkTask",
            description="Change an unfinished task: queue_seconds, run_seconds, outcome, error_code, error_message.",
        )
        async def patch_task(task_id: FromPath[str], request: AnyRequest) -> Response[bytes]:
            try:
                patch = msgspec.json.decode(await request.body(), type=TaskPatch)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise ControlError(400, f"invalid task change: {exc}") from exc
            return json_response(self.patch(task_id, patch))

        return [inspect_task, patch_task]

    def stats(self) -> dict[str, Any]:
        # The most tasks that were unfinished (queued or running) at once so far.
        return {"ark_tasks": self.snapshot(), "ark_most_unfinished": _most_at_once(self._unfinished())}

    def _unfinished(self) -> Iterator[tuple[float, float]]:
        """When each task was unfinished: from its creation until its final status (its finish or a cancel)."""
        for task in self._tasks.values():
            end = task.finished_at if task.cancelled_at is None else min(task.cancelled_at, task.finished_at)
            yield task.created_at, end

    def inspect(self, task_id: str) -> dict[str, Any]:
        task = self._tasks.get(task_id)
        if task is None:
            raise ControlError(404, f"no task {task_id}")
        now = self.shared.clock()
        return {
            "task": task.to_json(now, self._knobs.media_ttl_seconds),
            "prompt": task.request.prompt,
            "queries": task.queries,
            "deleted": task.deleted,
            "queue_seconds": task.queue_seconds,
            "run_seconds": task.run_seconds,
            "final_status": "cancelled" if task.cancelled_at is not None else task.final_status,
            "callback_url": task.request.callback_url,
            "callbacks": [msgspec.to_builtins(c) for c in task.callbacks],
        }

    def patch(self, task_id: str, patch: TaskPatch) -> dict[str, Any]:
        task = self._tasks.get(task_id)
        if task is None:
            raise ControlError(404, f"no task {task_id}")
        status = task.status(self.shared.clock())
        if status in TERMINAL:
            raise ControlError(409, f"task {task_id} is already {status}")
        if patch.queue_seconds is not None:
            task.queue_seconds = patch.queue_seconds
        if patch.run_seconds is not None:
            task.run_seconds = patch.run_seconds
        if patch.outcome is not None:
            _apply_outcome(task, patch.outcome, patch.error_code, patch.error_message)
        self._schedule(task)
        return self.inspect(task_id)

    def snapshot(self) -> dict[str, Any]:
        now = self.shared.clock()
        return {
            t.id: {
                "status": t.status(now),
                "queries": t.queries,
                "deleted": t.deleted,
                "callbacks_delivered": sum(1 for c in t.callbacks if c.delivered),
                "callbacks_failed": sum(1 for c in t.callbacks if not c.delivered and c.attempts),
            }
            for t in self._tasks.values()
        }

    # --- callbacks -------------------------------------------------------------------------------------------

    def _schedule(self, task: ArkTask) -> None:
        self._cancel_timer(task.id)
        if task.request.callback_url and task.cancelled_at is None:
            timer = self._spawn(self._run_timeline(task))
            self._timers[task.id] = timer

    def _cancel_timer(self, task_id: str) -> None:
        timer = self._timers.pop(task_id, None)
        if timer is not None:
            timer.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        background: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._background.add(background)
        background.add_done_callback(self._background.discard)
        return background

    async def _run_timeline(self, task: ArkTask) -> None:
        for status, at in task.transitions():
            if status in task.notified:
                continue
            delay = at - self.shared.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            # Delivery runs in its own task so that a slow receiver never delays the timeline itself.
            self._spawn(self._notify(task, status, at))

    async def _notify(self, task: ArkTask, status: str, at: float) -> None:
        if status in task.notified or not task.request.callback_url:
            return
        task.notified.add(status)
        payload = msgspec.json.encode(task.to_json(at, self._knobs.media_ttl_seconds))
        async with task.delivery:
            await self._deliver(task, status, payload)

    async def _deliver(self, task: ArkTask, status: str, payload: bytes) -> None:
        if not task.request.callback_url:
            return
        record = CallbackRecord(status)
        task.callbacks.append(record)
        knobs = self._knobs
        for attempt in range(knobs.callback_attempts):
            record.attempts += 1
            try:
                answer = await self._http().post(
                    task.request.callback_url, content=payload, headers={"Content-Type": "application/json"}
                )
                record.last_status_code = answer.status_code
                if answer.is_success:
                    record.delivered = True
                    return
                record.last_error = f"HTTP {answer.status_code}"
            except httpx.HTTPError as exc:
                record.last_error = f"{type(exc).__name__}: {exc}"
            logger.warning(
                "callback for ark task %s (%s) to %s failed on attempt %d: %s",
                task.id,
                status,
                task.request.callback_url,
                record.attempts,
                record.last_error,
            )
            if attempt + 1 < knobs.callback_attempts:
                await asyncio.sleep(knobs.callback_retry_seconds * 2**attempt)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # trust_env off: callbacks go straight to the receiver, never through a proxy from the environment.
            self._client = httpx.AsyncClient(timeout=10.0, trust_env=False)
        return self._client

    async def reset(self) -> None:
        await self._stop_background()
        self._tasks.clear()
        self._media_cache.clear()

    async def close(self) -> None:
        await self._stop_background()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _stop_background(self) -> None:
        pending = list(self._background)
        for background in pending:
            background.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._background.clear()
        self._timers.clear()


def _most_at_once(intervals: Iterable[tuple[float, float]]) -> int:
    """The most of the half-open intervals [start, end) that overlap at any moment."""
    edges = sorted(edge for start, end in intervals for edge in ((start, 1), (end, -1)))
    most = current = 0
    for _, change in edges:
        current += change
        most = max(most, current)
    return most


def _apply_outcome(task: ArkTask, kind: str, code: str | None, message: str | None) -> None:
    if kind in ("task_failed", "failed"):
        task.outcome = "failed"
        task.error_code = code or _DEFAULT_FAIL_CODE
        task.error_message = message or _FAIL_MESSAGES.get(task.error_code, "The task failed.")
    elif kind == "expired":
        task.outcome = "expired"
    else:
        task.outcome = "succeeded"
        task.error_code = task.error_message = None


def _task_id(now: float) -> str:
    suffix = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))
    return f"cgt-{time.strftime('%Y%m%d%H%M%S', time.gmtime(now))}-{suffix}"


def _media_name(name: str) -> tuple[str | None, str]:
    if name.endswith("-last.png"):
        return name.removesuffix("-last.png"), "png"
    if name.endswith(".mp4"):
        return name.removesuffix(".mp4"), "mp4"
    return None, ""


def _one(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name, [])
    return values[-1] if values else None


def _int_param(query: Mapping[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    raw = _one(query, name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise _invalid(name) from exc
    if not low <= value <= high:
        raise _invalid(name, f"The parameter `{name}` must be between {low} and {high}.")
    return value


# --- create request ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateRequest:
    model: str
    prompt: str
    content: list[dict[str, Any]]
    ratio: str
    resolution: str
    duration: int
    seed: int
    return_last_frame: bool
    callback_url: str | None
    service_tier: str
    execution_expires_after: int


def parse_create(body: bytes) -> CreateRequest:
    """Validate a create-task body like Ark does; raises ProviderError (400, or 404 for an unknown model)."""
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise _invalid("body", f"The request body is not valid JSON: {exc}.") from exc
    if not isinstance(raw, dict):
        raise _invalid("body", "The request body must be a JSON object.")
    model = raw.get("model")
    if not isinstance(model, str) or not model:
        raise ark_error(400, "MissingParameter", "The request is missing the parameter `model`.", "BadRequest", "model")
    info = MODELS.get(model)
    if info is None:
        raise ark_error(
            404,
            "InvalidEndpointOrModel.NotFound",
            f"The model or endpoint {model} does not exist or you do not have access to it.",
            "NotFound",
            "model",
        )
    content = raw.get("content")
    if not isinstance(content, list) or not content:
        raise ark_error(
            400, "MissingParameter", "The request is missing the parameter `content`.", "BadRequest", "content"
        )
    text: str | None = None
    images: list[tuple[str, str | None]] = []
    for item in content:
        if not isinstance(item, dict):
            raise _invalid("content")
        if item.get("type") == "text":
            if text is not None:
                raise _invalid("content", "The content may hold only one text item.")
            if not isinstance(item.get("text"), str):
                raise _invalid("content.text")
            text = item["text"]
        elif item.get("type") == "image_url":
            image = item.get("image_url")
            url = image.get("url") if isinstance(image, dict) else None
            if not isinstance(url, str) or not _valid_image_url(url):
                raise _invalid("content.image_url.url")
            role = item.get("role")
            if role is not None and role not in ROLES:
                raise _invalid("content.role")
            images.append((url, role))
        else:
            raise _invalid("content.type")
    prompt = text or ""
    commands = _commands(prompt)
    mode = _image_mode(images)
    if mode is None and not (info.text_to_video and prompt.strip()):
        raise _invalid("content", f"The model {model} needs a text prompt." if info.text_to_video else None)
    if mode is not None and mode not in info.image_modes:
        raise _invalid("content.role", f"The model {model} does not support {mode.replace('_', ' ')} generation.")

    ratio = _setting(raw, commands, "ratio", str) or ("adaptive" if mode else "16:9")
    if ratio not in (*RATIOS, "adaptive"):
        raise _invalid("ratio")
    if ratio == "adaptive":
        ratio = _ratio_of_first_image(images) or "16:9"
    resolution = _setting(raw, commands, "resolution", str) or info.default_resolution
    if resolution not in ARK_VIDEO_SIZES:
        raise _invalid("resolution")
    duration = _setting(raw, commands, "duration", int)
    duration = 5 if duration is None else duration
    if not info.min_duration <= duration <= info.max_duration:
        raise _invalid(
            "duration", f"The parameter `duration` must be between {info.min_duration} and {info.max_duration}."
        )
    fps = _setting(raw, commands, "framespersecond", int)
    if fps is not None and fps != FPS:
        raise _invalid("framespersecond")
    seed = _setting(raw, commands, "seed", int)
    seed = -1 if seed is None else seed
    if not -1 <= seed <= 2**32 - 1:
        raise _invalid("seed")
    if seed == -1:
        seed = random.randint(0, 2**32 - 1)
    for flag in ("watermark", "camera_fixed"):
        _setting(raw, commands, flag, bool)
    return_last_frame = raw.get("return_last_frame", False)
    if not isinstance(return_last_frame, bool):
        raise _invalid("return_last_frame")
    callback_url = raw.get("callback_url")
    if callback_url is not None and (
        not isinstance(callback_url, str) or not callback_url.startswith(("http://", "https://"))
    ):
        raise _invalid("callback_url")
    service_tier = raw.get("service_tier", "default")
    if service_tier not in ("default", "flex"):
        raise _invalid("service_tier")
    expires_after = raw.get("execution_expires_after", 172800)
    if not isinstance(expires_after, int) or isinstance(expires_after, bool) or not 3600 <= expires_after <= 259200:
        raise _invalid("execution_expires_after")
    return CreateRequest(
        model=model,
        prompt=prompt,
        content=content,
        ratio=ratio,
        resolution=resolution,
        duration=duration,
        seed=seed,
        return_last_frame=return_last_frame,
        callback_url=callback_url or None,
        service_tier=service_tier,
        execution_expires_after=expires_after,
    )


def _commands(text: str) -> dict[str, str]:
    return {_COMMANDS[name]: value for name, value in _COMMAND.findall(text) if name in _COMMANDS}


def _setting(raw: dict[str, Any], commands: dict[str, str], name: str, kind: type[Any]) -> Any:
    """A parameter from the top-level field, else from a ``--name value`` command in the prompt text."""
    if name in raw and raw[name] is not None:
        value = raw[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise _invalid(name)
        return value
    if name not in commands:
        return None
    text = commands[name]
    if kind is str:
        return text
    if kind is bool:
        if text not in ("true", "false"):
            raise _invalid(name)
        return text == "true"
    try:
        return int(text)
    except ValueError as exc:
        raise _invalid(name) from exc


def _image_mode(images: list[tuple[str, str | None]]) -> str | None:
    if not images:
        return None
    roles = [role for _, role in images]
    if len(images) == 1 and roles[0] in (None, "first_frame"):
        return "first_frame"
    if sorted(r or "" for r in roles) == ["first_frame", "last_frame"]:
        return "first_last_frame"
    if all(r == "reference_image" for r in roles) and len(images) <= 4:
        return "reference_image"
    raise _invalid(
        "content.role",
        "Images must be one first_frame, a first_frame with a last_frame, or 1 to 4 reference_image items.",
    )


def _valid_image_url(url: str) -> bool:
    if url.startswith(("http://", "https://")):
        return True
    header, sep, data = url.partition(",")
    if not (sep and header.startswith("data:image/") and header.endswith(";base64")):
        return False
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _ratio_of_first_image(images: list[tuple[str, str | None]]) -> str | None:
    """``adaptive`` follows the first frame when we can see it (a PNG data URL)."""
    for url, role in images:
        if role not in (None, "first_frame") or not url.startswith("data:image/png;base64,"):
            continue
        try:
            width, height = png_size(base64.b64decode(url.partition(",")[2]))
        except ValueError:
            return None
        target = width / height
        return min(RATIOS, key=lambda r: abs(parse_ratio(r)[0] / parse_ratio(r)[1] - target))
    return None


STAND_IN = Ark

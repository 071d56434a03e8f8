from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import timedelta
from typing import IO

from temporalio import activity
from temporalio.exceptions import ApplicationError

from services.shared.storage import ObjectStore
from services.shared.tasks import StoredObject

from ..schemas import (
    CANCEL_ACTIVITY,
    COPY_ACTIVITY,
    QUERY_ACTIVITY,
    SUBMIT_ACTIVITY,
    ArkTaskView,
    CancelInput,
    CancelOutcome,
    CopyInput,
    CopyResult,
    QueryInput,
    SubmitInput,
    Submitted,
)
from .ark import ArkClient, ArkError, ArkSettings, create_body, expires_after

# Downloads stay in memory up to this size, then spill to a temporary file: memory is bounded for any video.
SPOOL_BYTES = 8 * 1024 * 1024
MAX_FRAME_BYTES = 32 * 1024 * 1024


def object_key(task_id: str, name: str) -> str:
    # Deterministic, so a retried copy overwrites instead of leaving a second object.
    return f"tasks/{task_id}/{name}"


def application_error(error: ArkError) -> ApplicationError:
    """Ark's error as the activity's failure: its code becomes the failure type, which the workflow keeps as
    the task's error code; only retryable errors are retried (429 after Ark's Retry-After when given)."""
    delay = timedelta(seconds=error.retry_after) if error.retry_after is not None else None
    return ApplicationError(error.message, type=error.code, non_retryable=not error.retryable, next_retry_delay=delay)


def _sniff_video(head: bytes) -> tuple[str, str]:
    # ISO BMFF: the first box is `ftyp` (size, then the type at bytes 4..8).
    if head[4:8] == b"ftyp":
        return "video/mp4", "video.mp4"
    raise ApplicationError("Ark's video is not an MP4 file", type="ark_media_invalid", non_retryable=True)


def _sniff_image(head: bytes) -> tuple[str, str]:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png", "last_frame.png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg", "last_frame.jpg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp", "last_frame.webp"
    raise ApplicationError(
        "Ark's last frame is not a PNG, JPEG or WebP image", type="ark_media_invalid", non_retryable=True
    )


class FangzhouActivities:
    def __init__(self, ark: ArkClient, store: ObjectStore, settings: ArkSettings) -> None:
        self._ark = ark
        self._store = store
        self._settings = settings

    @activity.defn(name=SUBMIT_ACTIVITY)
    async def submit(self, input: SubmitInput) -> Submitted:
        poll = input.poll or self._settings.poll
        model = input.request.model or self._settings.model
        body = create_body(input.request, model, input.callback_url, expires_after(poll))
        try:
            provider_task_id = await self._ark.create(body)
        except ArkError as exc:
            raise application_error(exc) from exc
        activity.logger.info("task %s submitted to Ark as %s (%s)", input.task_id, provider_task_id, model)
        return Submitted(provider_task_id=provider_task_id, model=model, poll=poll)

    @activity.defn(name=QUERY_ACTIVITY)
    async def query(self, input: QueryInput) -> ArkTaskView:
        try:
            return await self._ark.get(input.provider_task_id)
        except ArkError as exc:
            raise application_error(exc) from exc

    @activity.defn(name=CANCEL_ACTIVITY)
    async def cancel(self, input: CancelInput) -> CancelOutcome:
        """Cancel the Ark job if it is still queued. Ark cannot stop a running job, and DELETE on a finished one
        would erase its record, so the status is read first."""
        try:
            view = await self._ark.get(input.provider_task_id)
            if view.status != "queued":
                return CancelOutcome(cancelled=False, status=view.status)
            try:
                await self._ark.delete(input.provider_task_id)
            except ArkError as exc:
                if exc.status != 400:
                    raise
                # It started running between the read and the delete.
                return CancelOutcome(cancelled=False, status=(await self._ark.get(input.provider_task_id)).status)
        except ArkError as exc:
            if exc.status == 404:
                return CancelOutcome(cancelled=False, status="not_found")
            raise application_error(exc) from exc
        return CancelOutcome(cancelled=True, status="cancelled")

    @activity.defn(name=COPY_ACTIVITY)
    async def copy_result(self, input: CopyInput) -> CopyResult:
        """Copy the video (and last frame) from Ark's short-lived links into object storage."""
        objects = {
            "video": await self._copy(input.task_id, input.video_url, self._settings.max_video_bytes, _sniff_video)
        }
        if input.last_frame_url:
            objects["last_frame"] = await self._copy(input.task_id, input.last_frame_url, MAX_FRAME_BYTES, _sniff_image)
        return CopyResult(objects=objects)

    async def _copy(
        self, task_id: str, url: str, limit: int, sniff: Callable[[bytes], tuple[str, str]]
    ) -> StoredObject:
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as buffer:
            try:
                # Heartbeats let a cancel reach a long download and let a new worker take over a dead one's.
                size = await self._ark.download(url, buffer, limit, activity.heartbeat)
            except ArkError as exc:
                raise application_error(exc) from exc
            content_type, name = sniff(_head(buffer))
            key = object_key(task_id, name)
            try:
                await self._store.put_file(key, buffer, size, content_type)
            except Exception as exc:
                # Ours, not Ark's: retried by the activity's retry policy, then reported under our own code.
                raise ApplicationError(f"could not store {key}: {exc!r}", type="storage_unavailable") from exc
        activity.logger.info("task %s: stored %s (%d bytes)", task_id, key, size)
        return StoredObject(key=key, content_type=content_type, size=size)


def _head(buffer: IO[bytes]) -> bytes:
    buffer.seek(0)
    head = buffer.read(16)
    buffer.seek(0)
    return head

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from datetime import timedelta
from typing import TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from services.shared.storage import ObjectStore
from services.shared.tasks import StoredObject

from ..schemas import GENERATE_ACTIVITY, GeneratedImage, GenerateInput, Usage
from .provider import GeminiClient, GeminiError, png_dimensions

T = TypeVar("T")

HEARTBEAT_SECONDS = 2.0
# A provider's own retryDelay is honoured, but never beyond the workflow's longest backoff.
MAX_RETRY_DELAY_SECONDS = 60.0
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


def object_key(task_id: str, mime_type: str) -> str:
    # Deterministic, so a retried attempt overwrites the same object instead of leaving a second one.
    return f"tasks/{task_id}/image.{_EXTENSIONS.get(mime_type, 'bin')}"


class ImageActivities:
    def __init__(self, store: ObjectStore, gemini: GeminiClient, heartbeat_seconds: float = HEARTBEAT_SECONDS) -> None:
        self._store = store
        self._gemini = gemini
        self._heartbeat_seconds = heartbeat_seconds

    @activity.defn(name=GENERATE_ACTIVITY)
    async def generate(self, input: GenerateInput) -> GeneratedImage:
        """Call generateContent, put the image into object storage, return where it is (never the bytes)."""
        try:
            content = await self._heartbeating(self._gemini.generate(input.job))
        except GeminiError as exc:
            raise provider_failure(exc) from exc
        key = object_key(input.task_id, content.mime_type)
        try:
            await self._heartbeating(self._store.put_bytes(key, content.image, content.mime_type))
        except Exception as exc:
            raise ApplicationError(
                f"could not store the image at {key}: {type(exc).__name__}: {exc}", type="storage_unavailable"
            ) from exc
        width, height = png_dimensions(content.image) or (None, None)
        return GeneratedImage(
            image=StoredObject(key=key, content_type=content.mime_type, size=len(content.image)),
            width=width,
            height=height,
            model_version=content.model_version,
            text=content.text,
            usage=Usage(content.prompt_tokens, content.output_tokens, content.total_tokens),
        )

    async def _heartbeating(self, work: Awaitable[T]) -> T:
        """Await ``work`` while heartbeating, so a dead worker is noticed within the heartbeat timeout and a
        cancelled task stops the call (cancellation arrives through heartbeats)."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self._heartbeat_seconds)
                if done:
                    return task.result()
                activity.heartbeat()
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def provider_failure(exc: GeminiError) -> ApplicationError:
    """The error the workflow's retry policy acts on: ``type`` is the task error code."""
    delay = None
    if exc.retryable and exc.retry_after is not None:
        delay = timedelta(seconds=min(exc.retry_after, MAX_RETRY_DELAY_SECONDS))
    return ApplicationError(exc.message, type=exc.code, non_retryable=not exc.retryable, next_retry_delay=delay)

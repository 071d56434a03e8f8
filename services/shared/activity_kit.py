"""What an integration's activities are built from: the running report, provider calls that heartbeat, the
provider's errors as the ``ApplicationError`` a workflow's retry policy acts on, and results put into object
storage under deterministic keys. Used by activities only: workflow code never imports this module."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from .outbound import Outbound, OutboundRules
from .provider_client import ProviderError, ProviderHttp
from .reporting import RUNNING_REPORT_SECONDS, Reporter, ask_callback_url, report_running
from .storage import ObjectStore
from .submit_poll import PollPolicy, SubmitInput, Submitted
from .tasks import StoredObject, TaskEnvelope, objects_prefix
from .workflow_kit import running

T = TypeVar("T")

HEARTBEAT_SECONDS = 2.0
# Downloads stay in memory up to this size, then spill to a temporary file: memory is bounded for any size.
SPOOL_BYTES = 8 * 1024 * 1024


def object_key(task_id: str, stem: str, extension: str) -> str:
    """Where a task's result ``stem`` lives. Deterministic, and the extension is the integration's, never a
    response header's: a retried attempt overwrites the same object instead of leaving a second one."""
    return f"{objects_prefix(task_id)}{stem}.{extension}"


def application_error(error: ProviderError, max_delay: timedelta | None = None) -> ApplicationError:
    """The provider's error as the activity's failure: its code is the failure type, which the workflow keeps
    as the task's error code; only a retryable error is retried, after the provider's ``Retry-After`` (at most
    ``max_delay``) when it gave one."""
    delay = None
    if error.retryable and error.retry_after is not None:
        delay = timedelta(seconds=error.retry_after)
        if max_delay is not None:
            delay = min(delay, max_delay)
    return ApplicationError(error.message, type=error.code, non_retryable=not error.retryable, next_retry_delay=delay)


class ActivityKit:
    def __init__(
        self,
        store: ObjectStore,
        reporter: Reporter,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        report_within: float = RUNNING_REPORT_SECONDS,
        outbound: Outbound | None = None,
    ) -> None:
        self.store = store
        self.reporter = reporter
        self.heartbeat_seconds = heartbeat_seconds
        self.report_within = report_within
        # How result URLs from outside are fetched (the worker's rules); by default https to public addresses only.
        self.outbound = outbound or Outbound(OutboundRules())

    @contextlib.asynccontextmanager
    async def running(self, task: TaskEnvelope) -> AsyncIterator[None]:
        """Around the provider work of a sync-call activity: the running report goes out meanwhile, and is
        delivered (or given up, within its bound) before the activity ends, so main hears it before the
        workflow's final report."""
        state = running(provider_attempts=activity.info().attempt)
        reported = asyncio.ensure_future(report_running(self.reporter, task.id, state, self.report_within))
        try:
            yield
        except asyncio.CancelledError:
            reported.cancel()
            raise
        finally:
            await asyncio.gather(reported, return_exceptions=True)

    async def callback_url(self, task: TaskEnvelope) -> str | None:
        """Where the provider may call back for this task, asked from main right before the submit. The URL carries
        the task's callback token, so it is never part of a workflow's or an activity's input: it stays out of
        Temporal's history. Bounded and best effort, like the running report: without an answer (main down, a task
        main does not know) the job is submitted without a callback, and the poll still sees it end."""
        return await ask_callback_url(self.reporter, task.id, self.report_within)

    async def submitted(self, input: SubmitInput[Any], provider_task_id: str, poll: PollPolicy) -> Submitted:
        """The end of a submit the provider accepted. The job id goes out first as a heartbeat, so a worker lost
        from here on still hands it to the workflow; then main hears the task is running, with the job id and the
        submit attempt it took. Never raises, so nothing here can fail or repeat the submit."""
        submitted = Submitted(provider_task_id, poll)
        activity.heartbeat(submitted)
        state = running(provider_task_id, provider_attempts=input.attempt)
        await report_running(self.reporter, input.task.id, state, self.report_within)
        return submitted

    async def heartbeating(self, work: Awaitable[T]) -> T:
        """Await ``work`` while heartbeating, so a dead worker is noticed within the heartbeat timeout and a
        cancelled task stops the work (cancellation arrives through heartbeats)."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.heartbeat_seconds)
                if done:
                    return task.result()
                activity.heartbeat()
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def call(self, work: Awaitable[T], max_retry_delay: timedelta | None = None) -> T:
        """A provider call, heartbeating, its ``ProviderError`` raised as ``application_error``."""
        try:
            return await self.heartbeating(work)
        except ProviderError as exc:
            raise application_error(exc, max_retry_delay) from exc

    async def put(self, task: TaskEnvelope, stem: str, extension: str, data: bytes, content_type: str) -> StoredObject:
        """Store a result held in memory; a store that cannot be reached is a retryable ``storage_unavailable``."""
        key = object_key(task.id, stem, extension)
        await self._storing(stem, key, self.store.put_bytes(key, data, content_type))
        return StoredObject(key=key, content_type=content_type, size=len(data))

    async def copy(
        self,
        task: TaskEnvelope,
        stem: str,
        extension: str,
        source: ProviderHttp,
        url: str,
        *,
        limit: int,
        timeout_seconds: float,
        content_type: Callable[[bytes], str],
    ) -> StoredObject:
        """Stream a provider's result URL into object storage, at most ``limit`` bytes, never all in memory, through
        the kit's outbound rules (a URL they refuse fails the task at once, see ``ProviderHttp.download``).
        ``content_type`` names the type from the first 16 bytes, or raises a non-retryable ``ApplicationError``
        for a file that is not what the provider promised."""
        key = object_key(task.id, stem, extension)
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as buffer:
            download = source.download(
                self.outbound, url, buffer, activity.heartbeat, limit=limit, timeout_seconds=timeout_seconds
            )
            size = await self.call(download)
            buffer.seek(0)
            kind = content_type(buffer.read(16))
            buffer.seek(0)
            await self._storing(stem, key, self.store.put_file(key, buffer, size, kind))
        activity.logger.info("task %s: stored %s (%d bytes)", task.id, key, size)
        return StoredObject(key=key, content_type=kind, size=size)

    async def _storing(self, stem: str, key: str, upload: Awaitable[None]) -> None:
        try:
            await self.heartbeating(upload)
        except Exception as exc:
            # Ours, not the provider's: retried by the activity's retry policy, then reported under our own code.
            raise ApplicationError(
                f"could not store the {stem} at {key}: {type(exc).__name__}: {exc}", type="storage_unavailable"
            ) from exc

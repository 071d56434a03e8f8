"""How activities tell main about state changes: main's internal report API, called with the report token over
kept-alive connections (``http_link.HttpLinkPool``), as many as the worker has activity slots."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

import msgspec
from temporalio import activity
from temporalio.exceptions import ApplicationError

from .http_link import HttpLinkPool
from .tasks import ReportOutcome, TaskReport, objects_prefix

if TYPE_CHECKING:
    # Workflow code imports this module (through workflow_kit), and so does main: neither loads object storage.
    from .storage import ObjectStore

REPORT_ACTIVITY = "report_task"

T = TypeVar("T")


class ReportInput(msgspec.Struct, frozen=True):
    task_id: str
    report: TaskReport


class CallbackUrl(msgspec.Struct, frozen=True):
    """main's answer to ``POST /internal/tasks/{id}/callback-url``; None when the task's integration takes no
    callbacks."""

    url: str | None


class Reporter(Protocol):
    """main's internal API as activities use it."""

    async def report(self, task_id: str, report: TaskReport) -> ReportOutcome: ...

    async def callback_url(self, task_id: str) -> str | None: ...


# How long the activity that starts the provider work tries to tell main that the task is running.
RUNNING_REPORT_SECONDS = 10.0
RUNNING_REPORT_INTERVAL_SECONDS = 1.0


async def report_running(
    reporter: Reporter, task_id: str, report: TaskReport, within: float = RUNNING_REPORT_SECONDS
) -> None:
    """Tell main the task is running, from inside the activity that starts the provider work. Bounded and best
    effort: main may be down, and the provider work must not wait for it for long. It never raises (but for a
    cancel), so a report that cannot be delivered neither fails nor repeats the provider work; main then learns
    the state at read time from the workflow's ``task_state`` query. Repeating it is harmless: main applies a
    running report that changes nothing as no change, with no event."""
    await _best_effort(f"running report for task {task_id}", lambda: reporter.report(task_id, report), within)


async def ask_callback_url(reporter: Reporter, task_id: str, within: float = RUNNING_REPORT_SECONDS) -> str | None:
    """The task's callback URL from main, as ``report_running`` delivers its report: bounded, never raising; None
    when main does not answer in time or refuses."""
    return await _best_effort(f"callback URL of task {task_id}", lambda: reporter.callback_url(task_id), within)


async def _best_effort(what: str, ask: Callable[[], Awaitable[T]], within: float) -> T | None:
    """``ask`` main until it answers, for at most ``within`` seconds; a refusal is not asked again."""
    try:
        async with asyncio.timeout(within):
            while True:
                try:
                    return await ask()
                except ApplicationError as exc:
                    activity.logger.warning("%s rejected: %s", what, exc)
                    return None
                except Exception as exc:
                    activity.logger.info("%s not delivered yet: %r", what, exc)
                await asyncio.sleep(RUNNING_REPORT_INTERVAL_SECONDS)
    except TimeoutError:
        activity.logger.warning("%s not delivered within %ss", what, within)
    return None


class ReportClient:
    def __init__(self, links: HttpLinkPool) -> None:
        self._links = links

    async def report(self, task_id: str, report: TaskReport) -> ReportOutcome:
        """Raises ``LinkError`` when main could not be reached (retried by the activity's policy)."""
        path = f"/internal/tasks/{task_id}/report"
        answer = await self._post(path, msgspec.json.encode(report), f"report for task {task_id}")
        return msgspec.json.decode(answer, type=ReportOutcome)

    async def callback_url(self, task_id: str) -> str | None:
        """Where the provider calls back for the task (main derives its token), or None."""
        answer = await self._post(f"/internal/tasks/{task_id}/callback-url", b"{}", f"callback URL of task {task_id}")
        return msgspec.json.decode(answer, type=CallbackUrl).url

    async def _post(self, path: str, body: bytes, what: str) -> bytes:
        status, answer = await self._links.post(path, body)
        if status == 200:
            return answer
        detail = f"{what} rejected by main: HTTP {status} {answer[:300].decode(errors='replace')}"
        if status in (408, 429) or status >= 500:
            # main is restarting or overloaded: let the activity retry policy try again.
            raise RuntimeError(detail)
        raise ApplicationError(detail, type="ReportRejected", non_retryable=True)

    async def close(self) -> None:
        await self._links.close()


class ReportActivities:
    def __init__(self, client: ReportClient, store: ObjectStore | None = None) -> None:
        self._client = client
        self._store = store

    @activity.defn(name=REPORT_ACTIVITY)
    async def report_task(self, input: ReportInput) -> ReportOutcome:
        attempt = activity.info().attempt
        if attempt > 1:
            # A local activity's retries show nowhere in Temporal until it ends: the worker's log says them.
            activity.logger.info("report %s for task %s: attempt %d", input.report.status, input.task_id, attempt)
        if self._store is not None and input.report.status in ("failed", "cancelled"):
            # A task that did not succeed keeps no objects. An upload may have finished after the workflow decided
            # the outcome (a cancel racing the upload, a copy cut short, an attempt given up): remove what is
            # there before main hears of it. An object store that cannot be reached fails the attempt, retried.
            removed = await self._store.delete_prefix(objects_prefix(input.task_id))
            if removed:
                activity.logger.info("task %s is %s: removed %d object(s)", input.task_id, input.report.status, removed)
        return await self._client.report(input.task_id, input.report)

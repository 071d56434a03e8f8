"""How activities tell main about state changes: main's internal report API, called with the report token over
kept-alive connections (``http_link.HttpLinkPool``), as many as the worker has activity slots."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

import msgspec
from temporalio import activity
from temporalio.exceptions import ApplicationError

from .http_link import HttpLinkPool
from .tasks import ReportOutcome, TaskReport, objects_prefix

if TYPE_CHECKING:
    # Workflow code imports this module (through workflow_kit), and so does main: neither loads object storage.
    from .storage import ObjectStore

REPORT_ACTIVITY = "report_task"


class ReportInput(msgspec.Struct, frozen=True):
    task_id: str
    report: TaskReport


class Reporter(Protocol):
    async def report(self, task_id: str, report: TaskReport) -> ReportOutcome: ...


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
    try:
        async with asyncio.timeout(within):
            while True:
                try:
                    await reporter.report(task_id, report)
                    return
                except ApplicationError as exc:
                    activity.logger.warning("running report for task %s rejected: %s", task_id, exc)
                    return
                except Exception as exc:
                    activity.logger.info("running report for task %s not delivered yet: %r", task_id, exc)
                await asyncio.sleep(RUNNING_REPORT_INTERVAL_SECONDS)
    except TimeoutError:
        activity.logger.warning("running report for task %s not delivered within %ss", task_id, within)


class ReportClient:
    def __init__(self, links: HttpLinkPool) -> None:
        self._links = links

    async def report(self, task_id: str, report: TaskReport) -> ReportOutcome:
        """Raises ``LinkError`` when main could not be reached (retried by the activity's policy)."""
        status, body = await self._links.post(f"/internal/tasks/{task_id}/report", msgspec.json.encode(report))
        if status == 200:
            return msgspec.json.decode(body, type=ReportOutcome)
        detail = f"report for task {task_id} rejected by main: HTTP {status} {body[:300].decode(errors='replace')}"
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
        if self._store is not None and input.report.status in ("failed", "cancelled"):
            # A task that did not succeed keeps no objects. An upload may have finished after the workflow decided
            # the outcome (a cancel racing the upload, a copy cut short, an attempt given up): remove what is
            # there before main hears of it. An object store that cannot be reached fails the attempt, retried.
            removed = await self._store.delete_prefix(objects_prefix(input.task_id))
            if removed:
                activity.logger.info("task %s is %s: removed %d object(s)", input.task_id, input.report.status, removed)
        return await self._client.report(input.task_id, input.report)

"""How activities tell main about state changes: the internal report API, called with the internal token over
kept-alive connections (``http_link.HttpLinkPool``), as many as the worker has activity slots."""

from __future__ import annotations

from typing import TYPE_CHECKING

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

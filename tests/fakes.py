"""Stand-ins for what a worker's activities talk to besides the provider: main's internal API and object storage."""

from __future__ import annotations

from typing import IO

from temporalio import activity

from services.shared.activity_kit import ActivityKit
from services.shared.outbound import Outbound
from services.shared.reporting import REPORT_ACTIVITY, ReportInput
from services.shared.storage import ObjectStore
from services.shared.tasks import ReportOutcome, TaskReport, is_terminal


class MemoryStore(ObjectStore):
    """Object storage in a dict: what was stored, under which key and type."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self.objects[key] = (data, content_type)

    async def put_file(self, key: str, file: IO[bytes], length: int, content_type: str) -> None:
        self.objects[key] = (file.read(length), content_type)


class Reports:
    """main's internal API as activities see it: the running report an activity sends through the activity kit
    (``kit()``), and a workflow's reports through the shared report activity (``report_task``, registered under
    its real name). Like main, it applies a report only while the task is not terminal and when it changes
    something: ``reports`` holds the applied ones in order (the task's events), ``sent`` every one. A task's
    callback URL is ``callback_urls[task_id]`` (None when not set)."""

    def __init__(self) -> None:
        self.reports: list[TaskReport] = []
        self.sent: list[TaskReport] = []
        self.store = MemoryStore()
        self.callback_urls: dict[str, str] = {}
        self._current: dict[str, TaskReport] = {}

    async def report(self, task_id: str, report: TaskReport) -> ReportOutcome:
        self.sent.append(report)
        current = self._current.get(task_id)
        if current is not None and (is_terminal(current.status) or current == report):
            return ReportOutcome(applied=False, status=current.status)
        self._current[task_id] = report
        self.reports.append(report)
        return ReportOutcome(applied=True, status=report.status)

    async def callback_url(self, task_id: str) -> str | None:
        return self.callback_urls.get(task_id)

    @activity.defn(name=REPORT_ACTIVITY)
    async def report_task(self, input: ReportInput) -> ReportOutcome:
        return await self.report(input.task_id, input.report)

    def kit(
        self, heartbeat_seconds: float = 0.05, report_within: float = 10.0, outbound: Outbound | None = None
    ) -> ActivityKit:
        return ActivityKit(self.store, self, heartbeat_seconds, report_within, outbound)

    def statuses(self) -> list[str]:
        return [r.status for r in self.reports]

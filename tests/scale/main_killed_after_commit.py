"""``python -m tests.scale.main_killed_after_commit``: main with a fault hook for the tests. Right after it commits a
report's change to a task whose input holds ``KILL_AFTER_COMMIT_MARK``, and before its relay hears of it, the
process SIGKILLs itself: the change and its event are in the store, nothing has been published."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import msgspec

from services.main.__main__ import main
from services.main.store import EventOf, TaskStore
from services.shared.tasks import ReportOutcome, TaskReport

MARK = os.environ["KILL_AFTER_COMMIT_MARK"]
apply_report = TaskStore.apply_report


async def apply_report_then_die(
    self: TaskStore, task_id: str, report: TaskReport, event: EventOf
) -> tuple[ReportOutcome, Any, dict[str, Any]]:
    outcome, record, changes = await apply_report(self, task_id, report, event)
    if outcome.applied and MARK in msgspec.json.encode(record.input).decode():
        os.kill(os.getpid(), signal.SIGKILL)
    return outcome, record, changes


TaskStore.apply_report = apply_report_then_die  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())

"""Task deadlines are behind ``workflow_kit.DEADLINES``: a run that started on workers from before them, with a
deadline in its input all the same (main upgraded first), replays as it ran. Each recorded history is replayed with
a deadline that had already passed when its run started: without the guard the workflow would end at once instead
of calling the provider, which its history contradicts."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory

from .test_replay import HISTORIES, integration_of, replayer, served

__all__ = ["served"]

# One history of each kit's first run (a continued run's input holds the deadline it was given, not the task's),
# recorded before deadlines: kept with the histories from before the local final report, which came later.
FIRST_RUNS = (
    "echo/pre-local-final-report/success.json",
    "nanobanana2-image/pre-local-final-report/retried.json",
    "fangzhouVideoGeneration/pre-local-final-report/submit-retried.json",
)


def with_past_deadline(file: Path) -> WorkflowHistory:
    history = json.loads(file.read_text())
    started = history["events"][0]
    payload = started["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]
    workflow_input = json.loads(base64.b64decode(payload["data"]))
    start = datetime.fromisoformat(started["eventTime"][:26] + "+00:00")
    workflow_input["task"]["deadline"] = start.timestamp() - 1
    payload["data"] = base64.b64encode(json.dumps(workflow_input).encode()).decode()
    return WorkflowHistory.from_json(f"{file.parent.name}/{file.stem}", json.dumps(history))


@pytest.mark.parametrize("path", FIRST_RUNS)
async def test_a_run_from_before_deadlines_replays_although_its_input_has_one(
    served: dict[str, Sequence[type]], path: str
) -> None:
    file = HISTORIES / path
    await replayer(served[integration_of(file)]).replay_workflow(with_past_deadline(file))

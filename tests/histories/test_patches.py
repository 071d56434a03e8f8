"""The worked example of a change behind ``workflow.patched``: a cancel waits until an activity that stores objects
has stopped (``workflow_kit.CANCEL_WAITS``). Before, the workflow sent its final report (which removes the task's
objects) at once, while the activity could still store one. The histories recorded before the change (kept in
``<integration>/pre-cancel-waits/``) must replay the old way; the change without its guard must not replay them;
a new run must take the new path."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.workflow import NondeterminismError

from services.shared.reporting import REPORT_ACTIVITY
from services.shared.storage import ObjectStore
from services.shared.tasks import workflow_id_for
from services.shared.workflow_kit import CANCEL_WAITS
from tests.stack import Api, Launcher, wait_for

from .test_replay import HISTORIES, load, replayer, served

__all__ = ["served"]

OLD = "pre-cancel-waits"
# The paths where a cancel meets an activity that stores objects, and that activity.
CANCELLED_WHILE_STORING = {
    "echo/cancel-during-call": "echo.process",
    "nanobanana2-image/cancel-during-call": "nanobanana2_image.generate",
    "fangzhouVideoGeneration/cancel-during-copy": "fangzhou.copy_result",
}
T = EventType


def history_file(path: str, kept: str | None = None) -> Path:
    integration, name = path.split("/")
    folder = HISTORIES / integration if kept is None else HISTORIES / integration / kept
    return folder / f"{name}.json"


def marked(events: Sequence[HistoryEvent]) -> bool:
    """Whether the history carries the patch's marker (a new run took the new path)."""
    patches = [
        json.loads(e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data)["id"]
        for e in events
        if e.event_type == T.EVENT_TYPE_MARKER_RECORDED
        and e.marker_recorded_event_attributes.marker_name == "core_patch"
    ]
    return CANCEL_WAITS in patches


def local_activities(events: Sequence[HistoryEvent]) -> list[str]:
    """The local activities the workflow ran, in order (their markers)."""
    return [
        json.loads(e.marker_recorded_event_attributes.details["data"].payloads[0].data)["activity_type"]
        for e in events
        if e.event_type == T.EVENT_TYPE_MARKER_RECORDED
        and e.marker_recorded_event_attributes.marker_name == "core_local_activity"
    ]


def waited(events: Sequence[HistoryEvent], activity: str) -> bool:
    """Whether the cancelled ``activity`` had closed before the workflow went on (its next activity scheduled, or
    its final report run as a local activity)."""
    scheduled = None
    for event in events:
        attrs = event.activity_task_scheduled_event_attributes
        if event.event_type == T.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED and attrs.activity_type.name == activity:
            scheduled = event.event_id
        elif scheduled is not None and (
            event.event_type == T.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            or (
                event.event_type == T.EVENT_TYPE_MARKER_RECORDED
                and event.marker_recorded_event_attributes.marker_name == "core_local_activity"
            )
        ):
            return False
        elif scheduled is not None and event.event_type in (
            T.EVENT_TYPE_ACTIVITY_TASK_CANCELED,
            T.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
            T.EVENT_TYPE_ACTIVITY_TASK_FAILED,
        ):
            return True
    raise AssertionError(f"{activity} never scheduled")


@pytest.mark.parametrize("path", sorted(CANCELLED_WHILE_STORING))
async def test_runs_from_before_the_patch_replay_the_old_way(served: dict[str, Sequence[type]], path: str) -> None:
    history = load(history_file(path, OLD))
    assert not marked(history.events)
    assert not waited(history.events, CANCELLED_WHILE_STORING[path])
    await replayer(served[path.split("/")[0]]).replay_workflow(history)


@pytest.mark.parametrize("path", sorted(CANCELLED_WHILE_STORING))
async def test_the_change_without_its_guard_breaks_them(
    served: dict[str, Sequence[type]], path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workflow, "patched", lambda patch_id, **_: True)
    with pytest.raises(NondeterminismError):
        await replayer(served[path.split("/")[0]]).replay_workflow(load(history_file(path, OLD)))


@pytest.mark.parametrize("path", sorted(CANCELLED_WHILE_STORING))
def test_recorded_new_runs_wait(path: str) -> None:
    events = load(history_file(path)).events
    assert marked(events)
    assert waited(events, CANCELLED_WHILE_STORING[path])


@pytest.mark.integration
async def test_a_new_run_stops_the_activity_before_it_ends(
    echo_worker: Launcher, alice: Api, temporal: Client, objects: ObjectStore
) -> None:
    # The activity stores its object after 20 s, far longer than a cancel takes to reach it through its heartbeats
    # (a shorter run could finish first on a loaded host): a cancel that does not wait for it would leave that object
    # behind.
    created = await alice.create("echo", {"message": "cancelled before it is stored", "delay_seconds": 20})
    assert created.status_code == 202, created.text
    task_id = created.json()["id"]
    handle = temporal.get_workflow_handle(workflow_id_for(task_id))

    async def calling() -> bool:
        pending = (await handle.describe()).raw_description.pending_activities
        return any(a.activity_type.name == "echo.process" for a in pending)

    await wait_for(calling, 30, "the echo activity to start")
    assert (await alice.http.post(f"/api/tasks/{task_id}/cancel")).status_code == 202
    await alice.wait_status(task_id, {"cancelled"}, timeout=30)

    async def closed() -> bool:
        return (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED

    await wait_for(closed, 30, "the workflow to close")
    events = [event async for event in handle.fetch_history_events()]
    assert marked(events)
    assert waited(events, "echo.process")
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in events
        if e.event_type == T.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert scheduled == ["echo.process"]
    assert local_activities(events) == [REPORT_ACTIVITY]
    # The activity had stopped before the final report removed the task's objects: none can appear later.
    assert await objects.list_keys(f"tasks/{task_id}/") == []

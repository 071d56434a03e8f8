"""Manual refreshes racing the poller (and Ark's callbacks) on a batch of video tasks, then late duplicate and
conflicting reports for every finished task: each task concludes once, with one terminal event, and nothing that
arrives afterwards changes it."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import msgspec
import pytest

from deploy.local import LocalStack
from services.shared.tasks import TERMINAL_STATUSES, TaskReport, workflow_id_for

from .harness import ARK_REFUSED, VIDEO, Platform, Simulator, Task, all_submitted, image, video

pytestmark = [pytest.mark.integration, pytest.mark.faults]

REFRESHERS_PER_TASK = 3


async def refresh_until_final(platform: Platform, task: Task) -> list[str]:
    """One user hammering the refresh button: the statuses the refreshes answered, until one is terminal."""
    api = platform.apis[task.job.user]
    answers: list[str] = []
    while not answers or answers[-1] not in TERMINAL_STATUSES:
        response = await api.http.post(f"/api/integrations/{VIDEO}/tasks/{task.id}/refresh")
        assert response.status_code == 200, response.text
        answers.append(response.json()["status"])
    return answers


async def test_refresh_races_the_poller_and_late_reports_change_nothing(
    fault_stack: LocalStack, scenario: Platform, sim: Simulator
) -> None:
    jobs = [
        video("alice", "a refreshed sunrise [sim:slow=2]", last_frame=True),
        video("alice", "a refreshed sunset [sim:slow=3]"),
        video("bob", "a refreshed tide [sim:slow=2]"),
        video("bob", "a refreshed storm [sim:slow=4]", last_frame=True),
        video("bob", "refreshed into failure [sim:fail]", expect="failed", error_code=ARK_REFUSED),
        image("alice", "reported twice [sim:slow=1]"),
        image("bob", "reported twice too"),
    ]
    tasks = await scenario.create(jobs)
    videos = [t for t in tasks if t.job.integration == VIDEO]
    await all_submitted(scenario, tasks)
    refreshes = await asyncio.gather(
        *(refresh_until_final(scenario, t) for t in videos for _ in range(REFRESHERS_PER_TASK))
    )
    answered = [status for answers in refreshes for status in answers]
    scenario.mark(f"{len(answered)} refreshes answered")
    assert set(answered) <= {"running", "succeeded", "failed"}, set(answered)
    await scenario.wait_all(tasks, set(TERMINAL_STATUSES), 120)

    internal = httpx.AsyncClient(
        base_url=fault_stack.main_internal_url,
        headers={"Authorization": f"Bearer {fault_stack.secrets.report_token}"},
    )
    try:
        for task in tasks:
            outcomes = await late_reports(scenario, internal, task)
            final = (await scenario.read(task))["status"]
            assert outcomes == [{"applied": False, "status": final, "reason": f"task is already {final}"}] * len(
                outcomes
            ), outcomes
    finally:
        await internal.aclose()
    scenario.mark("late reports ignored")

    await scenario.check(tasks)


async def late_reports(platform: Platform, internal: httpx.AsyncClient, task: Task) -> list[dict[str, Any]]:
    """The workflow's own final report again (eight at once, as retries of a lost answer would be), a report
    claiming the other outcome, and a progress report: what main answered to each."""
    handle = platform.temporal.get_workflow_handle(workflow_id_for(task.id), result_type=TaskReport)
    result: TaskReport = await handle.result()
    duplicate = msgspec.to_builtins(result)
    if result.status == "succeeded":
        conflicting: dict[str, Any] = {"status": "failed", "error": {"code": "late", "message": "too late"}}
    else:
        conflicting = {
            "status": "succeeded",
            "progress": 1.0,
            "result": {"objects": {"x": {"key": f"tasks/{task.id}/late.bin", "content_type": "x/y", "size": 1}}},
        }
    url = f"/internal/tasks/{task.id}/report"
    responses = await asyncio.gather(
        *(internal.post(url, json=duplicate) for _ in range(8)),
        internal.post(url, json=conflicting),
        internal.post(url, json={"status": "running", "progress": 0.5}),
    )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    return [r.json() for r in responses]

"""Every worker process SIGKILLed three times while a batch runs, and started again each time."""

from __future__ import annotations

import asyncio

import pytest

from services.shared.tasks import TERMINAL_STATUSES
from tests.stack import wait_for

from .harness import (
    IMAGE,
    Platform,
    Simulator,
    Workers,
    activity_attempts,
    all_submitted,
    echo,
    image,
    video,
    workflow_tasks_completed,
)

pytestmark = [pytest.mark.integration, pytest.mark.faults]


async def test_workers_killed_three_times_mid_batch(scenario: Platform, workers: Workers, sim: Simulator) -> None:
    jobs = [
        image("alice", "a fox in snow [sim:slow=6]"),
        image("bob", "a hen on a fence [sim:slow=5]"),
        image("alice", "a cat on a mat [sim:slow=4]"),
        video("alice", "a night train [sim:slow=10]", last_frame=True),
        video("bob", "a sail boat [sim:slow=10]"),
        video("bob", "a red kite [sim:slow=8]"),
        echo("alice", "survives kills", delay_seconds=4),
        echo("bob", "also survives", delay_seconds=6),
        # Cancelled by their users while no worker runs.
        echo("alice", "cancelled in the dark", delay_seconds=600, expect="cancelled"),
        video("bob", "cancelled in the dark [sim:slow=60]", expect="cancelled"),
    ]
    tasks = await scenario.create(jobs)
    doomed = [t for t in tasks if t.job.expect == "cancelled"]
    # A submit cut off mid-request fails the task on purpose (Ark may have created the job: ark_submit_uncertain),
    # so the first kill comes once every video is on Ark.
    await all_submitted(scenario, tasks)
    scenario.mark("every video is on Ark")

    for kill in range(3):
        finals = [await scenario.read(t) for t in tasks]
        assert any(f["status"] not in TERMINAL_STATUSES for f in finals), "the batch ended before the kill"
        requests, completed = await sim.requests(), await workflow_tasks_completed(scenario, tasks)
        workers.kill()
        scenario.mark("workers killed")
        if kill == 0:
            cancels = await asyncio.gather(
                *(scenario.apis[t.job.user].http.post(f"/api/tasks/{t.id}/cancel") for t in doomed)
            )
            for cancel in cancels:
                assert cancel.status_code == 202, cancel.text
                assert cancel.json()["status"] == "running", "no worker runs: the workflow cannot have ended yet"
            scenario.mark("two tasks cancelled")
        await workers.start()
        scenario.mark("workers serving again")

        # The new workers are at work (calling a provider, or running workflow code) before they are killed again.
        async def working(requests: int = requests, completed: int = completed) -> bool:
            if await sim.requests() > requests:
                return True
            return await workflow_tasks_completed(scenario, tasks) > completed

        await wait_for(working, 60, "the restarted workers to work", interval=0.2)
        scenario.mark("the restarted workers work")

    await scenario.check(tasks, timeout=180)
    # The kills cut real work short: image generation was attempted again, and activities were retried.
    image_attempts = [await sim.attempts("gemini", t.job.prompt) for t in tasks if t.job.integration == IMAGE]
    assert max(image_attempts) >= 2, image_attempts
    retried = [t.job.integration for t in tasks if max(await activity_attempts(scenario, t), default=1) >= 2]
    assert retried, "no activity was retried"
    scenario.mark(f"gemini attempts per image {image_attempts}; retried activities in {sorted(retried)}")

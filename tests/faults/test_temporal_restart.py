"""The Temporal server restarted in the middle of a batch: same port, same database file."""

from __future__ import annotations

import asyncio

import pytest

from deploy.local import LocalStack
from services.shared.tasks import TERMINAL_STATUSES

from .harness import VIDEO, Platform, Simulator, all_submitted, echo, image, video

pytestmark = [pytest.mark.integration, pytest.mark.faults]


async def test_temporal_restarted_mid_batch(fault_stack: LocalStack, scenario: Platform, sim: Simulator) -> None:
    jobs = [
        image("alice", "a snowy owl [sim:slow=3]"),
        image("bob", "a copper kettle [sim:slow=5]"),
        video("alice", "leaves in wind [sim:slow=4]", last_frame=True),
        video("bob", "a bouncing ball [sim:slow=6]"),
        video("bob", "a lantern [sim:slow=2]"),
        echo("alice", "across a restart", delay_seconds=4),
        echo("bob", "across a restart too", delay_seconds=2),
        # Still running when main is restarted without Temporal (below).
        video("alice", "a long exposure [sim:slow=15]"),
    ]
    tasks = await scenario.create(jobs)
    await all_submitted(scenario, tasks)
    finals = [await scenario.read(t) for t in tasks]
    assert any(f["status"] not in TERMINAL_STATUSES for f in finals), "the batch ended before the restart"

    await asyncio.to_thread(fault_stack.stop, "temporal")
    scenario.mark("Temporal stopped")
    # main keeps answering from its store while Temporal is away. A create's start may have reached the server before
    # it went (main cannot tell), so the task is kept, queued, for the reconciler to start once Temporal is back.
    before = await asyncio.gather(*(scenario.read(t) for t in tasks))
    assert [r["id"] for r in before] == [t.id for t in tasks]
    kept = await scenario.create([echo("alice", "while Temporal is down")])
    scenario.mark("main answered reads from its store and kept a create for later")
    assert (await scenario.read(kept[0]))["status"] == "queued"

    # main restarted while Temporal is away: its client has never reached Temporal, so a create is refused with a
    # retryable error and nothing is kept.
    await asyncio.to_thread(fault_stack.stop, "main")
    await asyncio.to_thread(fault_stack.start, "main")
    scenario.mark("main restarted without Temporal")
    long_video = tasks[-1]
    reads = await asyncio.gather(*(scenario.read(t) for t in tasks))
    assert reads[-1]["status"] == "running", reads[-1]
    api = scenario.apis[long_video.job.user]
    for response in (
        await api.create("echo", {"message": "while Temporal is down, again"}),
        await api.http.post(f"/api/tasks/{long_video.id}/cancel"),
        await api.http.post(f"/api/integrations/{VIDEO}/tasks/{long_video.id}/refresh"),
    ):
        assert response.status_code == 503, response.text
        assert (response.json()["code"], response.json()["retryable"]) == ("temporal_unavailable", True)
    stored, _ = await scenario.store.list(owner=api.user, integration="echo", status=None, limit=100, offset=0)
    assert not [r for r in stored if r.input["message"] == "while Temporal is down, again"]
    await asyncio.to_thread(fault_stack.start, "temporal")
    scenario.mark("Temporal started again")

    # Work created after the restart runs too.
    later = await scenario.create([echo("alice", "after the restart"), image("bob", "after the restart")])
    await scenario.check([*tasks, *kept, *later], timeout=180)

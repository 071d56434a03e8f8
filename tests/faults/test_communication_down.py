"""communication stopped in the middle of a batch. The events of everything that happens meanwhile wait in the
stream; the clients reconnect with ``since`` once it is back and receive each of them: nothing is lost, nothing comes
twice, and no client has to re-read from main."""

from __future__ import annotations

import asyncio

import pytest

from deploy.local import LocalStack
from services.shared.tasks import TERMINAL_STATUSES
from tests.stack import wait_for

from .harness import Platform, Simulator, all_submitted, echo, image, video

pytestmark = [pytest.mark.integration, pytest.mark.faults]


async def test_communication_stopped_mid_batch(fault_stack: LocalStack, scenario: Platform, sim: Simulator) -> None:
    jobs = [
        image("alice", "a desert road [sim:slow=2]"),
        image("bob", "a glass of water [sim:slow=3]"),
        video("alice", "a slow river [sim:slow=3]"),
        video("bob", "a clock tower [sim:slow=4]", last_frame=True),
        echo("alice", "while nobody listens", delay_seconds=3),
        echo("bob", "while nobody listens either", delay_seconds=1),
    ]
    tasks = await scenario.create(jobs)
    await all_submitted(scenario, tasks)
    connections = {user: log.connections for user, log in scenario.logs.items()}

    await asyncio.to_thread(fault_stack.stop, "communication")
    scenario.mark("communication stopped")
    # main keeps working without it: new tasks are accepted, and everything finishes meanwhile.
    during = await scenario.create([echo("alice", "created while communication is down"), video("bob", "meanwhile")])
    batch = [*tasks, *during]
    await scenario.wait_all(batch, set(TERMINAL_STATUSES), 120)
    unseen = [t.id for t in batch if not scenario.logs[t.job.user].terminal(t.id)]
    scenario.mark(f"every task finished while communication was down; {len(unseen)} terminal events not seen yet")
    assert unseen, "every terminal event arrived although communication was down"
    await asyncio.to_thread(fault_stack.start, "communication")
    scenario.mark("communication started again")

    # The clients reconnect by themselves, resuming where they were.
    async def reconnected() -> bool:
        return all(log.connections > connections[user] for user, log in scenario.logs.items())

    await wait_for(reconnected, 30, "every client to reconnect", interval=0.1)
    await scenario.check(batch)
    assert all(log.resyncs == 0 for log in scenario.logs.values())

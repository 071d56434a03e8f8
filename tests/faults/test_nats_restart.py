"""The NATS server restarted in the middle of a batch (same port, same stream directory). Reports keep being
applied while it is away; their events wait in main's outbox and reach every client, once each, when it is back."""

from __future__ import annotations

import asyncio

import pytest

from deploy.local import LocalStack
from services.shared.tasks import TERMINAL_STATUSES
from tests.stack import wait_for

from .harness import Platform, Simulator, all_submitted, echo, image, video

pytestmark = [pytest.mark.integration, pytest.mark.faults]


async def test_nats_restarted_mid_batch(fault_stack: LocalStack, scenario: Platform, sim: Simulator) -> None:
    jobs = [
        image("alice", "a paper lantern [sim:slow=2]"),
        image("bob", "a quiet street [sim:slow=3]"),
        video("alice", "waves at dusk [sim:slow=3]"),
        video("bob", "a spinning wheel [sim:slow=2]", last_frame=True),
        echo("alice", "while NATS is away", delay_seconds=2),
        echo("bob", "while NATS is away too", delay_seconds=1),
    ]
    tasks = await scenario.create(jobs)
    await all_submitted(scenario, tasks)

    await asyncio.to_thread(fault_stack.stop, "nats")
    scenario.mark("NATS stopped")
    # Creates and reports go on: each change is committed with its event in the outbox.
    during = await scenario.create([echo("alice", "created while NATS is down"), image("bob", "meanwhile")])
    batch = [*tasks, *during]
    await scenario.wait_all(batch, set(TERMINAL_STATUSES), 120)
    waiting = await scenario.store.unsent_events()
    scenario.mark(f"every task finished while NATS was down; {waiting} events wait in the outbox")
    assert waiting > 0
    await asyncio.to_thread(fault_stack.start, "nats")
    scenario.mark("NATS started again")

    async def relayed() -> bool:
        return await scenario.store.unsent_events() == 0

    await wait_for(relayed, 60, "the outbox to be relayed", interval=0.2)
    await scenario.check(batch)

"""PostgreSQL, main's store, restarted in the middle of a batch. Reports that arrive meanwhile are refused with a
retryable 503 and retried by the activities; nothing is lost or applied twice, and every event reaches its client
once."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from deploy.local import LocalStack
from tests.stack import wait_for

from .harness import Platform, Simulator, Workers, all_submitted, echo, image, video

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.postgres_only]


async def test_postgres_restarted_mid_batch(
    fault_stack: LocalStack, scenario: Platform, workers: Workers, sim: Simulator
) -> None:
    jobs = [
        image("alice", "a frozen lake [sim:slow=3]"),
        image("bob", "an open window [sim:slow=4]"),
        video("alice", "smoke rising [sim:slow=3]", last_frame=True),
        video("bob", "a rolling marble [sim:slow=4]"),
        echo("alice", "across a database restart", delay_seconds=3),
        echo("bob", "across a database restart too", delay_seconds=2),
    ]
    tasks = await scenario.create(jobs)
    await all_submitted(scenario, tasks)

    await asyncio.to_thread(fault_stack.stop, "postgres")
    scenario.mark("PostgreSQL stopped")
    async with httpx.AsyncClient(base_url=fault_stack.main_internal_url) as worker:
        refused = await worker.post(
            f"/internal/tasks/{tasks[0].id}/report",
            json={"status": "running"},
            headers={"Authorization": f"Bearer {fault_stack.secrets.report_token}"},
        )
    assert refused.status_code == 503, refused.text
    assert (refused.json()["code"], refused.json()["retryable"]) == ("store_unavailable", True)

    async def reports_retried() -> bool:
        return workers.reports_retried(tasks) >= 2

    await wait_for(reports_retried, 60, "reports to main to be retried", interval=0.5)
    scenario.mark("reports are being retried")
    await asyncio.to_thread(fault_stack.start, "postgres")
    scenario.mark("PostgreSQL started again")
    await scenario.check(tasks, timeout=180)

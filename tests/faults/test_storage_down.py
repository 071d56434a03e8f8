"""Object storage unavailable while a batch uploads its results: the S3 server process is stopped, the uploads fail
and are retried, and the server is started again on the same port with the same data dir."""

from __future__ import annotations

import asyncio
import time

import pytest

from deploy.local import LocalStack
from tests.stack import wait_for

from .harness import (
    INTEGRATIONS,
    Platform,
    Simulator,
    Task,
    all_submitted,
    attempt_running,
    echo,
    image,
    retried_activities,
    video,
    work_pending,
)

pytestmark = [pytest.mark.integration, pytest.mark.faults]


async def test_storage_down_during_uploads(fault_stack: LocalStack, scenario: Platform, sim: Simulator) -> None:
    jobs = [
        image("alice", "a brass key [sim:slow=1]"),
        image("bob", "a pine forest [sim:slow=2]"),
        video("alice", "a melting candle [sim:slow=1]", last_frame=True),
        video("bob", "a flag in wind [sim:slow=2]"),
        # Echo retries fast (five attempts in about half a minute): this one starts uploading well into the outage.
        echo("bob", "stored after the outage", delay_seconds=6),
        # Cancelled by their users while their uploads hang on the S3 server that is away.
        image("alice", "cancelled mid-upload", expect="cancelled"),
        echo("alice", "cancelled mid-upload", delay_seconds=1, expect="cancelled"),
    ]
    tasks = await scenario.create(jobs)
    doomed = [t for t in tasks if t.job.expect == "cancelled"]
    await all_submitted(scenario, tasks)
    await asyncio.to_thread(fault_stack.stop, "minio")
    down_since = time.monotonic()
    scenario.mark("S3 server stopped")

    # Every integration's upload has failed at least once and is being retried.
    async def uploads_retried() -> set[str] | None:
        retrying = {t.job.integration for t in tasks if await retried_activities(scenario, t)}
        return retrying if retrying == set(INTEGRATIONS) else None

    await wait_for(uploads_retried, 60, "every integration's upload to be retried", interval=0.5)
    scenario.mark("uploads of every integration are being retried")

    async def cancel_mid_upload(task: Task) -> None:
        async def retrying() -> bool:
            return await attempt_running(scenario, task)

        # Once a retry of its upload is under way again on the worker.
        await wait_for(retrying, 60, f"task {task.id}'s upload to be retried", interval=0.1)
        cancel = await scenario.apis[task.job.user].http.post(f"/api/tasks/{task.id}/cancel")
        assert cancel.status_code == 202, cancel.text

    await asyncio.gather(*(cancel_mid_upload(t) for t in doomed))
    scenario.mark("two tasks cancelled mid-upload")

    # The cancel has reached the work: the uploads heartbeat, so the activities hear of it while they still wait
    # for the S3 server. (Their final report, which also removes their objects, waits for the server.)
    async def work_stopped() -> bool:
        return not any([await work_pending(scenario, t) for t in doomed])

    await wait_for(work_stopped, 30, "the cancelled uploads to stop", interval=0.2)
    scenario.mark("the cancelled uploads stopped")
    await asyncio.to_thread(fault_stack.start, "minio")
    scenario.mark(f"S3 server started again after {time.monotonic() - down_since:.1f}s down")

    await scenario.check(tasks, timeout=180)

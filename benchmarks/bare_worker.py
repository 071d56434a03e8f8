"""``python -m benchmarks.bare_worker ADDRESS TASK_QUEUE``: serve the bare workflow the way the launcher serves an
integration (same data converter, same sandbox runner, the SDK's default concurrency), until SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys

from temporalio.worker import Worker

from services.async_task.launcher import WORKFLOW_RUNNER
from services.shared.settings import TemporalSettings
from services.shared.temporal import connect

from .bare_workflow import BareWorkflow, process, report


async def serve(address: str, task_queue: str) -> None:
    client = await connect(TemporalSettings(address=address))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[BareWorkflow],
        activities=[report, process],
        workflow_runner=WORKFLOW_RUNNER,
    )
    async with worker:
        print(f"serving {task_queue}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2]))

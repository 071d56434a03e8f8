"""``python -m benchmarks.sdk_worker ADDRESS TASK_QUEUE SLOTS``: serve the hand-written baseline's workflows with the
SDK's defaults except ``SLOTS`` activity slots (matched to the platform's worker in each benchmark), until SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys

import httpx
from temporalio.client import Client
from temporalio.worker import Worker

from .handwritten import Settings
from .sdk_activities import SdkActivities
from .sdk_workflows import SdkEchoWorkflow, SdkImageWorkflow


async def serve(address: str, task_queue: str, slots: int) -> None:
    client = await Client.connect(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    limits = httpx.Limits(max_connections=slots, max_keepalive_connections=slots)
    async with httpx.AsyncClient(limits=limits) as http:
        activities = SdkActivities(Settings.from_env(), http)
        worker = Worker(
            client,
            task_queue=task_queue,
            workflows=[SdkEchoWorkflow, SdkImageWorkflow],
            activities=[activities.store_text, activities.generate_image],
            max_concurrent_activities=slots,
        )
        async with worker:
            print(f"serving {task_queue}", flush=True)
            await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2], int(sys.argv[3])))

"""``python -m benchmarks.tuned_worker SLOTS INTEGRATION ...``: the launcher's workers for the named integrations,
with ``max_concurrent_activities=SLOTS`` and an HTTP connection pool of SLOTS, instead of the SDK's and httpx's
default of 100 each. Only for showing what those two settings change; the platform's launcher is
``services.async_task``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

import httpx
from temporalio.worker import Worker

from services.async_task.launcher import WORKFLOW_RUNNER, LauncherSettings, load_spec, make_context, select
from services.shared.discovery import discover
from services.shared.settings import Env
from services.shared.temporal import connect


async def serve(slots: int, names: list[str]) -> None:
    settings = LauncherSettings.from_env()
    integrations = select(discover(blacklist=settings.blacklist), names)
    client = await connect(settings.platform.temporal)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    limits = httpx.Limits(max_connections=slots, max_keepalive_connections=slots)
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0), limits=limits) as http:
        ctx = make_context(settings.platform, Env(), http)
        workers = []
        for integration in integrations:
            spec = load_spec(integration, ctx)
            workers.append(
                Worker(
                    client,
                    task_queue=integration.task_queue,
                    workflows=list(spec.workflows),
                    activities=list(spec.activities),
                    workflow_runner=WORKFLOW_RUNNER,
                    max_concurrent_activities=slots,
                    graceful_shutdown_timeout=settings.shutdown_timeout,
                )
            )
        async with contextlib.AsyncExitStack() as running:
            for worker in workers:
                await running.enter_async_context(worker)
            print(f"serving {', '.join(i.name for i in integrations)} with {slots} activity slots", flush=True)
            await stop.wait()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve(int(sys.argv[1]), sys.argv[2:]))

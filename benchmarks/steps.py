"""Temporal steps per task, read from real histories: workflow tasks and activity tasks per echo, image and video
task through main, next to the hand-written SDK baseline (``sdk_workflows.py``) and the bare workflow.

Each workflow task is one round trip from the server to a worker and back (the server writes scheduled, started and
completed events and the worker replays the workflow); each activity task is another. Counted per history:
``WorkflowTaskScheduled``, ``ActivityTaskScheduled`` and ``ActivityTaskStarted`` events (a retried activity keeps
only its last attempt's started event, so the benchmark runs without injected faults), ``MarkerRecorded`` (a
``workflow.patched`` marker per patch a run takes, and one per local activity: the final report), ``TimerStarted``,
``WorkflowExecutionSignaled`` (Ark's callbacks) and the total number of events. Provider latency is the simulator's
default (0 for Gemini; an Ark job stays 1 s queued and 3 s running, with callbacks).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus

from services.shared.settings import TemporalSettings
from services.shared.temporal import connect as temporal_connect

from .harness import Bench, describe_machine, local_stack, stop_process, table, wait_until
from .sdk_workflows import ImageJob, TextJob

PER_KIND = 5
WITHIN = 300.0
BARE_QUEUE = "bench-bare"
SDK_QUEUE = "bench-sdk"
COUNTED = {
    "workflow tasks": EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    "activity tasks scheduled": EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
    "activity tasks started": EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED,
    "markers (patches, local activities)": EventType.EVENT_TYPE_MARKER_RECORDED,
    "timers": EventType.EVENT_TYPE_TIMER_STARTED,
    "signals": EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
}
INTEGRATIONS: dict[str, dict[str, object]] = {
    "echo": {"message": "steps"},
    "nanobanana2-image": {"prompt": "a lighthouse, counted"},
    "fangzhouVideoGeneration": {"prompt": "a paper boat, counted"},
}


async def history_counts(client: Client, workflow_id: str) -> Counter[int]:
    """Events of one closed workflow, by type (and ``-1``: all of them)."""
    handle = client.get_workflow_handle(workflow_id)

    async def closed() -> bool:
        return (await handle.describe()).status != WorkflowExecutionStatus.RUNNING

    await wait_until(closed, WITHIN, f"workflow {workflow_id} to close", interval=0.2)
    counts: Counter[int] = Counter()
    async for event in handle.fetch_history_events():
        counts[event.event_type] += 1
        counts[-1] += 1
    return counts


async def per_task(client: Client, workflow_ids: list[str]) -> list[str]:
    """The mean of each counted step over the workflows, and of all events."""
    histories = await asyncio.gather(*(history_counts(client, w) for w in workflow_ids))
    means = [sum(h[event] for h in histories) / len(histories) for event in (*COUNTED.values(), -1)]
    return [f"{m:g}" for m in means]


async def platform_tasks(bench: Bench, integration: str, body: dict[str, object]) -> list[str]:
    """Workflow ids of ``PER_KIND`` tasks created through main, once each has ended."""
    async with bench.user_client(connections=4) as http:
        ids: list[str] = []
        for _ in range(PER_KIND):
            response = await http.post(f"/api/integrations/{integration}/tasks", json=body)
            response.raise_for_status()
            ids.append(response.json()["workflow_id"])
        return ids


async def temporal_workflows(client: Client, workflow: str, arg: Callable[[str], object], queue: str) -> list[str]:
    run = uuid.uuid4().hex[:8]
    ids = [f"{workflow}-{run}-{i}" for i in range(PER_KIND)]
    handles = [await client.start_workflow(workflow, arg(w), id=w, task_queue=queue) for w in ids]
    await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), WITHIN)
    return ids


async def run() -> None:
    rows: list[list[object]] = []
    async with local_stack() as bench:
        address = bench.stack.temporal_address
        workers = [
            bench.start_worker(list(INTEGRATIONS), "workers"),
            bench.start_worker([address, BARE_QUEUE], "bare-worker", module="benchmarks.bare_worker"),
            bench.start_worker([address, SDK_QUEUE, "200"], "sdk-worker", module="benchmarks.sdk_worker"),
        ]
        try:
            for log_name in ("workers", "bare-worker", "sdk-worker"):
                await bench.wait_worker(log_name)
            platform = await temporal_connect(TemporalSettings(address=address))
            sdk = await Client.connect(address)
            kinds: list[tuple[str, Client, Callable[[], Awaitable[list[str]]]]] = [
                (f"main, {name} task", platform, partial(platform_tasks, bench, name, body))
                for name, body in INTEGRATIONS.items()
            ]
            kinds += [
                (
                    "hand-written SDK, echo job",
                    sdk,
                    lambda: temporal_workflows(sdk, "SdkEchoWorkflow", lambda j: TextJob(j, j), SDK_QUEUE),
                ),
                (
                    "hand-written SDK, image job",
                    sdk,
                    lambda: temporal_workflows(
                        sdk, "SdkImageWorkflow", lambda j: ImageJob(j, f"a boat {j}"), SDK_QUEUE
                    ),
                ),
                (
                    "bare workflow, 3 no-op activities",
                    platform,
                    lambda: temporal_workflows(platform, "BareWorkflow", lambda j: j, BARE_QUEUE),
                ),
            ]
            for label, client, start in kinds:
                rows.append([label, *await per_task(client, await start())])
        finally:
            for worker in workers:
                stop_process(worker)
    print(f"machine: {describe_machine()}")
    print(f"Temporal steps per task: mean over {PER_KIND} tasks of each kind, from their histories")
    print(table(["path", *COUNTED, "history events"], rows))


if __name__ == "__main__":
    asyncio.run(run())

"""End-to-end tasks/s through main (tasks until all succeeded) next to workflows/s of the same jobs written by hand
with the Temporal SDK alone, and of bare workflows with the echo task's three activities, all on the same Temporal
server, with the same client concurrency, from one run.

- echo: main's echo task (report running, store the text in S3, report the result) against the hand-written
  ``SdkEchoWorkflow`` (one activity that stores the text in the same S3 server) and ``BareWorkflow`` (three
  activities that do nothing, the platform's converter and sandbox, the SDK's default slots).
- image at zero provider latency: main's nanobanana2-image task against the hand-written ``SdkImageWorkflow`` (one
  activity that calls the simulator's generateContent and stores the PNG in the same S3 server).

Targets: main at least 0.9x the hand-written baseline's workflows/s, echo and image (issue: closer to the engine);
main at least 0.8x the bare workflows (benchmarks issue).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from temporalio.client import Client

from services.shared.settings import TemporalSettings
from services.shared.temporal import connect as temporal_connect

from .harness import (
    Bench,
    CpuMeter,
    count_tasks,
    describe_machine,
    last_update,
    local_stack,
    main_clients,
    stop_process,
    table,
    time_until_count,
)
from .sdk_workflows import ImageJob, TextJob

TASKS = 200
WARMUP = 20
ROUNDS = 3
# Creates (or workflow starts) in flight at once, on every path.
CLIENTS = 50
TIMEOUT = 600.0
BARE_TARGET = 0.8
BASELINE_TARGET = 0.9
BARE_QUEUE = "bench-bare"
SDK_QUEUE = "bench-sdk"
IMAGE = "nanobanana2-image"
# The launcher's default activity slots; the hand-written worker gets the same.
SLOTS = 200


@dataclass(frozen=True)
class Timing:
    accepted: float
    done: float


@dataclass(frozen=True)
class Path:
    label: str
    run: Callable[[int], Awaitable[Timing]]


async def through_main(bench: Bench, integration: str, body: Callable[[int], dict[str, Any]], count: int) -> Timing:
    """Seconds until every create was accepted, and until every task succeeded (from the tasks' ``updated_at``)."""
    async with bench.user_client(connections=4) as http:
        before = await count_tasks(http, integration, "succeeded")
        clients = main_clients(bench.stack.main_url, CLIENTS)

        async def create(i: int) -> None:
            status, answer = await clients.post(f"/api/integrations/{integration}/tasks", json.dumps(body(i)).encode())
            if status != 202:
                raise RuntimeError(f"create answered {status}: {answer.decode(errors='replace')}")

        start, start_wall = time.perf_counter(), time.time()
        await asyncio.gather(*(create(i) for i in range(count)))
        accepted = time.perf_counter() - start
        await clients.close()
        # Polled slowly so the benchmark's reads cost main little; the finish time comes from the tasks.
        await time_until_count(http, integration, "succeeded", before + count, TIMEOUT, interval=0.5)
        return Timing(accepted, await last_update(http, integration, "succeeded", count) - start_wall)


async def through_temporal(
    client: Client, workflow: str, arg: Callable[[str], object], queue: str, count: int
) -> Timing:
    """Seconds until every workflow was started, and until every result arrived."""
    gate = asyncio.Semaphore(CLIENTS)
    run = uuid.uuid4().hex[:8]
    starts: list[float] = []

    async def one(i: int) -> float:
        job_id = f"{workflow}-{run}-{i}"
        async with gate:
            handle = await client.start_workflow(workflow, arg(job_id), id=job_id, task_queue=queue, result_type=str)
            starts.append(time.perf_counter())
        await handle.result()
        return time.perf_counter()

    start = time.perf_counter()
    finished = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), TIMEOUT)
    return Timing(max(starts) - start, max(finished) - start)


def add(total: dict[str, float], more: dict[str, float]) -> None:
    for name, value in more.items():
        total[name] = total.get(name, 0.0) + value


def verdict(ratio: float, target: float) -> str:
    return f"{ratio:.2f} (target >= {target:g}: {'met' if ratio >= target else 'missed'})"


async def run() -> None:
    async with local_stack() as bench:
        address = bench.stack.temporal_address
        workers = {
            "echo worker": bench.start_worker(["echo"], "echo-worker"),
            "image worker": bench.start_worker([IMAGE], "image-worker"),
            "bare worker": bench.start_worker([address, BARE_QUEUE], "bare-worker", module="benchmarks.bare_worker"),
            "sdk worker": bench.start_worker(
                [address, SDK_QUEUE, str(SLOTS)], "sdk-worker", module="benchmarks.sdk_worker"
            ),
        }
        try:
            for log_name in ("echo-worker", "image-worker", "bare-worker", "sdk-worker"):
                await bench.wait_worker(log_name)
            platform_client = await temporal_connect(TemporalSettings(address=address))
            sdk_client = await Client.connect(address)
            paths = [
                Path("main, echo task", lambda n: through_main(bench, "echo", lambda i: {"message": f"echo {i}"}, n)),
                Path(
                    "bare workflow, 3 no-op activities",
                    lambda n: through_temporal(platform_client, "BareWorkflow", lambda j: j, BARE_QUEUE, n),
                ),
                Path(
                    "hand-written SDK, echo job",
                    lambda n: through_temporal(sdk_client, "SdkEchoWorkflow", lambda j: TextJob(j, j), SDK_QUEUE, n),
                ),
                Path(
                    "main, image task",
                    lambda n: through_main(bench, IMAGE, lambda i: {"prompt": f"a lighthouse, variant {i}"}, n),
                ),
                Path(
                    "hand-written SDK, image job",
                    lambda n: through_temporal(
                        sdk_client, "SdkImageWorkflow", lambda j: ImageJob(j, f"a lighthouse, {j}"), SDK_QUEUE, n
                    ),
                ),
            ]
            for path in paths:
                await path.run(WARMUP)
            pids = {**bench.pids(), **{name: proc.pid for name, proc in workers.items()}}
            timings: dict[str, list[Timing]] = {path.label: [] for path in paths}
            cpu: dict[str, dict[str, float]] = {path.label: {} for path in paths}
            for _ in range(ROUNDS):
                for path in paths:
                    meter = CpuMeter(pids)
                    # The benchmark's own process (its clients) is measured alone: the stack's processes are its
                    # children.
                    meter.start()
                    client = time.process_time()
                    timings[path.label].append(await path.run(TASKS))
                    add(cpu[path.label], {**meter.stop(), "benchmark client": time.process_time() - client})
        finally:
            for proc in workers.values():
                stop_process(proc)
    rate = {label: TASKS * ROUNDS / sum(t.done for t in runs) for label, runs in timings.items()}
    print(f"machine: {describe_machine()}")
    print(
        f"{TASKS} tasks per run, {CLIENTS} creates/starts in flight, {ROUNDS} runs of each path (interleaved), "
        f"simulator latency 0; {SLOTS} activity slots for main's and the hand-written workers, the SDK's default "
        "for the bare worker"
    )
    rows: list[list[object]] = []
    for i in range(ROUNDS):
        for label, runs in timings.items():
            t = runs[i]
            rows.append([f"run {i + 1}: {label}", f"{t.accepted:.2f}", f"{t.done:.2f}", f"{TASKS / t.done:.1f}"])
    print(table(["path", "all accepted s", "all succeeded s", "tasks/s"], rows))
    labels = [path.label for path in paths]
    print("  throughput: " + ", ".join(f"{label} {rate[label]:.1f}/s" for label in labels))
    echo, bare, sdk_echo, image, sdk_image = labels
    print(f"  ratio main/hand-written SDK, echo: {verdict(rate[echo] / rate[sdk_echo], BASELINE_TARGET)}")
    print(f"  ratio main/hand-written SDK, image: {verdict(rate[image] / rate[sdk_image], BASELINE_TARGET)}")
    print(f"  ratio main/bare, echo: {verdict(rate[echo] / rate[bare], BARE_TARGET)}")
    # On a machine whose other load varies, rates vary with it; CPU per task does much less.
    per_task = {label: sum(used.values()) for label, used in cpu.items()}
    print(
        "  CPU per task, hand-written SDK/main (throughput follows it while the CPU is the bottleneck): "
        f"echo {per_task[sdk_echo] / per_task[echo]:.2f}, image {per_task[sdk_image] / per_task[image]:.2f}"
    )
    tasks = TASKS * ROUNDS
    processes = sorted({name for used in cpu.values() for name in used})
    shown = [n for n in processes if max(used.get(n, 0.0) for used in cpu.values()) >= 0.05 * tasks / 1000]
    cpu_rows: list[list[object]] = [
        [n, *(f"{cpu[label].get(n, 0.0) * 1000 / tasks:.1f}" for label in labels)] for n in shown
    ]
    cpu_rows.append(["total", *(f"{sum(cpu[label].values()) * 1000 / tasks:.1f}" for label in labels)])
    print("  CPU ms per task (the machine has 2 cores; processes using under 0.05 ms per task on every path left out):")
    print(table(["process", *labels], cpu_rows, indent="    "))


if __name__ == "__main__":
    asyncio.run(run())

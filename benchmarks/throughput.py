"""End-to-end tasks/s through main (echo tasks until all succeeded) next to bare Temporal workflows/s with the
same number of activities, on the same Temporal server, with the same client concurrency and the SDK's default
worker settings on both sides.

Target (benchmarks issue): main's throughput at least 0.8x the bare workflows'.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid

from services.shared.settings import TemporalSettings
from services.shared.temporal import connect as temporal_connect

from .harness import (
    REPO,
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
    wait_until,
)

TASKS = 200
WARMUP = 20
ROUNDS = 3
# Creates (or workflow starts) in flight at once, on both paths.
CLIENTS = 50
TIMEOUT = 600.0
TARGET = 0.8
BARE_QUEUE = "bench-bare"


async def through_main(bench: Bench, count: int) -> tuple[float, float]:
    """(seconds until every create was accepted, seconds until every task succeeded)."""
    async with bench.user_client(connections=4) as http:
        before = await count_tasks(http, "echo", "succeeded")
        clients = main_clients(bench.stack.main_url, CLIENTS)

        async def create(i: int) -> None:
            status, answer = await clients.post(
                "/api/integrations/echo/tasks", json.dumps({"message": f"throughput {i}"}).encode()
            )
            if status != 202:
                raise RuntimeError(f"create answered {status}: {answer.decode(errors='replace')}")

        start, start_wall = time.perf_counter(), time.time()
        await asyncio.gather(*(create(i) for i in range(count)))
        accepted = time.perf_counter() - start
        await clients.close()
        # Polled slowly so the benchmark's reads cost main little; the finish time comes from the tasks.
        await time_until_count(http, "echo", "succeeded", before + count, TIMEOUT, interval=0.5)
        return accepted, await last_update(http, "echo", "succeeded", count) - start_wall


async def bare(bench: Bench, count: int) -> tuple[float, float]:
    client = await temporal_connect(TemporalSettings(address=bench.stack.temporal_address))
    gate = asyncio.Semaphore(CLIENTS)
    run = uuid.uuid4().hex[:8]

    starts: list[float] = []

    async def one(i: int) -> float:
        async with gate:
            handle = await client.start_workflow(
                "BareWorkflow", f"throughput {i}", id=f"bare-{run}-{i}", task_queue=BARE_QUEUE, result_type=str
            )
            starts.append(time.perf_counter())
        await handle.result()
        return time.perf_counter()

    start = time.perf_counter()
    finished = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), TIMEOUT)
    return max(starts) - start, max(finished) - start


def add(total: dict[str, float], more: dict[str, float]) -> None:
    for name, value in more.items():
        total[name] = total.get(name, 0.0) + value


def start_bare_worker(bench: Bench) -> subprocess.Popen[bytes]:
    log = (bench.stack.state_dir / "bare-worker.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bare_worker", bench.stack.temporal_address, BARE_QUEUE],
        cwd=REPO,
        env=bench.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def run() -> None:
    async with local_stack() as bench:
        echo = bench.start_worker(["echo"], "echo-worker")
        bare_worker = start_bare_worker(bench)
        try:
            await bench.wait_worker("echo-worker")

            async def bare_serving() -> bool:
                return "serving " in (bench.stack.state_dir / "bare-worker.log").read_text()

            await wait_until(bare_serving, 60, "the bare worker")
            await through_main(bench, WARMUP)
            await bare(bench, WARMUP)
            main_runs: list[tuple[float, float]] = []
            bare_runs: list[tuple[float, float]] = []
            pids = {**bench.pids(), "echo worker": echo.pid, "bare worker": bare_worker.pid}
            cpu_main: dict[str, float] = {}
            cpu_bare: dict[str, float] = {}
            for _ in range(ROUNDS):
                meter = CpuMeter(pids)
                # The benchmark's own process (its clients) is measured alone: the stack's processes are its children.
                meter.start()
                client = time.process_time()
                main_runs.append(await through_main(bench, TASKS))
                add(cpu_main, {**meter.stop(), "benchmark client": time.process_time() - client})
                meter.start()
                client = time.process_time()
                bare_runs.append(await bare(bench, TASKS))
                add(cpu_bare, {**meter.stop(), "benchmark client": time.process_time() - client})
        finally:
            stop_process(echo)
            stop_process(bare_worker)
    rows: list[list[object]] = []
    for i, ((m_acc, m_done), (b_acc, b_done)) in enumerate(zip(main_runs, bare_runs, strict=True), 1):
        rows.append([f"run {i}: main, echo task", f"{m_acc:.2f}", f"{m_done:.2f}", f"{TASKS / m_done:.1f}"])
        rows.append([f"run {i}: bare workflow", f"{b_acc:.2f}", f"{b_done:.2f}", f"{TASKS / b_done:.1f}"])
    main_rate = TASKS * ROUNDS / sum(done for _, done in main_runs)
    bare_rate = TASKS * ROUNDS / sum(done for _, done in bare_runs)
    ratio = main_rate / bare_rate
    print(f"machine: {describe_machine()}")
    print(
        f"{TASKS} tasks per run, {CLIENTS} creates/starts in flight, 3 activities per workflow, "
        f"SDK default worker settings, {ROUNDS} runs each (interleaved)"
    )
    print(table(["path", "all accepted s", "all succeeded s", "tasks/s"], rows))
    print(f"  throughput: main {main_rate:.1f} tasks/s, bare {bare_rate:.1f} workflows/s")
    print(f"  ratio main/bare: {ratio:.2f} (target >= {TARGET}: {'met' if ratio >= TARGET else 'missed'})")
    tasks = TASKS * ROUNDS
    names = [n for n in cpu_main if cpu_main[n] + cpu_bare.get(n, 0.0) >= 0.05 * tasks / 1000]
    cpu_rows: list[list[object]] = [
        [n, f"{cpu_main[n] * 1000 / tasks:.1f}", f"{cpu_bare.get(n, 0.0) * 1000 / tasks:.1f}"] for n in names
    ]
    cpu_rows.append(
        ["total", f"{sum(cpu_main.values()) * 1000 / tasks:.1f}", f"{sum(cpu_bare.values()) * 1000 / tasks:.1f}"]
    )
    print("  CPU ms per task (the machine has 2 cores; processes using under 0.05 ms per task left out):")
    print(table(["process", "main path", "bare path"], cpu_rows, indent="    "))


if __name__ == "__main__":
    asyncio.run(run())

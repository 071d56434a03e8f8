"""Fairness between users, with the Temporal server honouring fairness keys and not, from one run: user A creates
200 image tasks, then user B creates 10, the integration's provider queue limited to 20 requests per second. Each
task's finish time is its ``updated_at`` when it succeeded, from the moment its create was sent.

Each case runs on a stack of its own. The first runs the catalog's Temporal server (``deploy/catalog.py``:
fairness and priority on); the second the same server with fairness dispatch off, the new matcher (priority) and
the single partition kept, so the fairness key is the only difference. Tasks carry their user as fairness key in
both (``services/shared/tasks.py``).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import ClassVar

from deploy import catalog

from .harness import (
    BENCH_KEY,
    Bench,
    describe_machine,
    local_stack,
    main_clients,
    percentile,
    stop_process,
    table,
    time_until_count,
    updates,
)

IMAGE = "nanobanana2-image"
RATE = 20
BACKLOG = 200
FEW = 10
WARMUP = 5
CLIENTS = 50
TIMEOUT = 120.0
KEY_B = "bench-key-b"
FAIRNESS = "matching.enableFairness"
STACK_ENV = {"API_KEYS": f"{BENCH_KEY}:a,{KEY_B}:b"}


class TemporalWithoutFairness(catalog.Temporal):
    """The catalog's Temporal server with fairness dispatch off, every other dynamic config value as it is."""

    DYNAMIC_CONFIG: ClassVar[tuple[str, ...]] = tuple(
        f"{FAIRNESS}=false" if value.startswith(f"{FAIRNESS}=") else value for value in catalog.Temporal.DYNAMIC_CONFIG
    )


@dataclass(frozen=True)
class Case:
    label: str
    temporal: catalog.Temporal


@dataclass(frozen=True)
class Finishes:
    """Seconds from each task's create to its success, per user, and from A's first create to the last success."""

    a: list[float]
    b: list[float]
    all_done: float


async def create_all(bench: Bench, key: str, prefix: str, count: int) -> dict[str, float]:
    """Create ``count`` image tasks as the user of ``key``, all at once: when each create was sent, by task id."""
    clients = main_clients(bench.stack.main_url, min(CLIENTS, count), key)

    async def create(i: int) -> tuple[str, float]:
        sent = time.time()
        body = json.dumps({"prompt": f"{prefix} {i}", "image_size": "512"}).encode()
        status, answer = await clients.post(f"/api/integrations/{IMAGE}/tasks", body)
        if status != 202:
            raise RuntimeError(f"create answered {status}: {answer.decode(errors='replace')}")
        task_id: str = json.loads(answer)["id"]
        return task_id, sent

    try:
        return dict(await asyncio.gather(*(create(i) for i in range(count))))
    finally:
        await clients.close()


async def succeeded(bench: Bench, key: str, sent: dict[str, float], before: int) -> dict[str, float]:
    """When each task of ``sent`` succeeded (Unix seconds), once all have; ``before``: the user's earlier ones."""
    async with bench.user_client(key, connections=2) as http:
        await time_until_count(http, IMAGE, "succeeded", before + len(sent), TIMEOUT, interval=0.5)
        done = await updates(http, IMAGE, "succeeded", len(sent))
    if set(done) != set(sent):
        raise RuntimeError(f"the {len(sent)} newest succeeded tasks are not the ones created")
    return done


def since_create(done: dict[str, float], sent: dict[str, float]) -> list[float]:
    return [done[task_id] - sent[task_id] for task_id in sent]


async def scenario(case: Case) -> Finishes:
    async with local_stack(STACK_ENV, replacing=[case.temporal]) as bench:
        worker = bench.start_worker([IMAGE], "image-worker", env={"NANOBANANA2_IMAGE_REQUESTS_PER_SECOND": str(RATE)})
        try:
            await bench.wait_worker("image-worker")
            # The first tasks of a fresh stack pay for connections and caches; A's newest tasks exclude them.
            await succeeded(bench, BENCH_KEY, await create_all(bench, BENCH_KEY, "warm-up", WARMUP), 0)
            backlog = await create_all(bench, BENCH_KEY, "backlog", BACKLOG)
            few = await create_all(bench, KEY_B, "few", FEW)
            a, b = await asyncio.gather(succeeded(bench, BENCH_KEY, backlog, WARMUP), succeeded(bench, KEY_B, few, 0))
        finally:
            stop_process(worker)
    all_done = max(*a.values(), *b.values()) - min(backlog.values())
    return Finishes(since_create(a, backlog), since_create(b, few), all_done)


def seconds(values: list[float], pct: float) -> str:
    return f"{percentile(values, pct):.2f}"


async def run() -> None:
    if f"{FAIRNESS}=true" not in catalog.Temporal.DYNAMIC_CONFIG:
        raise RuntimeError(f"the catalog's Temporal server no longer sets {FAIRNESS}=true: nothing to compare")
    cases = [
        Case("fairness keys honoured", catalog.Temporal()),
        Case("fairness keys ignored", TemporalWithoutFairness()),
    ]
    results = [await scenario(case) for case in cases]
    print(f"machine: {describe_machine()}")
    print(
        f"user A creates {BACKLOG} {IMAGE} tasks, then user B {FEW}; provider queue at {RATE} requests/s "
        f"(NANOBANANA2_IMAGE_REQUESTS_PER_SECOND), simulator latency 0; seconds from each task's create to its success"
    )
    print(f"each case on a stack of its own; they differ in {FAIRNESS} only. Temporal dev server dynamic config:")
    for case in cases:
        print(f"  {case.label}: {', '.join(case.temporal.DYNAMIC_CONFIG)}")
    rows = [
        [
            case.label,
            seconds(r.b, 50),
            seconds(r.b, 95),
            f"{max(r.b):.2f}",
            seconds(r.a, 50),
            seconds(r.a, 95),
            f"{r.all_done:.2f}",
        ]
        for case, r in zip(cases, results, strict=True)
    ]
    headers = ["Temporal server", "B p50 s", "B p95 s", "B max s", "A p50 s", "A p95 s", "all done s"]
    print(table(headers, rows))
    print(f"  all done: from A's first create to the last success of the {BACKLOG + FEW} tasks")


if __name__ == "__main__":
    asyncio.run(run())

"""``python -m benchmarks.push_sender CONFIG_JSON``: send events on a fixed schedule (open loop) and print a JSON
summary. Runs in its own process so the benchmark's websocket reader has a core of its own.

Event ``i`` is due at ``t0 + i / rate`` (``time.monotonic()``, which is one clock for every process on the
machine), so the reader computes each event's latency from its due time: a sender that falls behind shows up as
latency, never as a slower schedule. Requests go over a few kept-alive connections written by hand
(``services/shared/http_link.py``).

Modes: ``report`` posts ``{"status": "running", "progress": p}`` to main's ``/internal/tasks/{id}/report``
(round robin over the given task ids, each report raising that task's progress), which main applies and relays
through its outbox and JetStream; ``publish`` publishes an event straight to the user's subject in JetStream
(``subject`` on ``nats_url``), the path from the stream onwards without main.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field

import uvloop

from services.shared import event_stream
from services.shared.http_link import HttpLink
from services.shared.settings import EventStreamSettings


@dataclass(frozen=True)
class SenderConfig:
    mode: str
    base_url: str
    token: str
    rate: float
    count: int
    t0: float
    connections: int = 32
    task_ids: list[str] = field(default_factory=list)
    first_seq: int = 0
    nats_url: str = ""
    subject: str = ""


PROGRESS_SCALE = 1_000_000
# A backlogged main answers seconds late; the run itself is bounded by the benchmark's own wait.
ANSWER_TIMEOUT = 60.0


def report_target(config: SenderConfig, i: int) -> tuple[str, float]:
    """The task and progress of event ``i`` in report mode."""
    tasks = len(config.task_ids)
    seq = config.first_seq + i // tasks + 1
    return config.task_ids[i % tasks], seq / PROGRESS_SCALE


def publish_event(config: SenderConfig, i: int) -> bytes:
    """An event shaped like main's task.updated, numbered ``n``."""
    event = {
        "n": config.first_seq + i,
        "id": f"direct-{config.first_seq + i}",
        "task_id": f"direct-{config.first_seq}-{i % 100}",
        "integration": "echo",
        "status": "running",
        "changes": {"progress": 0.5},
        "timestamp": "2026-01-01T00:00:00.000000+00:00",
        "version": i,
        "event": "task.updated",
    }
    return json.dumps(event).encode()


async def send_all(config: SenderConfig) -> dict[str, object]:
    queue: asyncio.Queue[int | None] = asyncio.Queue()
    statuses: dict[str, int] = {}
    not_applied = 0
    lag_max = 0.0

    async def connection() -> None:
        if config.mode == "publish":
            await publisher()
            return
        nonlocal not_applied
        link = HttpLink(config.base_url, config.token, timeout=ANSWER_TIMEOUT)
        try:
            while (i := await queue.get()) is not None:
                task_id, progress = report_target(config, i)
                body = json.dumps({"status": "running", "progress": progress}).encode()
                status, answer = await link.post(f"/internal/tasks/{task_id}/report", body)
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if status == 200 and not json.loads(answer).get("applied"):
                    not_applied += 1
        finally:
            await link.close()

    async def publisher() -> None:
        # One connection; each event is published when due and its acknowledgement awaited in the background.
        nats = await event_stream.connect(
            EventStreamSettings(user=event_stream.PUBLISHER, password=config.token, nats_url=config.nats_url),
            name="bench-sender",
        )
        js = nats.jetstream()
        acks = []
        try:
            while (i := await queue.get()) is not None:
                acks.append(await js.publish_async(config.subject, publish_event(config, i)))
            for ack in acks:
                await ack
                statuses["200"] = statuses.get("200", 0) + 1
        finally:
            await nats.close()

    workers = [asyncio.create_task(connection()) for _ in range(1 if config.mode == "publish" else config.connections)]
    i = 0
    while i < config.count:
        now = time.monotonic()
        while i < config.count and config.t0 + i / config.rate <= now:
            lag_max = max(lag_max, now - (config.t0 + i / config.rate))
            queue.put_nowait(i)
            i += 1
        if i < config.count:
            await asyncio.sleep(max(0.0, config.t0 + i / config.rate - time.monotonic()))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return {
        "sent": config.count,
        "statuses": statuses,
        "not_applied": not_applied,
        "schedule_lag_max_ms": round(lag_max * 1000, 2),
        "finished_after_s": round(time.monotonic() - config.t0, 3),
    }


def main() -> None:
    config = SenderConfig(**json.loads(sys.argv[1]))
    summary = uvloop.run(send_all(config))
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()

"""Push latency from a report (through main) or a publish (straight into the event stream) to the websocket, paced at
100, 300 and 1,000 events/s, with main on SQLite and on PostgreSQL; and communication's memory with 10,000 idle
sockets.

Targets: p99 under 20 ms at 300 reports/s through main (and at 1,000/s straight from the stream); under 1 GB of
memory for 10,000 idle sockets.

Through main, each event is a report on one of 100 tasks (round robin, each raising that task's progress), so
main applies it in a transaction that also writes the event to the outbox; the relay publishes it to JetStream and
communication pushes it to the user's socket. The tasks' workflows are not served by any worker here, so nothing
but these reports changes them. Direct, each event is published to the user's subject in JetStream. The sender is a
separate process with a fixed schedule; latency runs from an event's due time to its arrival on the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from dataclasses import asdict
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from services.shared.event_stream import PUBLISHER, user_subject
from services.shared.settings import Env, EventStreamSettings

from .harness import (
    BENCH_KEY,
    BENCH_USER,
    REPO,
    Bench,
    CpuMeter,
    describe_machine,
    local_stack,
    mib,
    percentile,
    raise_fd_limit,
    table,
    tree_rss_kib,
    wait_until,
)
from .push_sender import SenderConfig, report_target

RATE = 1000.0
SECONDS = 3.0
LOW_RATE = 100.0
# A rate one main process on 2 cores keeps up with, between the low rate and the target's.
MID_RATE = 300.0
TASKS = 100
IDLE_SOCKETS = 10_000
IDLE_PROCESSES = 4
IDLE_KEY = "bench-idle-key"
IDLE_USER = "idle"
LATENCY_TARGET_MS = 20.0
# The rate the latency target applies to through main (outbox, relay, JetStream); straight from the stream: RATE.
TARGET_RATE = MID_RATE
# Issue: closer to the engine.
MAIN_CPU_TARGET_MS = 1.0
MEMORY_TARGET_MIB = 1024.0
# Time the sender process gets to start before its first event is due.
SENDER_START = 1.5
# Events may still be on their way after the last HTTP answer (main publishes after answering).
DRAIN = 30.0


class Receiver:
    """Every message on one websocket with the time (time.monotonic) it arrived."""

    def __init__(self, ws: ClientConnection, pids: dict[str, int]) -> None:
        self.ws = ws
        # The processes whose CPU time each measurement reports.
        self.pids = pids
        self.messages: list[tuple[float, str | bytes]] = []
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for message in self.ws:
                self.messages.append((time.monotonic(), message))

    def take(self) -> list[tuple[float, str | bytes]]:
        taken, self.messages = self.messages, []
        return taken

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.gather(self._task, return_exceptions=True)


class Result:
    def __init__(
        self,
        label: str,
        rate: float,
        sent: int,
        expected: int,
        latencies: list[float],
        summary: Any,
        span: float,
        cpu: dict[str, float],
    ) -> None:
        # CPU seconds main and communication used during the row.
        self.cpu = cpu
        self.label = label
        self.rate = rate
        # Seconds from the first event's due time to the last arrival: received / span is the delivered rate.
        self.span = span
        self.sent = sent
        self.expected = expected
        self.latencies = latencies
        self.summary = summary

    def row(self) -> list[object]:
        lat = self.latencies
        received = len(lat)
        stats = [f"{percentile(lat, p):.1f}" for p in (50, 99)] + [f"{max(lat):.1f}"] if lat else ["-", "-", "-"]
        delivered = f"{received / self.span:.0f}" if self.span > 0 else "-"
        cpu = [f"{self.cpu.get(name, 0.0) * 1000 / max(1, received):.2f}" for name in ("main", "communication")]
        return [self.label, f"{self.rate:g}", self.sent, f"{received}/{self.expected}", delivered, *stats, *cpu]


async def user_token(bench: Bench, key: str) -> dict[str, Any]:
    async with bench.user_client(key) as http:
        response = await http.post("/api/realtime/token")
        response.raise_for_status()
        token: dict[str, Any] = response.json()
        return token


async def send(config: SenderConfig) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.push_sender",
        json.dumps(asdict(config)),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), config.count / config.rate + SENDER_START + 120)
    if proc.returncode != 0:
        raise RuntimeError(f"push sender exited with {proc.returncode}")
    summary: dict[str, Any] = json.loads(out)
    return summary


async def measure(receiver: Receiver, label: str, config: SenderConfig, due_of: dict[Any, int], key_of: Any) -> Result:
    """Run the sender with ``config`` and match what the socket received to the events' due times."""
    receiver.take()
    meter = CpuMeter(receiver.pids)
    meter.start()
    summary = await send(config)
    statuses: dict[str, int] = summary["statuses"]
    expected = statuses.get("200", 0) - int(summary["not_applied"])

    async def all_arrived() -> bool:
        return len(receiver.messages) >= expected

    with contextlib.suppress(TimeoutError):
        await wait_until(all_arrived, DRAIN, "every event", interval=0.05)
    await asyncio.sleep(0.2)
    cpu = meter.stop()
    latencies: list[float] = []
    last = config.t0
    for arrived, raw in receiver.take():
        index = due_of.get(key_of(json.loads(raw)))
        if index is not None:
            latencies.append((arrived - (config.t0 + index / config.rate)) * 1000)
            last = max(last, arrived)
    return Result(label, config.rate, config.count, expected, latencies, summary, last - config.t0, cpu)


def report_config(bench: Bench, task_ids: list[str], rate: float, count: int, first_seq: int) -> SenderConfig:
    return SenderConfig(
        mode="report",
        base_url=bench.stack.main_internal_url,
        token=bench.stack.secrets.report_token,
        rate=rate,
        count=count,
        t0=time.monotonic() + SENDER_START,
        task_ids=task_ids,
        first_seq=first_seq,
    )


def publish_config(bench: Bench, rate: float, count: int, first_seq: int) -> SenderConfig:
    # Published as main's relay does, with its NATS user.
    events = EventStreamSettings.from_env(Env(bench.env), PUBLISHER)
    return SenderConfig(
        mode="publish",
        base_url=bench.stack.communication_url,
        token=events.password,
        rate=rate,
        count=count,
        t0=time.monotonic() + SENDER_START,
        first_seq=first_seq,
        nats_url=events.nats_url,
        subject=user_subject(events, BENCH_USER),
    )


async def through_main(
    bench: Bench, receiver: Receiver, task_ids: list[str], label: str, rate: float, seq: int
) -> Result:
    count = int(rate * SECONDS)
    config = report_config(bench, task_ids, rate, count, seq)
    due_of = {report_target(config, i): i for i in range(count)}

    def key_of(event: dict[str, Any]) -> tuple[str, float] | None:
        progress = event.get("changes", {}).get("progress")
        return (event.get("task_id", ""), progress) if isinstance(progress, float) else None

    return await measure(receiver, label, config, due_of, key_of)


async def direct(bench: Bench, receiver: Receiver, label: str, rate: float, seq: int) -> Result:
    count = int(rate * SECONDS)
    config = publish_config(bench, rate, count, seq)
    due_of = {seq + i: i for i in range(count)}
    return await measure(receiver, label, config, due_of, lambda event: event.get("n"))


class IdleSockets:
    """Client processes holding idle websockets of another user (so no event of the benchmark reaches them)."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []
        self.opened = 0
        self.problems: list[str] = []

    async def open(self, url: str, token: str, total: int, processes: int) -> None:
        share = [total // processes + (1 if i < total % processes else 0) for i in range(processes)]
        for count in share:
            self.procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "benchmarks.idle_sockets",
                    url,
                    token,
                    str(count),
                    cwd=REPO,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
            )
        for proc in self.procs:
            assert proc.stdout is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 300)).decode().strip()
            words = line.split()
            if len(words) < 2 or words[0] != "open":
                raise RuntimeError(f"idle socket client said {line!r}")
            self.opened += int(words[1])
            if "failed" in words:
                self.problems.append(line)

    async def close(self) -> None:
        for proc in self.procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def communication_metrics(bench: Bench) -> dict[str, int]:
    async with httpx.AsyncClient(base_url=bench.stack.communication_internal_url, timeout=10) as http:
        response = await http.get("/metrics")
        response.raise_for_status()
        metrics: dict[str, int] = response.json()
        return metrics


async def create_tasks(bench: Bench, count: int) -> list[str]:
    async with bench.user_client(connections=20) as http:

        async def one(i: int) -> str:
            response = await http.post("/api/integrations/echo/tasks", json={"message": f"push {i}"})
            response.raise_for_status()
            task_id: str = response.json()["id"]
            return task_id

        return list(await asyncio.gather(*(one(i) for i in range(count))))


async def report_rows(bench: Bench, store: str) -> list[Result]:
    """Report rows through main at the three rates, with main on ``store``."""
    task_ids = await create_tasks(bench, TASKS)
    token = await user_token(bench, BENCH_KEY)
    ws = await connect(f"{token['url']}?token={token['token']}", max_queue=None)
    pids = bench.pids()
    receiver = Receiver(ws, {name: pids[name] for name in ("main", "communication")})
    rows: list[Result] = []
    seq = 0
    try:
        # Warm the path (connections, pages of the store, code paths) before measuring.
        await through_main(bench, receiver, task_ids, "warm-up", 200, seq)
        seq += 1000
        for rate in (LOW_RATE, MID_RATE, RATE):
            rows.append(await through_main(bench, receiver, task_ids, f"report via main ({store})", rate, seq))
            seq += 100_000
    finally:
        await receiver.close()
    return rows


async def run() -> None:
    fd_limit = raise_fd_limit(IDLE_SOCKETS + 4096)
    results: list[Result] = []
    idle = IdleSockets()
    extra = {"API_KEYS": f"{BENCH_KEY}:{BENCH_USER},{IDLE_KEY}:{IDLE_USER}"}
    async with local_stack(extra) as bench:
        communication = bench.pids()["communication"]
        results += await report_rows(bench, "SQLite")
        token = await user_token(bench, BENCH_KEY)
        ws = await connect(f"{token['url']}?token={token['token']}", max_queue=None)
        pids = bench.pids()
        receiver = Receiver(ws, {name: pids[name] for name in ("main", "communication")})
        seq = 0
        try:
            await direct(bench, receiver, "warm-up", 200, seq)
            seq += 100_000
            results.append(await direct(bench, receiver, "publish to the stream", RATE, seq))
            seq += 100_000
            rss_before = tree_rss_kib(communication)
            idle_token = await user_token(bench, IDLE_KEY)
            began = time.perf_counter()
            await idle.open(idle_token["url"], idle_token["token"], IDLE_SOCKETS, IDLE_PROCESSES)
            open_seconds = time.perf_counter() - began
            await asyncio.sleep(3)
            rss_idle = tree_rss_kib(communication)
            metrics = await communication_metrics(bench)
            label = f"publish to the stream, {idle.opened} idle sockets open"
            results.append(await direct(bench, receiver, label, RATE, seq))
            rss_after = tree_rss_kib(communication)
        finally:
            await idle.close()
            await receiver.close()
    async with local_stack(extra, store="postgres") as bench:
        results += await report_rows(bench, "PostgreSQL")
    print(f"machine: {describe_machine()}")
    print(
        f"event -> websocket latency, paced sender ({SECONDS:g} s per row), ms from each event's due time; "
        "CPU: ms of main's and communication's CPU per received event"
    )
    headers = ["path", "events/s", "sent", "received", "delivered/s", "p50", "p99", "max", "main CPU", "comm CPU"]
    print(table(headers, [r.row() for r in results]))
    for r in results:
        lag = r.summary["schedule_lag_max_ms"]
        statuses = ", ".join(f"{code}: {n}" for code, n in sorted(r.summary["statuses"].items()))
        print(
            f"  {r.label} at {r.rate:g}/s: HTTP {statuses}; reports not applied {r.summary['not_applied']}; "
            f"sender max lag {lag} ms; last answer {r.summary['finished_after_s']} s after the first was due"
        )
    for r in results:
        target_rate = TARGET_RATE if r.label.startswith("report") else RATE
        if r.latencies and r.rate == target_rate:
            p99 = percentile(r.latencies, 99)
            verdict = "met" if p99 < LATENCY_TARGET_MS and len(r.latencies) == r.expected else "missed"
            print(f"  target p99 < {LATENCY_TARGET_MS:g} ms, {r.label} at {r.rate:g}/s: {verdict} ({p99:.1f} ms)")
    for r in results:
        if r.label.startswith("report") and r.rate == RATE and r.span > 0:
            print(f"  one main on {r.label[17:-1]}: {len(r.latencies) / r.span:.0f} reports/s applied and delivered")
            per_report = r.cpu.get("main", 0.0) * 1000 / max(1, len(r.latencies))
            verdict = "met" if per_report <= MAIN_CPU_TARGET_MS else "missed"
            print(
                f"  target main CPU per report <= {MAIN_CPU_TARGET_MS:g} ms, {r.label} at {r.rate:g}/s: {verdict} "
                f"({per_report:.2f} ms)"
            )
    print(f"communication memory (RSS), {idle.opened} idle sockets from {IDLE_PROCESSES} client processes:")
    per_socket = (rss_idle - rss_before) / max(1, idle.opened)
    rows = [
        ["before", mib(rss_before)],
        [f"{idle.opened} idle sockets open (3 s after)", mib(rss_idle)],
        ["after the publish run with them open", mib(rss_after)],
    ]
    print(table(["communication", "RSS MiB"], rows))
    print(
        f"  {per_socket:.1f} KiB per socket; sockets opened in {open_seconds:.1f} s; /metrics connections_open "
        f"{metrics.get('connections_open')}; open-file limit {fd_limit}"
    )
    if idle.problems:
        print(f"  socket clients reported: {'; '.join(idle.problems)}")
    verdict = "met" if rss_after / 1024 < MEMORY_TARGET_MIB and idle.opened == IDLE_SOCKETS else "missed"
    print(f"  target < {MEMORY_TARGET_MIB:g} MiB with {IDLE_SOCKETS} idle sockets: {verdict}")


if __name__ == "__main__":
    asyncio.run(run())

"""Create-task latency through main vs a bare ``start_workflow``; report-to-websocket delivery latency; the CPU the
workers' report client spends per report.

Targets: main's create p50 within 1.25x of bare start_workflow at 32 concurrent clients (issue: closer to the
engine; 1.5x in the issue on main and communication); report-to-websocket p99 under 20 ms on loopback. The
measured creates use hand-written HTTP (``harness.main_clients``); the same creates through httpx are printed
beside them.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable

import httpx
import msgspec
from websockets.asyncio.client import connect

from integrations.echo.schemas import EchoInput, EchoRequest
from services.shared.http_link import HttpLinkPool
from services.shared.reporting import ReportClient
from services.shared.settings import TemporalSettings
from services.shared.tasks import ReportOutcome, TaskEnvelope, TaskReport
from services.shared.temporal import connect as temporal_connect

from .harness import BENCH_KEY, Bench, local_stack, machine, main_clients, percentile

CONCURRENCY = 32
CREATE_TARGET = 1.25
EARLIER_CREATE_TARGET = 1.5
REPORTS = 640
REPORT_POOL = "ReportClient on HttpLinkPool"
REPORT_HTTPX = "httpx.AsyncClient"
ROUNDS = 15
EVENTS = 300
MAIN = "POST main /tasks"
MAIN_HTTPX = "POST main /tasks (httpx client)"
BARE = "bare client.start_workflow"


async def timed_rounds(call: Callable[[], Awaitable[None]], rounds: int) -> list[float]:
    latencies: list[float] = []

    async def one() -> None:
        start = time.perf_counter()
        await call()
        latencies.append((time.perf_counter() - start) * 1000)

    for _ in range(rounds):
        await asyncio.gather(*(one() for _ in range(CONCURRENCY)))
    return latencies


async def create_latency(bench: Bench) -> dict[str, list[float]]:
    """Latencies (ms) of each create path, measured in interleaved rounds so that they share conditions."""
    temporal = await temporal_connect(TemporalSettings(address=bench.stack.temporal_address))
    # The measured main path: one kept-alive connection per concurrent client (main_clients). The same creates
    # through httpx are shown beside them for what a typical Python client sees.
    clients = main_clients(bench.stack.main_url, CONCURRENCY)
    body = json.dumps({"message": "bench"}).encode()
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(
        base_url=bench.stack.main_url, headers={"Authorization": f"Bearer {BENCH_KEY}"}, limits=limits, timeout=30
    ) as http:

        async def via_main() -> None:
            status, answer = await clients.post("/api/integrations/echo/tasks", body)
            assert status == 202, answer

        async def via_main_httpx() -> None:
            response = await http.post("/api/integrations/echo/tasks", content=body)
            assert response.status_code == 202, response.text

        async def bare() -> None:
            await temporal.start_workflow(
                "EchoWorkflow",
                EchoInput(TaskEnvelope(f"bare-{uuid.uuid4()}"), EchoRequest(message="bench")),
                id=f"bare-{uuid.uuid4()}",
                task_queue="bench-unserved",
            )

        paths = {MAIN: via_main, MAIN_HTTPX: via_main_httpx, BARE: bare}
        # Warm every path (connections, SQLite pages) before measuring.
        for call in paths.values():
            await timed_rounds(call, 2)
        latencies: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(ROUNDS):
            for name, call in paths.items():
                latencies[name] += await timed_rounds(call, 1)
    await clients.close()
    return latencies


async def push_latency(bench: Bench) -> list[float]:
    """One running task; each report raises its progress, so each is applied and pushed once."""
    async with httpx.AsyncClient(base_url=bench.stack.main_url, timeout=30) as http:
        user = {"Authorization": f"Bearer {BENCH_KEY}"}
        internal = {"Authorization": f"Bearer {bench.stack.secrets.report_token}"}
        task = (
            await http.post(
                "/api/integrations/echo/tasks", json={"message": "push", "delay_seconds": 3600}, headers=user
            )
        ).json()
        token = (await http.post("/api/realtime/token", headers=user)).json()
        latencies: list[float] = []
        async with connect(f"{token['url']}?token={token['token']}") as ws:
            await ws.recv()
            for i in range(1, EVENTS + 1):
                progress = i / (EVENTS + 1)
                start = time.perf_counter()
                response = await http.post(
                    f"{bench.stack.main_internal_url}/internal/tasks/{task['id']}/report",
                    json={"status": "running", "progress": progress},
                    headers=internal,
                )
                assert response.json()["applied"], response.text
                while True:
                    event = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if event.get("changes", {}).get("progress") == progress:
                        break
                latencies.append((time.perf_counter() - start) * 1000)
        await http.post(f"/api/tasks/{task['id']}/cancel", headers=user)
    return latencies


async def report_client_cpu(bench: Bench) -> dict[str, float]:
    """CPU of the calling process per report (ms), ``REPORTS`` reports with ``CONCURRENCY`` in flight, through the
        workers' report client (``ReportClient`` on an ``HttpLinkPool``) and through an httpx client as the workers
        used before, in interleaved rounds. Each report raises the progress of one queued task (main may find a few of
    them overtaken by a later one in flight)."""
    token = bench.stack.secrets.report_token
    async with bench.user_client() as user:
        created = await user.post("/api/integrations/echo/tasks", json={"message": "reports", "delay_seconds": 3600})
        task_id = created.json()["id"]
    pool = ReportClient(HttpLinkPool(bench.stack.main_internal_url, token, CONCURRENCY, timeout=30))
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    sent = 0

    def next_report() -> TaskReport:
        nonlocal sent
        sent += 1
        return TaskReport(status="running", progress=sent / 1_000_000)

    async with httpx.AsyncClient(limits=limits, timeout=30) as http:

        async def via_pool() -> None:
            assert (await pool.report(task_id, next_report())).status == "running"

        async def via_httpx() -> None:
            body = msgspec.json.encode(next_report())
            response = await http.post(
                f"{bench.stack.main_internal_url}/internal/tasks/{task_id}/report", content=body, headers=headers
            )
            assert msgspec.json.decode(response.content, type=ReportOutcome).status == "running", response.text

        paths = {REPORT_POOL: via_pool, REPORT_HTTPX: via_httpx}
        used = dict.fromkeys(paths, 0.0)
        for call in paths.values():
            await timed_rounds(call, 2)
        for _ in range(REPORTS // CONCURRENCY // 2):
            for name, call in paths.items():
                began = time.process_time()
                await timed_rounds(call, 2)
                used[name] += time.process_time() - began
    await pool.close()
    rounds = REPORTS // CONCURRENCY // 2 * 2
    return {name: seconds * 1000 / (rounds * CONCURRENCY) for name, seconds in used.items()}


async def run() -> None:
    # No worker runs: both paths only start workflows, so the comparison is the cost main adds to a start
    # (auth, validation, the store, the event), not the workflows' own work competing for the CPU.
    async with local_stack() as bench:
        creates = await create_latency(bench)
        push_ms = await push_latency(bench)
        report_cpu = await report_client_cpu(bench)
    p50 = {name: percentile(values, 50) for name, values in creates.items()}
    print(f"machine: {machine()}")
    print(f"create latency at {CONCURRENCY} concurrent clients, {len(creates[BARE])} requests each path (ms):")
    print(f"  {'path':<36}{'p50':>8}{'p99':>8}")
    for name, values in creates.items():
        print(f"  {name:<36}{p50[name]:>8.1f}{percentile(values, 99):>8.1f}")
    ratio = p50[MAIN] / p50[BARE]
    verdict = "met" if ratio <= CREATE_TARGET else "missed"
    earlier = "met" if ratio <= EARLIER_CREATE_TARGET else "missed"
    print(
        f"  ratio main/bare p50: {ratio:.2f} (target <= {CREATE_TARGET:g}: {verdict}; "
        f"the earlier <= {EARLIER_CREATE_TARGET:g}: {earlier})"
    )
    print(f"  ratio main (httpx client)/bare p50: {p50[MAIN_HTTPX] / p50[BARE]:.2f}")
    print(
        f"report -> websocket delivery, {len(push_ms)} events (ms): "
        f"p50 {percentile(push_ms, 50):.1f}  p99 {percentile(push_ms, 99):.1f} (target p99 < 20)"
    )
    print(
        f"worker report client, CPU of the calling process per report, {CONCURRENCY} in flight (ms): "
        + ", ".join(f"{name} {ms:.2f}" for name, ms in report_cpu.items())
    )


if __name__ == "__main__":
    asyncio.run(run())

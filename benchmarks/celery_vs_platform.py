"""What teams hand-roll instead: Celery with a Redis broker (``celery_app.py``) doing the same 200 image tasks at
10 s provider latency as main (``async_vs_sync.py``), with the same concurrency (as many threads as main's worker
has activity slots), the simulator as provider and the same S3 server; then the same run with the worker SIGKILLed
5 s in and restarted at once, next to main's image worker under the same kill.

Each task's prompt is unique, so the simulator's per-prompt attempt counter (``/_sim/stats``) says how often the
provider was called for it; the S3 server says whether its image was stored. A task counts as lost when it has
not ended (succeeded or failed) ``ENDED_WITHIN`` seconds after the first create. Redis is Debian's
``redis-server``, started on a free port in a temporary directory (append-only file on, as a broker that must not
lose tasks runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import redis
from celery.result import AsyncResult

from services.shared.settings import Env, StorageSettings
from services.shared.storage import ObjectStore

from .async_vs_sync import INTEGRATION, create_images, provider_calls, set_latency, through_main
from .celery_app import DEFAULTS_VARIABLE, VISIBILITY_TIMEOUT_SECONDS, app, generate_image
from .harness import (
    Bench,
    count_tasks,
    describe_machine,
    free_port,
    local_stack,
    mib,
    stop_process,
    table,
    tree_rss_kib,
    wait_until,
)

REQUESTS = 200
LATENCY_MS = 10_000
WARMUP = 5
# The launcher's default activity slots; the Celery worker gets as many threads.
SLOTS = 200
KILL_AT = 5.0
ENDED_WITHIN = 150.0
ENDED = ("succeeded", "failed")
REDIS_PACKAGE_HINT = "install Debian's redis-server (apt-get install redis-server)"


@dataclass
class Outcome:
    label: str
    accepted: float
    # Seconds from the first create until the last task that ended did.
    last_ended: float | None
    succeeded: int
    failed: int
    provider_calls: int
    # Tasks the provider was called for more than once.
    called_again: int
    # Tasks whose image is in the S3 server.
    stored: int
    # Provider calls made before the worker was killed; None: not killed.
    calls_by_kill: int | None = None
    # Peak RSS of the path's own processes (KiB); None when not sampled.
    rss_kib: int | None = None

    def row(self) -> list[object]:
        lost = REQUESTS - self.succeeded - self.failed
        return [
            self.label,
            f"{self.accepted:.2f}",
            "-" if self.last_ended is None else f"{self.last_ended:.1f}",
            self.succeeded,
            self.failed,
            lost,
            "-" if self.calls_by_kill is None else self.calls_by_kill,
            self.provider_calls,
            self.called_again,
            self.stored,
            "-" if self.rss_kib is None else mib(self.rss_kib),
        ]


class RssPeak:
    """The largest summed RSS of some processes (each with its descendants), sampled every 0.5 s until stopped."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak = 0
        self._task = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, sum(tree_rss_kib(pid) for pid in self.pids))
            await asyncio.sleep(0.5)

    async def stop(self) -> int:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        return self.peak


async def provider_attempts(bench: Bench) -> dict[str, int]:
    """generateContent calls per exact prompt, as the simulator counted them."""
    async with httpx.AsyncClient(base_url=bench.stack.simulator_url, timeout=10) as sim:
        stats = (await sim.get("/_sim/stats")).json()
        attempts: dict[str, int] = stats["prompt_attempts"].get("gemini", {})
        return attempts


def object_store(bench: Bench) -> ObjectStore:
    return ObjectStore(StorageSettings.from_env(Env(bench.env)))


async def killed_and_restarted(
    bench: Bench, proc: subprocess.Popen[bytes], at: float, restart: Callable[[], subprocess.Popen[bytes]]
) -> tuple[subprocess.Popen[bytes], int]:
    """SIGKILL ``proc`` (its whole session) at ``at`` (perf_counter), then start its replacement at once; the
    replacement, and how many provider calls had been made by the kill (since the call)."""
    calls_before = await provider_calls(bench)
    await asyncio.sleep(max(0.0, at - time.perf_counter()))
    calls = await provider_calls(bench) - calls_before
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    return restart(), calls


# --- main ------------------------------------------------------------------------------------------------------


async def ended_count(http: httpx.AsyncClient) -> int:
    """How many of the user's image tasks have ended (main's list endpoint: unlike a read of one unfinished task, it
    does not ask Temporal, so waiting costs the stack little)."""
    return sum([await count_tasks(http, INTEGRATION, status) for status in ENDED])


async def listed(http: httpx.AsyncClient, ids: set[str]) -> list[dict[str, str]]:
    """The listed state of each of ``ids`` (the newest of the user's image tasks)."""
    found: list[dict[str, str]] = []
    offset = 0
    while len(found) < len(ids):
        params: dict[str, str | int] = {"integration": INTEGRATION, "limit": 100, "offset": offset}
        response = await http.get("/api/tasks", params=params)
        response.raise_for_status()
        items = response.json()["items"]
        if not items:
            break
        found += [item for item in items if item["id"] in ids]
        offset += len(items)
    return found


async def platform_run(bench: Bench, label: str, kill: bool) -> Outcome:
    log_name = f"image-worker-{uuid.uuid4().hex[:6]}"

    def start() -> subprocess.Popen[bytes]:
        return bench.start_worker([INTEGRATION], log_name)

    worker = start()
    try:
        await bench.wait_worker(log_name)
        pids = bench.pids()
        rss = None if kill else RssPeak([pids["temporal"], pids["main"], pids["communication"], worker.pid])
        run = uuid.uuid4().hex[:8]
        prompts = [f"a lighthouse at dusk, {run} {i}" for i in range(REQUESTS)]
        async with bench.user_client(connections=4) as http:
            before = await ended_count(http)
            start_at, start_wall = time.perf_counter(), time.time()
            killer = None
            if kill:
                killer = asyncio.create_task(killed_and_restarted(bench, worker, start_at + KILL_AT, start))
            created = await create_images(bench, prompts)
            accepted = max(c.ended for c in created) - start_at
            calls_by_kill = None
            if killer is not None:
                worker, calls_by_kill = await killer
                await bench.wait_worker(log_name, starts=2)

            async def all_ended() -> bool:
                return await ended_count(http) - before >= REQUESTS

            with contextlib.suppress(TimeoutError):
                await wait_until(all_ended, start_at + ENDED_WITHIN - time.perf_counter(), "every task", interval=1.0)
            final = await listed(http, {c.task_id for c in created})
        rss_kib = None if rss is None else await rss.stop()
    finally:
        stop_process(worker)
    ended = [datetime.fromisoformat(t["updated_at"]).timestamp() for t in final if t["status"] in ENDED]
    attempts = await provider_attempts(bench)
    keys = await object_store(bench).list_keys("tasks/")
    ids = {c.task_id for c in created}
    return Outcome(
        label=label,
        accepted=accepted,
        last_ended=max(ended) - start_wall if ended else None,
        succeeded=sum(1 for t in final if t["status"] == "succeeded"),
        failed=sum(1 for t in final if t["status"] == "failed"),
        provider_calls=sum(attempts.get(p, 0) for p in prompts),
        called_again=sum(1 for p in prompts if attempts.get(p, 0) > 1),
        stored=len({key.split("/")[1] for key in keys} & ids),
        calls_by_kill=calls_by_kill,
        rss_kib=rss_kib,
    )


# --- Celery ----------------------------------------------------------------------------------------------------


def start_redis(directory: str, port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        raise RuntimeError(f"redis-server not found: {REDIS_PACKAGE_HINT}")
    argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", directory, "--save", ""]
    argv += ["--appendonly", "yes", "--logfile", str(Path(directory) / "redis.log")]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)


@contextlib.asynccontextmanager
async def redis_server() -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    """Debian's redis-server on a free port in a temporary directory: its URL and its process."""
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        port = free_port()
        proc = start_redis(tmp, port)
        client = redis.Redis(host="127.0.0.1", port=port)

        async def answers() -> bool:
            try:
                return bool(await asyncio.to_thread(client.ping))
            except redis.ConnectionError:
                return False

        try:
            await wait_until(answers, 30, "redis-server")
            yield f"redis://127.0.0.1:{port}", proc
        finally:
            client.close()
            stop_process(proc)


async def celery_run(
    bench: Bench, broker: str, broker_proc: subprocess.Popen[bytes], label: str, kill: bool, defaults: bool = False
) -> Outcome:
    log_name = f"celery-worker-{uuid.uuid4().hex[:6]}"
    argv = ["-A", "benchmarks.celery_app", "-b", f"{broker}/0", "--result-backend", f"{broker}/1", "worker"]
    argv += ["--pool", "threads", "--concurrency", str(SLOTS), "--loglevel", "INFO", "--hostname", "handrolled@%h"]

    def start() -> subprocess.Popen[bytes]:
        return bench.start_worker(argv, log_name, module="celery", env={DEFAULTS_VARIABLE: "1" if defaults else "0"})

    worker = start()
    try:
        await bench.wait_worker(log_name, ready=" ready.")
        rss = None if kill else RssPeak([broker_proc.pid, worker.pid])
        run = uuid.uuid4().hex[:8]
        jobs = [(f"celery-{run}-{i}", f"a lighthouse at dusk, celery {run} {i}") for i in range(REQUESTS)]
        start_at, start_wall = time.perf_counter(), time.time()
        killer = asyncio.create_task(killed_and_restarted(bench, worker, start_at + KILL_AT, start)) if kill else None

        def send() -> list[AsyncResult[float]]:
            return [generate_image.apply_async((job_id, prompt), task_id=job_id) for job_id, prompt in jobs]

        results = await asyncio.to_thread(send)
        accepted = time.perf_counter() - start_at
        calls_by_kill = None
        if killer is not None:
            worker, calls_by_kill = await killer
            await bench.wait_worker(log_name, starts=2, ready=" ready.")

        async def all_ended() -> bool:
            return await asyncio.to_thread(lambda: all(r.ready() for r in results))

        with contextlib.suppress(TimeoutError):
            await wait_until(all_ended, start_at + ENDED_WITHIN - time.perf_counter(), "every task", interval=1.0)
        states: list[tuple[str, object]] = await asyncio.to_thread(lambda: [(r.state, r.result) for r in results])
        rss_kib = None if rss is None else await rss.stop()
    finally:
        stop_process(worker)
    finished = [value for state, value in states if state == "SUCCESS" and isinstance(value, float)]
    attempts = await provider_attempts(bench)
    keys = await object_store(bench).list_keys("celery/")
    ids = {job_id for job_id, _ in jobs}
    return Outcome(
        label=label,
        accepted=accepted,
        # A failed task's end time is not returned; with the simulator's default answers none fails.
        last_ended=max(finished) - start_wall if finished else None,
        succeeded=len(finished),
        failed=sum(1 for state, _ in states if state == "FAILURE"),
        provider_calls=sum(attempts.get(prompt, 0) for _, prompt in jobs),
        called_again=sum(1 for _, prompt in jobs if attempts.get(prompt, 0) > 1),
        stored=len({key.split("/")[1] for key in keys} & ids),
        calls_by_kill=calls_by_kill,
        rss_kib=rss_kib,
    )


async def run() -> None:
    outcomes: list[Outcome] = []
    async with local_stack() as bench, redis_server() as (broker, broker_proc):
        app.conf.update(broker_url=f"{broker}/0", result_backend=f"{broker}/1")
        warmup = bench.start_worker([INTEGRATION], "image-warmup")
        try:
            await bench.wait_worker("image-warmup")
            await through_main(bench, "warm-up", WARMUP)
        finally:
            stop_process(warmup)
        await set_latency(bench, LATENCY_MS)
        outcomes.append(await platform_run(bench, "main, launcher defaults", kill=False))
        outcomes.append(await celery_run(bench, broker, broker_proc, "Celery + Redis", kill=False))
        outcomes.append(await platform_run(bench, f"main, worker SIGKILLed at {KILL_AT:g} s", kill=True))
        outcomes.append(
            await celery_run(bench, broker, broker_proc, f"Celery, worker SIGKILLed at {KILL_AT:g} s", kill=True)
        )
        outcomes.append(
            await celery_run(
                bench, broker, broker_proc, f"Celery defaults, worker SIGKILLed at {KILL_AT:g} s", True, defaults=True
            )
        )
    print(f"machine: {describe_machine()}")
    print(
        f"{REQUESTS} image tasks at {LATENCY_MS / 1000:g} s provider latency (simulator), {SLOTS} concurrent provider "
        f"calls on both paths (main's activity slots; Celery's threads pool); killed runs: the worker's process "
        f"SIGKILLed {KILL_AT:g} s after the first create and restarted at once; lost: not ended {ENDED_WITHIN:g} s "
        "after the first create"
    )
    headers = [
        "path",
        "all accepted s",
        "last ended s",
        "succeeded",
        "failed",
        "lost",
        "calls before the kill",
        "provider calls",
        "tasks called twice+",
        "images in S3",
        "peak RSS MiB",
    ]
    print(table(headers, [o.row() for o in outcomes]))
    print(
        "  RSS: main's path counts Temporal, main, communication and the worker; Celery's counts redis-server and "
        "its worker (the simulator and the S3 server serve both and are left out)"
    )
    print(
        f"  Celery: task_acks_late, task_reject_on_worker_lost, worker_prefetch_multiplier=1, visibility timeout "
        f"{VISIBILITY_TIMEOUT_SECONDS} s: a task taken by the killed worker runs again only once its visibility "
        "timeout has passed; main: an activity on the killed worker is retried once its 10 s heartbeat timeout passes"
    )
    print(
        "  Celery defaults: a message is acknowledged when its task starts, so a task running on the killed worker "
        "is gone (one still reserved would come back after the default visibility timeout of an hour)"
    )


if __name__ == "__main__":
    asyncio.run(run())

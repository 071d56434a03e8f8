"""A whole local stack on free ports in a temporary directory, and small helpers that benchmarks share."""

from __future__ import annotations

import asyncio
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import httpx

from deploy import config
from deploy.catalog import Middleware
from deploy.local import LocalStack
from deploy.ports import Ports
from services.shared.discovery import discover
from services.shared.http_link import HttpLinkPool
from services.shared.manifest import limit_settings

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]
BENCH_KEY = "bench-key"
BENCH_USER = "bench"
# Never inherited by the stack: with a provider key the workers would call the real provider instead of the
# simulator on 127.0.0.1.
PROVIDER_VARIABLES = ("GEMINI_API_KEY", "GEMINI_BASE_URL", "ARK_API_KEY", "ARK_BASE_URL", "MAIN_PUBLIC_URL")
# Higher than any benchmark reaches: what lifts a limit.
UNLIMITED = "1000000"


def unlimited() -> dict[str, str]:
    """The benchmarks measure what the platform can carry, not the limits it applies by default: main's per-key
    ones and the provider limits integrations declare (``limit_settings``). A benchmark about a limit sets its own."""
    main = ("MAIN_RATE_LIMIT_PER_SECOND", "MAIN_RATE_LIMIT_BURST", "MAIN_MAX_ACTIVE_TASKS")
    providers = (
        name
        for i in discover().integrations
        for name, declared in zip(
            limit_settings(i.name),
            (i.manifest.limits.requests_per_second, i.manifest.limits.max_concurrent_jobs),
            strict=True,
        )
        if declared is not None
    )
    return dict.fromkeys((*main, *providers), UNLIMITED)


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def machine() -> str:
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def memory_total_mib() -> int:
    return meminfo_kib("MemTotal") // 1024


def meminfo_kib(field: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name == field:
            return int(rest.split()[0])
    return 0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def describe_machine() -> str:
    return f"{machine()}; {cpu_model()}; {memory_total_mib() / 1024:.1f} GiB RAM; load average {load_average()}"


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's open-file limit toward ``wanted`` (up to the hard limit); the new soft limit.
    Processes started afterwards (the stack's services, socket clients) inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


# --- memory of processes -------------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """Resident set size (VmRSS) of one process, from /proc/<pid>/status; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return 0


def children(pid: int) -> list[int]:
    """Every descendant of ``pid``."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may contain spaces: the parent pid is the 2nd field after its ")".
        ppid = int(stat.rpartition(")")[2].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def tree_rss_kib(pid: int) -> int:
    return rss_kib(pid) + sum(rss_kib(child) for child in children(pid))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process and its reaped children so far (/proc/<pid>/stat); 0 if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # After the command name: state is field 3, so utime/stime/cutime/cstime (14-17) are at 11..14 here.
    ticks = sum(int(v) for v in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds each named process (with its descendants) used between ``start`` and ``stop``."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) + sum(cpu_seconds(c) for c in children(pid)) for name, pid in self.pids.items()}

    def start(self) -> None:
        self._start = self._now()

    def stop(self) -> dict[str, float]:
        now = self._now()
        self.used = {name: now[name] - self._start.get(name, 0.0) for name in self.pids}
        return self.used


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], indent: str = "  ") -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))]
        lines.append(indent + "  ".join(parts).rstrip())
    return "\n".join(lines)


# --- waiting -------------------------------------------------------------------------------------------------


async def wait_until(probe: Callable[[], Awaitable[T | None]], within: float, what: str, interval: float = 0.1) -> T:
    """Poll ``probe`` until it returns something other than None/False; raise naming ``what`` on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await probe()
        if value is not None and value is not False:
            return value
        if loop.time() > deadline:
            raise TimeoutError(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(interval)


def main_clients(main_url: str, count: int, key: str = BENCH_KEY) -> HttpLinkPool:
    """``count`` kept-alive connections to main as the user of ``key`` (the benchmark's), HTTP written by hand
    (``services/shared/http_link.py``); each request takes a free one. The bare Temporal paths use the SDK's native
    client, and on 2 cores an HTTP library's own CPU would be charged to main."""
    return HttpLinkPool(main_url, key, count, timeout=60)


@dataclass
class Bench:
    stack: LocalStack
    env: dict[str, str]

    def start_worker(
        self,
        integrations: list[str],
        log_name: str,
        module: str = "services.async_task",
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        log = (self.stack.state_dir / f"{log_name}.log").open("ab")
        return subprocess.Popen(
            [sys.executable, "-m", module, *integrations],
            cwd=REPO,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    async def wait_worker(self, log_name: str, within: float = 60, starts: int = 1, ready: str = "serving ") -> None:
        """Wait until the worker logging to ``log_name`` has said ``ready`` ``starts`` times (a restarted worker
        appends to the same log)."""
        log = self.stack.state_dir / f"{log_name}.log"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while (log.read_text(errors="replace") if log.exists() else "").count(ready) < starts:
            if loop.time() > deadline:
                raise RuntimeError(f"worker {log_name} did not start")
            await asyncio.sleep(0.1)

    def user_client(self, key: str = BENCH_KEY, connections: int = 100) -> httpx.AsyncClient:
        """An HTTP client for main acting as the benchmark's user."""
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        return httpx.AsyncClient(
            base_url=self.stack.main_url, headers={"Authorization": f"Bearer {key}"}, limits=limits, timeout=60
        )

    def pids(self) -> dict[str, int]:
        """The pid of each component of the stack (middleware and services)."""
        return {s.name: s.pid for s in self.stack.status() if s.pid is not None}


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM one process we started, then SIGKILL it if it does not exit in time."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


async def count_tasks(http: httpx.AsyncClient, integration: str, status: str) -> int:
    """How many of the user's tasks of ``integration`` have ``status`` (main's list endpoint, one row fetched)."""
    response = await http.get("/api/tasks", params={"integration": integration, "status": status, "limit": 1})
    response.raise_for_status()
    total: int = response.json()["total"]
    return total


async def time_until_count(
    http: httpx.AsyncClient, integration: str, status: str, target: int, within: float, interval: float = 0.1
) -> float:
    """Seconds (perf_counter) at which at least ``target`` tasks have ``status``; raises on timeout."""

    async def probe() -> float | None:
        return time.perf_counter() if await count_tasks(http, integration, status) >= target else None

    return await wait_until(probe, within, f"{target} {integration} tasks {status}", interval)


async def last_update(http: httpx.AsyncClient, integration: str, status: str, count: int) -> float:
    """The latest ``updated_at`` (Unix seconds) among the user's ``count`` newest tasks of ``integration`` with
    ``status``: when the last of them changed, to the millisecond, whenever it is asked."""
    return max((await updates(http, integration, status, count)).values(), default=0.0)


async def updates(http: httpx.AsyncClient, integration: str, status: str, count: int) -> dict[str, float]:
    """The ``updated_at`` (Unix seconds) of each of the user's ``count`` newest tasks of ``integration`` with
    ``status``, by task id."""
    found: dict[str, float] = {}
    offset = 0
    while offset < count:
        limit = min(100, count - offset)
        params: dict[str, str | int] = {"integration": integration, "status": status, "limit": limit, "offset": offset}
        response = await http.get("/api/tasks", params=params)
        response.raise_for_status()
        items = response.json()["items"]
        if not items:
            break
        found.update((item["id"], datetime.fromisoformat(item["updated_at"]).timestamp()) for item in items)
        offset += len(items)
    return found


@asynccontextmanager
async def local_stack(
    extra_env: dict[str, str] | None = None,
    components: Sequence[str] = ("middleware", "services"),
    store: str = "sqlite",
    replacing: Sequence[Middleware] = (),
) -> AsyncIterator[Bench]:
    """A stack with main on ``store`` (``sqlite`` or ``postgres``, a PostgreSQL server from the host's binaries),
    running ``replacing`` instead of the catalog's middleware of the same names."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        # PostgreSQL refuses to run as root; run as root, the deploy tool starts it as the postgres user, which
        # must be able to pass through this directory.
        os.chmod(tmp, 0o711)  # noqa: S103 - others may pass through, not list or write
        inherited = {k: v for k, v in os.environ.items() if k not in PROVIDER_VARIABLES}
        environ = {**inherited, "API_KEYS": f"{BENCH_KEY}:{BENCH_USER}", **unlimited(), **(extra_env or {})}
        enabled = list(config.load().enabled)
        stack = LocalStack(
            Path(tmp) / "state",
            Ports.free(),
            components=list(components),
            middleware=[*enabled, "postgres"] if store == "postgres" else enabled,
            replacing=replacing,
            environ=environ,
            out=sys.stderr,
        )
        try:
            await asyncio.to_thread(stack.up)
            yield Bench(stack, stack.service_env())
        finally:
            await asyncio.to_thread(stack.down)

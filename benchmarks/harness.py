"""A whole local stack on free ports in a temporary directory, for benchmarks."""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from deploy.local import LocalStack
from deploy.ports import Ports

REPO = Path(__file__).resolve().parents[1]
BENCH_KEY = "bench-key"


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def machine() -> str:
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


@dataclass
class Bench:
    stack: LocalStack
    env: dict[str, str]

    def start_worker(self, integrations: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log = (self.stack.state_dir / f"{log_name}.log").open("ab")
        return subprocess.Popen(
            [sys.executable, "-m", "services.async_task", *integrations],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    async def wait_worker(self, log_name: str, within: float = 30) -> None:
        log = self.stack.state_dir / f"{log_name}.log"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while "serving " not in (log.read_text() if log.exists() else ""):
            if loop.time() > deadline:
                raise RuntimeError(f"worker {log_name} did not start")
            await asyncio.sleep(0.1)


@asynccontextmanager
async def local_stack(extra_env: dict[str, str] | None = None) -> AsyncIterator[Bench]:
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        environ = {**os.environ, "API_KEYS": f"{BENCH_KEY}:bench", **(extra_env or {})}
        stack = LocalStack(
            Path(tmp) / "state",
            Ports.free(),
            components=["middleware", "services"],
            environ=environ,
            out=sys.stderr,
        )
        await asyncio.to_thread(stack.up)
        try:
            yield Bench(stack, stack.service_env())
        finally:
            await asyncio.to_thread(stack.down)

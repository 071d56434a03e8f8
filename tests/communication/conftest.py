"""Runs communication as a real process on free ports (public and internal listener), the way compose runs it:
outside development mode, with secrets long enough to be accepted there."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.shared.realtime_token import issue
from tests.stack import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
PUBLISH_TOKEN = "test-publish-token-0123456789abcdef"
REALTIME_SECRET = "test-realtime-secret-0123456789abcdef"
STARTUP_TIMEOUT = 15.0


@dataclass
class Service:
    process: asyncio.subprocess.Process
    port: int
    internal_port: int
    log_path: Path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def internal_url(self) -> str:
        """The internal listener: the publish API and /metrics."""
        return f"http://127.0.0.1:{self.internal_port}"

    def ws_url(self, token: str | None = None) -> str:
        url = f"ws://127.0.0.1:{self.port}/ws"
        return url if token is None else f"{url}?token={token}"

    def token(self, user: str, ttl_seconds: int = 300) -> str:
        token, _ = issue(REALTIME_SECRET, user, ttl_seconds)
        return token

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.http_url, timeout=10)

    def internal(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.internal_url, timeout=10)

    async def publish(self, http: httpx.AsyncClient, channel: str, event: dict[str, Any]) -> int:
        response = await http.post(
            "/internal/publish",
            json={"channel": channel, "event": event},
            headers={"Authorization": f"Bearer {PUBLISH_TOKEN}"},
        )
        assert response.status_code == 200, response.text
        delivered: int = response.json()["delivered"]
        return delivered

    async def metrics(self, http: httpx.AsyncClient) -> dict[str, int]:
        response = await http.get("/metrics")
        assert response.status_code == 200, response.text
        counters: dict[str, int] = response.json()
        return counters

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


async def wait_until_healthy(service: Service) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    async with service.http() as http:
        while True:
            if service.process.returncode is not None:
                raise RuntimeError(f"communication exited with {service.process.returncode}:\n{service.log()}")
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/healthz")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"communication did not become healthy in {STARTUP_TIMEOUT}s:\n{service.log()}")
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def run_service(
    log_dir: Path, port: int | None = None, internal_port: int | None = None, **overrides: str
) -> AsyncIterator[Service]:
    port = port or free_port()
    internal_port = internal_port or free_port()
    environ = {k: v for k, v in os.environ.items() if k != "DEVELOPMENT_MODE"}
    env = {
        **environ,
        "PUBLISH_TOKEN": PUBLISH_TOKEN,
        "REALTIME_SECRET": REALTIME_SECRET,
        "COMMUNICATION_HOST": "127.0.0.1",
        "COMMUNICATION_PORT": str(port),
        "COMMUNICATION_INTERNAL_PORT": str(internal_port),
        **overrides,
    }
    log_path = log_dir / f"communication-{port}.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.communication",
            cwd=REPO_ROOT,
            env=env,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
        )
    service = Service(process, port, internal_port, log_path)
    try:
        await wait_until_healthy(service)
        yield service
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


@pytest.fixture(scope="session")
async def service(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    """One service with default settings, shared by the tests that do not need their own."""
    async with run_service(tmp_path_factory.mktemp("communication")) as running:
        yield running

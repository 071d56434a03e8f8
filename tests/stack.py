"""Helpers for tests that run the real stack: processes, HTTP clients, websocket clients, waiting."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from litestar.types import ASGIApp
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from websockets.asyncio.client import ClientConnection, connect

from deploy import config
from deploy.local import LocalStack
from deploy.ports import Ports, free_port
from deploy.spec import Shape
from services.shared.settings import EventStreamSettings

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]
# Long enough to be accepted outside development mode too (the compose stack in tests/containers).
USERS = {"alice": "alice-key-0123456789abcdef0123456789", "bob": "bob-key-0123456789abcdef0123456789ab"}
# The stores main runs on; tests marked ``every_store`` run once on each.
STORES = ("sqlite", "postgres")


def middleware_for(store: str) -> list[str]:
    """The middleware a stack on ``store`` runs: the enabled ones, and PostgreSQL for the postgres store."""
    enabled = list(config.load().enabled)
    return [*enabled, "postgres"] if store == "postgres" else enabled


@contextlib.contextmanager
def running_stack(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    store: str,
    environ: Mapping[str, str],
    shape: Shape = "single",
) -> Iterator[LocalStack]:
    """A local stack of middleware and services (no workers) on free ports, with main on ``store``."""
    with state_base(tmp_path_factory, f"{name}-{store}", store) as base:
        stack = LocalStack(
            base / "state",
            Ports.free(),
            components=["middleware", "services"],
            middleware=middleware_for(store),
            environ=environ,
            shape=shape,
        )
        with stack:
            yield stack


@contextlib.contextmanager
def state_base(tmp_path_factory: pytest.TempPathFactory, name: str, store: str) -> Iterator[Path]:
    """Where a test stack keeps its state. PostgreSQL refuses to run as root, so a test run as root starts it as
    the ``postgres`` user (``deploy/catalog.py``), which cannot enter pytest's private temporary directories: a
    stack with PostgreSQL lives in a temporary directory that other users may pass through, removed afterwards."""
    if store != "postgres" or os.geteuid() != 0:
        yield tmp_path_factory.mktemp(name)
        return
    path = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def nats_settings(server: LocalStack, user: str, **settings: Any) -> EventStreamSettings:
    """The event stream on ``server``'s NATS, as the NATS user ``user`` (main's or communication's) connects."""
    return EventStreamSettings(
        user=user, password=server.secrets.nats_password(user), nats_url=server.service_env()["NATS_URL"], **settings
    )


async def wait_for(probe: Callable[[], Awaitable[T | None]], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``probe`` until it returns something other than None/False; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


async def signals_heard(temporal: Client, workflow_id: str, signal: str) -> int:
    """How many ``signal`` signals the workflow's history holds."""
    heard = [
        event
        async for event in temporal.get_workflow_handle(workflow_id).fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        and event.workflow_execution_signaled_event_attributes.signal_name == signal
    ]
    return len(heard)


@asynccontextmanager
async def serve(app: ASGIApp) -> AsyncIterator[str]:
    """Serve an ASGI app (lifespan included) on 127.0.0.1 and a free port in this event loop; yields its base URL.
    In this loop, it can talk to a Temporal worker running here too."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        if task.done():
            raise AssertionError(f"the server did not start: {task.exception()!r}")
        return server.started

    await wait_for(started, 30, "the server to start", interval=0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def exchange(url: str, data: bytes, timeout: float = 10) -> tuple[bytes, float]:
    """Send raw ``data`` to the server at ``url`` (http://host:port), then read until the server closes the
    connection or ``timeout`` passes: what came back, and how long the server took to close."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    started = time.monotonic()
    writer.write(data)
    await writer.drain()
    answer = b""
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                answer += chunk
    finally:
        writer.close()
    return answer, time.monotonic() - started


class Launcher:
    """``python -m services.async_task`` (or another service's ``module``) as a subprocess, the way its container
    runs it; from the repository, or from a copy of it given as ``cwd``."""

    def __init__(
        self, env: Mapping[str, str], args: list[str], log: Path, module: str = "services.async_task", cwd: Path = REPO
    ) -> None:
        self.log = log
        self._file = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=cwd,
            env=dict(env),
            stdout=self._file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_serving(self, timeout: float = 30) -> None:
        async def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"launcher exited with {self.proc.returncode}:\n{self.output()}")
            return "serving " in self.output()

        await wait_for(ready, timeout, "the launcher to serve")

    async def wait_answering(self, url: str, timeout: float = 60) -> None:
        """Until ``GET url`` answers 200 (a service's /healthz or /readyz); fails if the process exits first."""
        async with httpx.AsyncClient(timeout=5) as http:

            async def answers() -> bool:
                if self.proc.poll() is not None:
                    raise AssertionError(f"{self.log.name}: exited with {self.proc.returncode}:\n{self.output()}")
                try:
                    return (await http.get(url)).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(answers, timeout, f"{url} to answer 200")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._file.close()

    def terminate(self, timeout: float) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._file.close()
        return code


class MainProcess:
    """Another ``python -m services.main`` beside a stack's own, on its own free ports, sharing the stack's store
    and everything else in ``env`` (the stack's ``service_env()``) except what ``overrides`` changes."""

    def __init__(self, env: Mapping[str, str], log: Path, **overrides: str) -> None:
        self.port, self.internal_port = free_port(), free_port()
        ports = {"MAIN_PORT": str(self.port), "MAIN_INTERNAL_PORT": str(self.internal_port)}
        self.process = Launcher({**env, **ports, **overrides}, [], log, module="services.main")
        self.url = f"http://127.0.0.1:{self.port}"
        self.internal_url = f"http://127.0.0.1:{self.internal_port}"

    async def wait_ready(self, timeout: float = 60) -> None:
        await self.process.wait_answering(f"{self.url}/readyz", timeout)

    def kill(self) -> None:
        self.process.kill()


class Api:
    """An HTTP client for main acting as one user: of a local stack, or of any main given by its base URL
    (the compose stack in tests/containers)."""

    def __init__(self, main: LocalStack | str, user: str) -> None:
        self.main_url = main if isinstance(main, str) else main.main_url
        self.user = user
        self.http = httpx.AsyncClient(
            base_url=self.main_url, headers={"Authorization": f"Bearer {USERS[user]}"}, timeout=30
        )

    async def create(self, integration: str, body: dict[str, Any], **headers: str) -> httpx.Response:
        return await self.http.post(f"/api/integrations/{integration}/tasks", json=body, headers=headers)

    async def task(self, task_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/api/tasks/{task_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait_status(self, task_id: str, statuses: set[str], timeout: float = 60) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            task = await self.task(task_id)
            return task if task["status"] in statuses else None

        return await wait_for(probe, timeout, f"task {task_id} to reach {statuses}", interval=0.2)

    async def socket(self) -> Events:
        response = await self.http.post("/api/realtime/token")
        assert response.status_code == 201, response.text
        token = response.json()
        ws = await connect(f"{token['url']}?token={token['token']}")
        hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert hello["event"] == "connected", hello
        return Events(ws)

    async def close(self) -> None:
        await self.http.aclose()


def statuses(events: list[dict[str, Any]], task_id: str) -> list[str]:
    """The statuses one task's events carried, in order."""
    return [e["status"] for e in events if e.get("task_id") == task_id]


class Events:
    """Events received on one websocket, read in order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def next(self, timeout: float = 30) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        return message

    async def until(self, task_id: str, status: str, timeout: float = 60) -> list[dict[str, Any]]:
        """Every event up to and including ``task_id`` reaching ``status``."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            event = await self.next(max(0.1, deadline - time.monotonic()))
            seen.append(event)
            if event.get("task_id") == task_id and event.get("status") == status:
                return seen

    async def close(self) -> None:
        await self.ws.close()

"""Runs communication as a real process on free ports (public and internal listener), the way compose runs it:
outside development mode, with secrets long enough to be accepted there, against a real NATS server whose stream
the tests publish task events to (as main's relay does, with main's NATS user)."""

from __future__ import annotations

import asyncio
import contextlib
import json
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
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext

from deploy.local import LocalStack
from deploy.ports import free_port
from services.shared import event_stream
from services.shared.realtime_token import issue
from services.shared.settings import EventStreamSettings, password_variable
from tests.stack import nats_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
REALTIME_SECRET = "test-realtime-secret-0123456789abcdef"
STARTUP_TIMEOUT = 15.0


@dataclass
class Events:
    """The task-event stream of the tests' NATS server: what main's relay would publish."""

    # main's: the publishing user.
    settings: EventStreamSettings
    nats: Nats
    js: JetStreamContext
    # What communication connects with: the reading user.
    reader: EventStreamSettings

    async def publish(self, user: str, event: dict[str, Any]) -> int:
        """Publish ``event`` to ``user``'s subject; its stream sequence."""
        ack = await self.js.publish(event_stream.user_subject(self.settings, user), json.dumps(event).encode())
        return ack.seq

    def env(self) -> dict[str, str]:
        return {
            "NATS_URL": self.reader.nats_url,
            password_variable(self.reader.user): self.reader.password,
            "EVENTS_STREAM": self.settings.stream,
            "EVENTS_SUBJECT_PREFIX": self.settings.subject_prefix,
            "EVENTS_MAX_AGE_SECONDS": str(self.settings.max_age_seconds),
            "EVENTS_DUPLICATE_WINDOW_SECONDS": str(self.settings.duplicate_window_seconds),
        }


@dataclass
class Service:
    process: asyncio.subprocess.Process
    port: int
    internal_port: int
    log_path: Path
    events: Events

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def internal_url(self) -> str:
        """The internal listener: /metrics."""
        return f"http://127.0.0.1:{self.internal_port}"

    def ws_url(self, token: str | None = None, since: int | str | None = None) -> str:
        url = f"ws://127.0.0.1:{self.port}/ws"
        query = [f"token={token}"] if token is not None else []
        if since is not None:
            query.append(f"since={since}")
        return f"{url}?{'&'.join(query)}" if query else url

    def token(self, user: str, ttl_seconds: int = 300) -> str:
        token, _ = issue(REALTIME_SECRET, user, ttl_seconds)
        return token

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.http_url, timeout=10)

    def internal(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.internal_url, timeout=10)

    async def publish(self, user: str, event: dict[str, Any]) -> int:
        return await self.events.publish(user, event)

    async def metrics(self, http: httpx.AsyncClient) -> dict[str, int]:
        response = await http.get("/metrics")
        assert response.status_code == 200, response.text
        counters: dict[str, int] = response.json()
        return counters

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


async def open_stream(nats_server: LocalStack, **settings: Any) -> Events:
    """A stream of its own (``stream`` and ``subject_prefix`` name it) on the tests' NATS server, created as main
    creates it."""
    config = nats_settings(nats_server, event_stream.PUBLISHER, **settings)
    nats = await event_stream.connect(config, name="tests")
    js = nats.jetstream()
    await event_stream.ensure_stream(js, config)
    return Events(config, nats, js, nats_settings(nats_server, event_stream.READER, **settings))


@pytest.fixture(scope="session")
async def events(nats_server: LocalStack) -> AsyncIterator[Events]:
    stream = await open_stream(nats_server)
    yield stream
    await stream.nats.close()


async def wait_until_ready(service: Service) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    async with service.http() as http:
        while True:
            if service.process.returncode is not None:
                raise RuntimeError(f"communication exited with {service.process.returncode}:\n{service.log()}")
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/readyz")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"communication did not become ready in {STARTUP_TIMEOUT}s:\n{service.log()}")
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def run_service(
    log_dir: Path, events: Events, port: int | None = None, internal_port: int | None = None, **overrides: str
) -> AsyncIterator[Service]:
    port = port or free_port()
    internal_port = internal_port or free_port()
    environ = {k: v for k, v in os.environ.items() if k != "DEVELOPMENT_MODE"}
    env = {
        **environ,
        **events.env(),
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
    service = Service(process, port, internal_port, log_path, events)
    try:
        await wait_until_ready(service)
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
async def service(tmp_path_factory: pytest.TempPathFactory, events: Events) -> AsyncIterator[Service]:
    """One service with default settings, shared by the tests that do not need their own."""
    async with run_service(tmp_path_factory.mktemp("communication"), events) as running:
        yield running

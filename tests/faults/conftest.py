"""The fault suite's own stack: these scenarios stop and kill its parts, so it is never the session's ``stack``.
Free ports, its own state dir; both provider integrations always talk to the simulator, with short latencies
and a fast poll policy."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from deploy.local import LocalStack
from services.main.settings import MainSettings, database_url
from services.main.store import TaskStore
from services.shared.settings import Env, StorageSettings, TemporalSettings
from services.shared.storage import ObjectStore
from services.shared.temporal import connect
from tests.stack import STORES, USERS, running_stack

from .harness import EventLog, Platform, Simulator, Workers, client

PROVIDER_VARIABLES = ("GEMINI_API_KEY", "ARK_API_KEY", "GEMINI_BASE_URL", "ARK_BASE_URL")
SIMULATOR_ENV = {
    "SIMULATOR_ARK_QUEUE_SECONDS": "0.5",
    "SIMULATOR_ARK_RUN_SECONDS": "2",
    "SIMULATOR_GEMINI_LATENCY_MS": "300",
    "SIMULATOR_HANG_SECONDS": "120",
}
# main's reconciler acts within seconds here (a task queued for 3 s, every 0.5 s), so scenarios can wait for it.
RECONCILER_ENV = {"MAIN_RECONCILE_INTERVAL_SECONDS": "0.5", "MAIN_RECONCILE_AFTER_SECONDS": "3"}
# What the workers of this suite run with: Ark polled every 0.5-1.5 s; a Gemini call that gets no answer within
# 8 s is abandoned and retried (the simulator's hang would otherwise hold it for minutes).
WORKER_ENV = {
    "ARK_POLL_INITIAL_SECONDS": "0.5",
    "ARK_POLL_BACKOFF": "1.5",
    "ARK_POLL_MAX_SECONDS": "1.5",
    "ARK_DEADLINE_SECONDS": "600",
    "GEMINI_TIMEOUT_SECONDS": "8",
    "ASYNC_TASK_SHUTDOWN_SECONDS": "2",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every scenario runs with main on SQLite and again on PostgreSQL; those marked ``postgres_only`` (PostgreSQL's
    own faults) on PostgreSQL alone."""
    if "fault_store" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("postgres_only") is not None
        metafunc.parametrize("fault_store", STORES[1:] if only else STORES, indirect=True, scope="package")


@pytest.fixture(scope="package")
def fault_store(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="package")
def fault_stack(tmp_path_factory: pytest.TempPathFactory, fault_store: str) -> Iterator[LocalStack]:
    environ = {k: v for k, v in os.environ.items() if k not in PROVIDER_VARIABLES}
    environ.update(SIMULATOR_ENV)
    environ.update(RECONCILER_ENV)
    environ["API_KEYS"] = ",".join(f"{key}:{user}" for user, key in USERS.items())
    with running_stack(tmp_path_factory, "faults", fault_store, environ) as local:
        yield local


@pytest.fixture(scope="package")
async def workers(fault_stack: LocalStack) -> AsyncIterator[Workers]:
    running = Workers({**fault_stack.service_env(), **WORKER_ENV}, fault_stack.state_dir / "workers")
    await running.start()
    yield running
    running.kill()


@pytest.fixture(scope="package")
async def platform(fault_stack: LocalStack) -> AsyncIterator[Platform]:
    env = fault_stack.service_env()
    # The store as main opens it (with its password, on PostgreSQL).
    store = TaskStore.from_url(database_url(Env(env), MainSettings.database_url))
    apis = {user: client(fault_stack, user) for user in USERS}
    logs = {user: EventLog(api) for user, api in apis.items()}
    for log in logs.values():
        await log.start()
    yield Platform(
        stack=fault_stack,
        temporal=await connect(TemporalSettings(address=fault_stack.temporal_address)),
        objects=ObjectStore(StorageSettings.from_env(Env(env))),
        store=store,
        apis=apis,
        logs=logs,
    )
    for log in logs.values():
        await log.close()
    for api in apis.values():
        await api.close()
    await store.close()


@pytest.fixture
async def sim(fault_stack: LocalStack) -> AsyncIterator[Simulator]:
    simulator = Simulator(fault_stack.simulator_url)
    yield simulator
    await simulator.restore()
    await simulator.close()


@pytest.fixture
async def scenario(fault_stack: LocalStack, workers: Workers, platform: Platform) -> AsyncIterator[Platform]:
    """A scenario starts with every part of the stack and every worker running, and leaves them so even when it
    fails half-way."""
    await asyncio.to_thread(fault_stack.start, "middleware", "services")
    await workers.start()
    platform.began = time.monotonic()
    yield platform
    await asyncio.to_thread(fault_stack.start, "middleware", "services")
    await workers.start()

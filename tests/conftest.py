from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from temporalio.client import Client
from xdist.scheduler import LoadScopeScheduling

from deploy.local import LocalStack
from deploy.ports import Ports, free_port
from services.shared.settings import StorageSettings, TemporalSettings
from services.shared.storage import ObjectStore
from services.shared.temporal import connect
from tests.docker_fixtures import docker_images  # noqa: F401 - a fixture, shared by the -m docker tests
from tests.stack import STORES, USERS, Api, Launcher, running_stack, state_base
from tests.webhook_receiver import webhook_env

# The tests that use the Docker engine: with ``-n`` (pytest-xdist) they run on one worker, one after another, as they
# share the engine and its images; every other test is a unit of its own, spread over the workers.
DOCKER_TESTS = ("tests/containers/", "offline_docker/tests/")


class DockerTestsTogether(LoadScopeScheduling):  # type: ignore[misc] # xdist ships no types
    # By node id: xdist's own ``loadgroup`` marks a group by changing the item's node id, which pytest 9 no longer
    # lets a plugin do, so its groups silently fall apart.
    def _split_scope(self, nodeid: str) -> str:
        return "docker" if nodeid.startswith(DOCKER_TESTS) else nodeid


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> DockerTestsTogether:
    return DockerTestsTogether(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test marked ``docker`` must live where the scheduler keeps such tests together."""
    strays = [i.nodeid for i in items if i.get_closest_marker("docker") and not i.nodeid.startswith(DOCKER_TESTS)]
    if strays:
        raise pytest.UsageError(f"tests marked docker outside {', '.join(DOCKER_TESTS)}: {', '.join(strays)}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests that use the session's stack run on SQLite; those marked ``every_store`` once on each store."""
    if "main_store" in metafunc.fixturenames:
        every = metafunc.definition.get_closest_marker("every_store") is not None
        metafunc.parametrize("main_store", STORES if every else STORES[:1], indirect=True, scope="session")


@pytest.fixture(scope="session")
def main_store(request: pytest.FixtureRequest) -> str:
    """The store main runs on: ``sqlite`` or ``postgres``."""
    name: str = request.param
    return name


@pytest.fixture(scope="session")
def webhook_port() -> int:
    """The port of the tests' webhook receiver (tests/e2e/test_webhooks.py): the one address besides public https
    ones the session's main delivers webhooks to."""
    return free_port()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, main_store: str, webhook_port: int) -> Iterator[LocalStack]:
    """Temporal, NATS, the S3 server, the simulator, main and communication on free ports, with main on ``main_store``
    (PostgreSQL started for it). Workers are started by the tests themselves, so they can stop, kill and restart
    them."""
    environ = {
        **os.environ,
        "API_KEYS": ",".join(f"{key}:{user}" for user, key in USERS.items()),
        **webhook_env(webhook_port),
    }
    with running_stack(tmp_path_factory, "stack", main_store, environ) as local:
        yield local


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A NATS server alone, started through the deploy tool as every stack starts it."""
    server = LocalStack(
        tmp_path_factory.mktemp("nats") / "state", Ports.free(), components=["nats"], middleware=["nats"]
    )
    with server:
        yield server


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A PostgreSQL server alone, started through the deploy tool as every stack starts it."""
    with state_base(tmp_path_factory, "postgres", "postgres") as base:
        server = LocalStack(base / "state", Ports.free(), components=["postgres"], middleware=["postgres"])
        with server:
            yield server


@pytest.fixture(scope="session")
def worker_env(stack: LocalStack) -> dict[str, str]:
    return stack.service_env()


@pytest.fixture(scope="session")
async def echo_worker(stack: LocalStack, worker_env: dict[str, str]) -> AsyncIterator[Launcher]:
    launcher = Launcher(worker_env, ["echo"], stack.state_dir / "echo-worker.log")
    await launcher.wait_serving()
    yield launcher
    launcher.kill()


@pytest.fixture(scope="session")
async def temporal(stack: LocalStack) -> Client:
    return await connect(TemporalSettings(address=stack.temporal_address))


@pytest.fixture(scope="session")
def objects(worker_env: dict[str, str]) -> ObjectStore:
    from services.shared.settings import Env

    return ObjectStore(StorageSettings.from_env(Env(worker_env)))


@pytest.fixture
async def alice(stack: LocalStack) -> AsyncIterator[Api]:
    api = Api(stack, "alice")
    yield api
    await api.close()


@pytest.fixture
async def bob(stack: LocalStack) -> AsyncIterator[Api]:
    api = Api(stack, "bob")
    yield api
    await api.close()

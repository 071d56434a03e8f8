"""A PostgreSQL server for the store's tests, started through the deploy tool as every stack starts it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deploy.local import LocalStack
from deploy.ports import Ports
from tests.stack import state_base


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with state_base(tmp_path_factory, "postgres", "postgres") as base:
        server = LocalStack(base / "state", Ports.free(), components=["postgres"], middleware=["postgres"])
        with server:
            yield server

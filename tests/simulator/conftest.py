from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from services.simulator.app import create_app
from services.simulator.config import RuntimeConfig, SimulatorSettings

from .helpers import FakeClock


@pytest.fixture
def settings() -> SimulatorSettings:
    """Fast timings so tests wait fractions of a second, never the real defaults."""
    return SimulatorSettings(
        runtime=RuntimeConfig(
            ark_queue_seconds=0.2,
            ark_run_seconds=0.3,
            hang_seconds=0.3,
            gemini_retry_delay_seconds=0.1,
            callback_attempts=3,
            callback_retry_seconds=0.05,
        )
    )


@pytest.fixture
async def client(settings: SimulatorSettings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def clocked(settings: SimulatorSettings, clock: FakeClock) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """A simulator whose Ark timeline follows ``clock`` instead of the wall clock."""
    async with AsyncTestClient(create_app(settings, clock=clock)) as test_client:
        yield test_client

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.temporal_env import time_skipping


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """One time-skipping Temporal test server per test module."""
    environment = await time_skipping()
    yield environment
    await environment.shutdown()

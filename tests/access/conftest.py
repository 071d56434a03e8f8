"""Access tests run against the session's local stack (``stack``) without changing it; the provider integrations'
workers, aimed at the simulator, serve this package."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from deploy.local import LocalStack
from tests.stack import Launcher

IMAGE = "nanobanana2-image"
VIDEO = "fangzhouVideoGeneration"


@pytest.fixture(scope="package")
async def provider_worker(stack: LocalStack, worker_env: dict[str, str]) -> AsyncIterator[Launcher]:
    env = {k: v for k, v in worker_env.items() if k not in ("GEMINI_API_KEY", "ARK_API_KEY")}
    env.update(
        {
            "PROVIDER_SIMULATOR_URL": stack.simulator_url,
            "ARK_POLL_INITIAL_SECONDS": "0.5",
            "ARK_POLL_BACKOFF": "1.5",
            "ARK_POLL_MAX_SECONDS": "2",
        }
    )
    launcher = Launcher(env, [IMAGE, VIDEO], stack.state_dir / "access-provider-worker.log")
    await launcher.wait_serving(60)
    yield launcher
    launcher.kill()

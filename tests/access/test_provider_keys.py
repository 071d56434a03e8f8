"""No silent simulator: a provider worker without its key does not start, whatever base URL it is given (even in
development mode); only the simulator URL, set explicitly, lets it run against the simulator."""

from __future__ import annotations

import asyncio

import pytest

from deploy.local import LocalStack
from tests.stack import Launcher

from .conftest import IMAGE, VIDEO

pytestmark = pytest.mark.integration

PROVIDER_VARIABLES = ("GEMINI_API_KEY", "GEMINI_BASE_URL", "ARK_API_KEY", "ARK_BASE_URL", "PROVIDER_SIMULATOR_URL")


def keyless(worker_env: dict[str, str], **settings: str) -> dict[str, str]:
    return {**{k: v for k, v in worker_env.items() if k not in PROVIDER_VARIABLES}, **settings}


async def exit_code(launcher: Launcher, timeout: float = 60) -> int:
    return await asyncio.to_thread(launcher.proc.wait, timeout)


async def test_a_worker_without_its_key_refuses_to_start_naming_the_variable(
    stack: LocalStack, worker_env: dict[str, str]
) -> None:
    cases = {
        "nothing set": (VIDEO, keyless(worker_env), "ARK_API_KEY"),
        "a base URL that is not Ark's": (VIDEO, keyless(worker_env, ARK_BASE_URL=stack.simulator_url), "ARK_API_KEY"),
        "Gemini pointed at the simulator": (
            IMAGE,
            keyless(worker_env, GEMINI_BASE_URL=stack.simulator_url),
            "GEMINI_API_KEY",
        ),
        "an empty key": (IMAGE, keyless(worker_env, GEMINI_API_KEY=""), "GEMINI_API_KEY"),
    }
    launchers = {
        what: Launcher(env, [name], stack.state_dir / f"keyless-{i}.log")
        for i, (what, (name, env, _)) in enumerate(cases.items())
    }
    try:
        codes = dict(zip(launchers, await asyncio.gather(*(exit_code(ln) for ln in launchers.values())), strict=True))
    finally:
        for launcher in launchers.values():
            launcher.kill()
    for what, (_, _, variable) in cases.items():
        output = launchers[what].output()
        assert codes[what] == 2, (what, output)
        assert f"environment variable {variable} (or {variable}_FILE) is required" in output, (what, output)
        assert "PROVIDER_SIMULATOR_URL" in output, what
        assert "serving " not in output, what


async def test_with_the_simulator_url_set_explicitly_it_serves(stack: LocalStack, worker_env: dict[str, str]) -> None:
    env = keyless(worker_env, PROVIDER_SIMULATOR_URL=stack.simulator_url)
    launcher = Launcher(env, [IMAGE, VIDEO], stack.state_dir / "simulated-providers.log")
    try:
        await launcher.wait_serving(60)
        output = launcher.output()
        for name, variable in ((IMAGE, "GEMINI_API_KEY"), (VIDEO, "ARK_API_KEY")):
            assert f"integration {name}: no {variable}, so the provider simulator at {stack.simulator_url}" in output
    finally:
        assert launcher.terminate(30) == 0

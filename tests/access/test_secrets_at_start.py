"""Outside development mode every service refuses to start on a published development secret (today's and earlier
defaults), an empty one or one shorter than 32 bytes: it exits non-zero naming the variable, never the value. In
development mode (the tests and the local stack) the same values are accepted."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Iterator

import pytest

from tests.stack import REPO

pytestmark = pytest.mark.integration

STRONG = {
    "S3_ACCESS_KEY": "platform-0123456789",
    "S3_SECRET_KEY": "s3-secret-0123456789abcdef0123456789",
    "API_KEYS": "user-key-0123456789abcdef0123456789:someone",
    "REALTIME_SECRET": "realtime-secret-0123456789abcdef0123",
    "REPORT_TOKEN": "report-token-0123456789abcdef012345",
    "NATS_MAIN_PASSWORD": "nats-main-0123456789abcdef0123456789",
    "NATS_COMMUNICATION_PASSWORD": "nats-communication-0123456789abcdef",
    "CALLBACK_KEY": "callback-key-0123456789abcdef012345",
    "SIMULATOR_GEMINI_API_KEY": "gemini-key-0123456789abcdef0123456",
    "SIMULATOR_ARK_API_KEY": "ark-key-0123456789abcdef0123456789",
}
SHORT = "too-short-0123456789"

# (service module and its arguments, variable, bad value): every secret each service reads, and each kind of bad
# value (published, empty, short) for each service.
CASES = [
    (("services.main",), "S3_ACCESS_KEY", "minioadmin"),
    (("services.main",), "S3_SECRET_KEY", "minioadmin"),
    (("services.main",), "API_KEYS", "dev-api-key:dev"),
    (("services.main",), "REALTIME_SECRET", ""),
    (("services.main",), "REPORT_TOKEN", "dev-internal-token"),
    (("services.main",), "REPORT_TOKEN_PREVIOUS", SHORT),
    (("services.main",), "NATS_MAIN_PASSWORD", SHORT),
    (("services.main",), "POSTGRES_PASSWORD", SHORT),
    (("services.main",), "CALLBACK_KEY", ""),
    (("services.main",), "CALLBACK_KEY_PREVIOUS", "dev-internal-token"),
    (("services.communication",), "REALTIME_SECRET", "dev-realtime-secret"),
    (("services.communication",), "NATS_COMMUNICATION_PASSWORD", ""),
    (("services.async_task", "echo"), "REPORT_TOKEN", ""),
    (("services.async_task", "echo"), "S3_SECRET_KEY", SHORT),
    (("services.async_task", "echo"), "S3_ACCESS_KEY", "minioadmin"),
    (("services.simulator",), "SIMULATOR_GEMINI_API_KEY", "sim-gemini-key"),
    (("services.simulator",), "SIMULATOR_ARK_API_KEY", SHORT),
    # Unset, the simulator's keys default to the published ones.
    (("services.simulator",), "SIMULATOR_ARK_API_KEY", None),
]


# A few at a time: each imports the whole service before it reads its settings, on a machine with two cores.
STARTING = asyncio.Semaphore(4)


async def start(argv: tuple[str, ...], environ: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    async with STARTING:
        return await _start(argv, environ, timeout)


async def _start(argv: tuple[str, ...], environ: dict[str, str], timeout: float) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        *argv,
        cwd=REPO,
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"{argv} kept running") from None
    return process.returncode or 0, output.decode(errors="replace")


@pytest.fixture(scope="module")
def busy_port() -> Iterator[int]:
    """A port this test holds: a service that gets past its settings fails to listen there, and says so."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


def environment(busy_port: int, variable: str, value: str | None, development: bool = False) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k != "DEVELOPMENT_MODE" and not k.startswith(("S3_", "SIMULATOR_"))}
    ports = ("MAIN_PORT", "MAIN_INTERNAL_PORT", "COMMUNICATION_PORT", "COMMUNICATION_INTERNAL_PORT", "SIMULATOR_PORT")
    unreachable = {
        **{name: str(busy_port) for name in ports},
        "MAIN_INTERNAL_PORT": str(busy_port + 1),
        "COMMUNICATION_INTERNAL_PORT": str(busy_port + 1),
        "TEMPORAL_ADDRESS": f"127.0.0.1:{busy_port}",
        "MAIN_INTERNAL_URL": f"http://127.0.0.1:{busy_port}",
    }
    env = {**base, **STRONG, **unreachable}
    if value is None:
        env.pop(variable, None)
    else:
        env[variable] = value
    if development:
        env["DEVELOPMENT_MODE"] = "true"
    return env


async def test_each_service_refuses_a_development_empty_or_short_secret(busy_port: int) -> None:
    results = await asyncio.gather(
        *(start(argv, environment(busy_port, variable, value)) for argv, variable, value in CASES)
    )
    for (argv, variable, value), (code, output) in zip(CASES, results, strict=True):
        assert code != 0, (argv, variable, output)
        assert variable in output, (argv, variable, output)
        if value:
            assert value not in output.replace(f"{variable}", ""), (argv, variable, output)


async def test_development_mode_accepts_them(busy_port: int) -> None:
    cases = [
        (("services.main",), "REPORT_TOKEN", "dev-internal-token"),
        (("services.communication",), "NATS_COMMUNICATION_PASSWORD", SHORT),
        (("services.simulator",), "SIMULATOR_GEMINI_API_KEY", None),
    ]
    results = await asyncio.gather(
        *(start(argv, environment(busy_port, variable, value, development=True)) for argv, variable, value in cases)
    )
    for (argv, _, _), (code, output) in zip(cases, results, strict=True):
        # Past its settings, it stops where this test holds the port.
        assert code != 0 and f"{busy_port}" in output, (argv, output)
        assert "published development value" not in output and "shorter than" not in output, (argv, output)

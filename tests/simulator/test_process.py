"""The simulator as a real process: ``python -m services.simulator`` on a free port, driven over TCP."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from deploy.ports import free_port
from services.simulator.media import gemini_image_size, png_size
from services.simulator.mp4 import iter_boxes

from .helpers import ARK_HEADERS, ARK_TASKS, GEMINI_HEADERS, GEMINI_PATH, ark_body, gemini_body, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def log_text(log: Path) -> str:
    # A small file read once, when the test is ending anyway.
    return log.read_text(errors="replace")


async def wait_healthy(process: asyncio.subprocess.Process, base_url: str, log: Path, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=2.0) as probe:
        while True:
            if process.returncode is not None:
                raise AssertionError(f"simulator exited with {process.returncode}: {log_text(log)}")
            try:
                if (await probe.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"simulator not healthy within {within} s: {log_text(log)}")
            await asyncio.sleep(0.05)


@asynccontextmanager
async def serving(environ: dict[str, str], log: Path, cwd: Path = REPO_ROOT) -> AsyncIterator[str]:
    """``python -m services.simulator`` (from ``cwd``) on a free port until the block ends, then stopped with
    SIGTERM: it must stop cleanly."""
    port = free_port()
    # The simulator accepts its published keys, as on a development machine.
    env = {
        **os.environ,
        "DEVELOPMENT_MODE": "true",
        **environ,
        "SIMULATOR_HOST": "127.0.0.1",
        "SIMULATOR_PORT": str(port),
    }
    base_url = f"http://127.0.0.1:{port}"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.simulator", cwd=cwd, env=env, stdout=sink, stderr=sink
        )
    try:
        await wait_healthy(process, base_url, log)
        yield base_url
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()
                raise
    # uvicorn re-raises SIGTERM after a graceful shutdown, so the status is the signal's.
    assert process.returncode in (0, -signal.SIGTERM), log_text(log)
    assert "Application shutdown complete" in log_text(log)


@pytest.fixture
async def simulator_url(tmp_path: Path) -> AsyncIterator[str]:
    env = {
        "SIMULATOR_ARK_QUEUE_SECONDS": "0.1",
        "SIMULATOR_ARK_RUN_SECONDS": "0.2",
        "SIMULATOR_HANG_SECONDS": "60",
        "SIMULATOR_FAULTS": '[{"provider": "gemini", "kind": "503", "match": "first"}]',
        "SIMULATOR_LOG_LEVEL": "info",
    }
    async with serving(env, tmp_path / "simulator.log") as base_url:
        yield base_url


async def test_served_over_tcp(simulator_url: str) -> None:
    async with httpx.AsyncClient(base_url=simulator_url, trust_env=False, timeout=10.0) as client:
        # The fault queued from SIMULATOR_FAULTS hits the first matching prompt only.
        assert (
            await client.post(GEMINI_PATH, headers=GEMINI_HEADERS, json=gemini_body("the first"))
        ).status_code == 503
        image = await client.post(GEMINI_PATH, headers=GEMINI_HEADERS, json=gemini_body("the first", "3:4", "2K"))
        assert image.status_code == 200
        data = next(p for p in image.json()["candidates"][0]["content"]["parts"] if "inlineData" in p)
        assert png_size(base64.b64decode(data["inlineData"]["data"])) == gemini_image_size("3:4", "2K")

        created = await client.post(ARK_TASKS, headers=ARK_HEADERS, json=ark_body("a tram at night --dur 2"))
        assert created.status_code == 200
        task_url = f"{ARK_TASKS}/{created.json()['id']}"

        async def succeeded() -> bool:
            return bool((await client.get(task_url, headers=ARK_HEADERS)).json()["status"] == "succeeded")

        await wait_for(succeeded, within=10)
        video_url = (await client.get(task_url, headers=ARK_HEADERS)).json()["content"]["video_url"]
        assert video_url.startswith(simulator_url + "/_media/")  # points back at the process itself
        video = await client.get(video_url)
        assert video.status_code == 200
        assert [kind for kind, _, _ in iter_boxes(video.content)] == [b"ftyp", b"moov", b"mdat"]


async def test_hang_ends_when_the_client_gives_up(simulator_url: str) -> None:
    async with httpx.AsyncClient(base_url=simulator_url, trust_env=False) as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await client.post(GEMINI_PATH, headers=GEMINI_HEADERS, json=gemini_body("stuck [sim:hang]"), timeout=0.5)
        assert time.monotonic() - started < 5

        # The server let go of the request when the client left (recorded as 499) and still answers.
        async def released() -> bool:
            stats = (await client.get("/_sim/stats", timeout=5)).json()
            return bool(stats["responses"].get("gemini", {}).get("generate_content") == {"499": 1})

        await wait_for(released, within=10)

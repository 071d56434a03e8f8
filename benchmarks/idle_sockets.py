"""``python -m benchmarks.idle_sockets URL TOKEN COUNT``: open COUNT websockets to communication, print
``open N`` once each has received its ``connected`` message, then hold them (answering pings) until SIGTERM or
until stdin closes. Several of these processes together hold the benchmark's idle sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys

import uvloop
from websockets.asyncio.client import ClientConnection, connect

from .harness import raise_fd_limit

HANDSHAKES_IN_FLIGHT = 50


async def hold(url: str, token: str, count: int) -> None:
    raise_fd_limit(count + 256)
    gate = asyncio.Semaphore(HANDSHAKES_IN_FLIGHT)
    sockets: list[ClientConnection] = []
    failures: list[str] = []

    async def open_one() -> None:
        async with gate:
            try:
                ws = await connect(f"{url}?token={token}", open_timeout=60, max_queue=4)
                await asyncio.wait_for(ws.recv(), 60)
                sockets.append(ws)
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")

    await asyncio.gather(*(open_one() for _ in range(count)))
    line = f"open {len(sockets)}"
    if failures:
        line += f" failed {len(failures)} first: {failures[0]}"
    print(line, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    stdin = sys.stdin.fileno()
    loop.add_reader(stdin, lambda: None if os.read(stdin, 1024) else stop.set())
    await stop.wait()
    for ws in sockets:
        with contextlib.suppress(Exception):
            ws.transport.abort()


if __name__ == "__main__":
    uvloop.run(hold(sys.argv[1], sys.argv[2], int(sys.argv[3])))

"""Test helpers: the provider simulator served in process on a free port (recording what it receives) and a
strict PNG check."""

from __future__ import annotations

import asyncio
import struct
import time
import zlib
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
import uvicorn
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from services.simulator.app import create_app
from services.simulator.config import SimulatorSettings


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


class Recording:
    """ASGI middleware that keeps every provider request (not the /_sim control calls) as it arrived."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self.requests: list[Received] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["path"].startswith(("/_sim", "/healthz")):
            await self._app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message["body"])
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        self.requests.append(
            Received(
                method=scope["method"],
                path=scope["path"],
                query=scope["query_string"].decode(),
                headers={k.decode().lower(): v.decode() for k, v in scope["headers"]},
                body=body,
            )
        )
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self._app(scope, replay, send)


class SimulatorServer:
    """``services.simulator`` under uvicorn on 127.0.0.1 and a free port, in this event loop."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.recording = Recording(create_app(settings))
        self._server = uvicorn.Server(
            uvicorn.Config(self.recording, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        )
        self._task: asyncio.Task[None] | None = None
        self.url = ""
        self.control = httpx.AsyncClient(timeout=10)

    async def __aenter__(self) -> SimulatorServer:
        self._task = asyncio.create_task(self._server.serve())
        deadline = time.monotonic() + 30
        while not self._server.started:
            if self._task.done():
                raise AssertionError(f"simulator did not start: {self._task.exception()!r}")
            if time.monotonic() > deadline:
                raise AssertionError("simulator did not start within 30 s")
            await asyncio.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.control.base_url = httpx.URL(self.url)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.control.aclose()
        self._server.should_exit = True
        if self._task is not None:
            await self._task

    async def reset(self) -> None:
        response = await self.control.post("/_sim/reset")
        assert response.status_code == 200, response.text
        self.recording.requests.clear()

    async def stats(self) -> dict[str, Any]:
        response = await self.control.get("/_sim/stats")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def answered(self, status: str) -> int:
        """How many generateContent requests ended with ``status`` (``"499"``: the client went away first)."""
        counts: dict[str, int] = (await self.stats())["responses"].get("gemini", {}).get("generate_content", {})
        return counts.get(status, 0)


def png_dimensions_checked(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG after checking its structure: signature, chunk CRCs, IHDR first, IEND last,
    and image data that inflates to exactly the rows the header promises (8-bit RGB or RGBA, no interlace)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    offset, chunks, idat = 8, [], b""
    width = height = channels = 0
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        payload = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + payload) == crc, f"bad CRC in {kind!r}"
        chunks.append(kind)
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", payload)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += payload
        offset += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND", chunks
    assert len(zlib.decompress(idat)) == height * (1 + channels * width), "image data does not match the header"
    return width, height

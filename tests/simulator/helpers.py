"""Helpers for simulator tests: request builders, a fake clock, a callback receiver, condition waits."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

GEMINI_MODEL = "gemini-3.1-flash-image-preview"
GEMINI_PATH = f"/v1beta/models/{GEMINI_MODEL}:generateContent"
GEMINI_HEADERS = {"x-goog-api-key": "sim-gemini-key"}
ARK_TASKS = "/api/v3/contents/generations/tasks"
ARK_HEADERS = {"Authorization": "Bearer sim-ark-key"}
ARK_MODEL = "doubao-seedance-1-0-pro-250528"


def gemini_body(prompt: str, aspect_ratio: str | None = "16:9", image_size: str | None = "1K") -> dict[str, Any]:
    image_config: dict[str, str] = {}
    if aspect_ratio is not None:
        image_config["aspectRatio"] = aspect_ratio
    if image_size is not None:
        image_config["imageSize"] = image_size
    return {
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
        "generationConfig": {"responseModalities": ["TEXT", "IMAGE"], "imageConfig": image_config},
    }


def ark_body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": ARK_MODEL, "content": [{"type": "text", "text": text}], **extra}


class FakeClock:
    """Wall-clock stand-in for deterministic Ark timelines (only for tests without callbacks)."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def wait_for(condition: Callable[[], Awaitable[bool]], within: float = 10.0, interval: float = 0.02) -> None:
    """Re-check ``condition`` until it holds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(interval)


class CallbackReceiver:
    """A minimal HTTP server on a free port that records JSON POST bodies; can fail the first few."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.hits = 0
        self.url = ""
        self._received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> CallbackReceiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/ark-callback"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def next(self, within: float = 10.0) -> dict[str, Any]:
        return await asyncio.wait_for(self._received.get(), within)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            body = await reader.readexactly(length)
            self.hits += 1
            if self.hits <= self.fail_first:
                status = b"500 Internal Server Error"
            else:
                status = b"200 OK"
                await self._received.put(json.loads(body))
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        finally:
            writer.close()


async def ark_status(client: httpx.AsyncClient, task_id: str) -> str:
    response = await client.get(f"{ARK_TASKS}/{task_id}", headers=ARK_HEADERS)
    assert response.status_code == 200, response.text
    return str(response.json()["status"])

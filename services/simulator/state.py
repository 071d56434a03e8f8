"""What both provider stand-ins share: run-time config, faults, counters, and the request as they see it."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
from litestar import Response

from .config import RuntimeConfig, SimulatorSettings
from .faults import Fault, FaultBook, hold_open
from .stats import Stats

JSON_MEDIA_TYPE = "application/json"
# nginx's status for "the client closed the connection before the answer"; recorded, never received.
CLIENT_CLOSED_REQUEST = 499


@dataclass(frozen=True)
class Incoming:
    """The parts of an HTTP request a provider stand-in looks at (kept free of the web framework)."""

    headers: Mapping[str, str]
    query: Mapping[str, list[str]]
    body: bytes
    # Where the client reached us, e.g. http://127.0.0.1:8002; used for URLs we hand back.
    base_url: str
    wait_disconnect: Callable[[], Awaitable[None]]


@dataclass
class Shared:
    settings: SimulatorSettings
    config: RuntimeConfig
    faults: FaultBook = field(default_factory=FaultBook)
    stats: Stats = field(default_factory=Stats)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    clock: Callable[[], float] = time.time

    async def latency(self, provider: str) -> None:
        delay = self.config.latency_for(provider)
        if delay > 0:
            await asyncio.sleep(delay)

    async def hold(self, incoming: Incoming) -> bool:
        """A hang fault. True if the client gave up first."""
        return await hold_open(incoming.wait_disconnect, self.config.hang_seconds, self.stopping)


class ProviderError(Exception):
    """An error answer in the provider's own shape; raised while handling, turned into the response."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body

    def response(self) -> Response[bytes]:
        return json_response(self.body, self.status)


class ErrorShapes(Protocol):
    """How one provider words the errors that request faults produce."""

    def rate_limited(self, code: str | None) -> ProviderError: ...

    def server_error(self, status: int, code: str | None) -> ProviderError: ...

    def timed_out(self) -> ProviderError: ...

    malformed_body: bytes


def json_response(body: Mapping[str, Any] | list[Any], status: int = 200) -> Response[bytes]:
    return Response(content=msgspec.json.encode(body), status_code=status, media_type=JSON_MEDIA_TYPE)


async def request_fault_response(
    shared: Shared, fault: Fault, incoming: Incoming, shapes: ErrorShapes
) -> Response[bytes]:
    if fault.kind == "429":
        return shapes.rate_limited(fault.error_code).response()
    if fault.kind in ("500", "503"):
        return shapes.server_error(int(fault.kind), fault.error_code).response()
    if fault.kind == "malformed_json":
        return Response(content=shapes.malformed_body, status_code=200, media_type=JSON_MEDIA_TYPE)
    if fault.kind == "hang":
        if await shared.hold(incoming):
            # Nobody will read this; the status only tells /_sim/stats that the client gave up first.
            return json_response({}, CLIENT_CLOSED_REQUEST)
        return shapes.timed_out().response()
    raise ValueError(f"not a request fault: {fault.kind}")


def request_id() -> str:
    return secrets.token_hex(16)

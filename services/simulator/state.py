"""What every stand-in shares: run-time config, faults, counters, and the request as they see it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from litestar import Request, Response

from .errors import JSON_MEDIA_TYPE, ErrorShapes, json_response
from .faults import Fault, FaultBook, hold_open
from .stats import Stats

if TYPE_CHECKING:
    from .config import RuntimeConfig, SimulatorSettings

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
    faults: FaultBook
    stats: Stats = field(default_factory=Stats)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    clock: Callable[[], float] = time.time

    # Per stand-in: (tokens, when last counted) of its quota's bucket.
    quota_buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def over_quota(self, provider: str) -> float | None:
        """None when a request fits the stand-in's quota (a token bucket: ``requests_per_second``, holding at most
        ``burst``), and takes its token; else the seconds until one is free."""
        quota = self.config.quota_for(provider)
        if quota is None:
            return None
        rate, burst = quota
        now = self.clock()
        tokens, then = self.quota_buckets.get(provider, (float(burst), now))
        tokens = min(float(burst), tokens + (now - then) * rate)
        if tokens < 1:
            self.quota_buckets[provider] = (tokens, now)
            return (1 - tokens) / rate
        self.quota_buckets[provider] = (tokens - 1, now)
        return None

    async def latency(self, provider: str) -> None:
        delay = self.config.latency_for(provider)
        if delay > 0:
            await asyncio.sleep(delay)

    async def hold(self, incoming: Incoming) -> bool:
        """A hang fault. True if the client gave up first."""
        return await hold_open(incoming.wait_disconnect, self.config.hang_seconds, self.stopping)

    async def incoming(self, request: Request[Any, Any, Any]) -> Incoming:
        body = await request.body()

        async def wait_disconnect() -> None:
            # Once the body is read, the next ASGI message for this request is the disconnect.
            while (await request.receive())["type"] != "http.disconnect":
                pass

        return Incoming(
            headers=request.headers,
            query={key: request.query_params.getall(key) for key in request.query_params},
            body=body,
            base_url=self.settings.public_url or str(request.base_url).rstrip("/"),
            wait_disconnect=wait_disconnect,
        )


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

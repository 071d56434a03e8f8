"""main's event publisher against a real communication process: order, batching under load, bounded retries."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from services.main.publisher import EventPublisher

from .conftest import INTERNAL_TOKEN, Service

pytestmark = pytest.mark.integration


class CountingTransport(httpx.AsyncHTTPTransport):
    """A real HTTP transport that counts the requests it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return await super().handle_async_request(request)


async def test_a_burst_arrives_in_order_in_fewer_requests_than_events(service: Service) -> None:
    transport = CountingTransport()
    async with httpx.AsyncClient(transport=transport, timeout=5) as http:
        publisher = EventPublisher(http, service.http_url, INTERNAL_TOKEN, attempts=3, batch_size=50)
        publisher.start()
        async with connect(service.ws_url(service.token("kim"))) as ws:
            json.loads(await ws.recv())
            for n in range(500):
                publisher.publish("user:kim", {"n": n})
            received: list[Any] = []
            async with asyncio.timeout(10):
                while len(received) < 500:
                    received.append(json.loads(await ws.recv())["n"])
        await publisher.stop()
    assert received == list(range(500))
    assert publisher.published == 500
    assert publisher.dropped == 0
    # The burst was queued before the sender ran, so it went out in batches of at most 50.
    assert 10 <= transport.requests < 500


async def test_a_single_event_goes_out_without_waiting_for_more(service: Service) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        publisher = EventPublisher(http, service.http_url, INTERNAL_TOKEN, attempts=3)
        publisher.start()
        async with connect(service.ws_url(service.token("lee"))) as ws:
            json.loads(await ws.recv())
            publisher.publish("user:lee", {"only": True})
            assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"only": True}
        await publisher.stop()


async def test_an_unreachable_communication_drops_the_batch_after_bounded_attempts() -> None:
    async with httpx.AsyncClient(timeout=1) as http:
        # A closed port: every attempt fails to connect.
        publisher = EventPublisher(http, "http://127.0.0.1:9", INTERNAL_TOKEN, attempts=2)
        publisher.start()
        publisher.publish("user:nobody", {"n": 1})
        publisher.publish("user:nobody", {"n": 2})
        await publisher.stop(drain_seconds=5)
    assert publisher.published == 0
    assert publisher.dropped == 2


async def test_a_wrong_token_is_not_retried(service: Service) -> None:
    transport = CountingTransport()
    async with httpx.AsyncClient(transport=transport, timeout=5) as http:
        publisher = EventPublisher(http, service.http_url, "wrong-token", attempts=3)
        publisher.start()
        publisher.publish("user:nobody", {"n": 1})
        await publisher.stop()
    assert publisher.dropped == 1
    assert transport.requests == 1

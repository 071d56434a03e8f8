"""main's event publisher and its connection, against a real communication process: order, batching under
load, bounded retries, and connections that communication closed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from services.main.publisher import EventPublisher
from services.shared.http_link import HttpLink, LinkError

from .conftest import PUBLISH_TOKEN, Service, run_service

pytestmark = pytest.mark.integration


class CountingLink(HttpLink):
    """The real connection, counting the requests it sends."""

    def __init__(self, base_url: str, token: str = PUBLISH_TOKEN) -> None:
        super().__init__(base_url, token, timeout=5)
        self.requests = 0

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.requests += 1
        return await super().post(path, body)


async def test_a_burst_arrives_in_order_in_fewer_requests_than_events(service: Service) -> None:
    link = CountingLink(service.internal_url)
    publisher = EventPublisher(link, attempts=3, interval_seconds=0.005, batch_size=50)
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
    assert (publisher.published, publisher.dropped) == (500, 0)
    # The burst was queued before the sender ran, so it went out in batches of at most 50.
    assert 10 <= link.requests < 500


async def test_a_single_event_goes_out_without_waiting_for_more(service: Service) -> None:
    publisher = EventPublisher(HttpLink(service.internal_url, PUBLISH_TOKEN, 5), attempts=3)
    publisher.start()
    async with connect(service.ws_url(service.token("lee"))) as ws:
        json.loads(await ws.recv())
        publisher.publish("user:lee", {"only": True})
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"only": True}
    await publisher.stop()


async def test_an_unreachable_communication_drops_the_batch_after_bounded_attempts() -> None:
    # A closed port: every attempt fails to connect.
    link = CountingLink("http://127.0.0.1:9")
    publisher = EventPublisher(link, attempts=2)
    publisher.start()
    publisher.publish("user:nobody", {"n": 1})
    publisher.publish("user:nobody", {"n": 2})
    await publisher.stop(drain_seconds=5)
    assert (publisher.published, publisher.dropped) == (0, 2)
    assert link.requests == 2


async def test_a_wrong_token_is_not_retried(service: Service) -> None:
    link = CountingLink(service.internal_url, token="wrong-token")
    publisher = EventPublisher(link, attempts=3)
    publisher.start()
    publisher.publish("user:nobody", {"n": 1})
    await publisher.stop()
    assert publisher.dropped == 1
    assert link.requests == 1


async def test_the_link_keeps_one_connection_for_many_requests(service: Service) -> None:
    link = HttpLink(service.internal_url, PUBLISH_TOKEN, timeout=5)
    body = json.dumps({"events": [{"channel": "user:nobody", "event": {}}]}).encode()
    answers = [await link.post("/internal/publish/batch", body) for _ in range(20)]
    await link.close()
    assert answers == [(200, b'{"delivered":0}')] * 20
    assert link.connections_opened == 1


async def test_the_link_reconnects_after_communication_restarts(tmp_path: Path) -> None:
    body = json.dumps({"events": [{"channel": "user:nobody", "event": {}}]}).encode()
    async with run_service(tmp_path) as first:
        link = HttpLink(first.internal_url, PUBLISH_TOKEN, timeout=5)
        assert (await link.post("/internal/publish/batch", body))[0] == 200
        port, internal_port = first.port, first.internal_port
    # The kept-alive connection is dead now; with nothing listening, the request fails as a LinkError.
    with pytest.raises(LinkError):
        await link.post("/internal/publish/batch", body)
    async with run_service(tmp_path, port=port, internal_port=internal_port):
        assert (await link.post("/internal/publish/batch", body))[0] == 200
    await link.close()
    assert link.connections_opened == 2


def test_the_link_refuses_a_url_that_is_not_http() -> None:
    with pytest.raises(ValueError, match="http"):
        HttpLink("ws://communication:8001", PUBLISH_TOKEN, 5)

"""communication as a real process, driven by real websocket clients and HTTP publishes."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from services.shared.realtime_token import issue
from tests.stack import exchange, wait_for

from .conftest import PUBLISH_TOKEN, REALTIME_SECRET, Service, run_service

pytestmark = pytest.mark.integration

RECV_TIMEOUT = 10.0


async def receive(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT))
    return message


async def closed_with(ws: ClientConnection) -> tuple[int | None, str | None]:
    """Reads until the server closes the socket; returns the close code and reason."""
    async with asyncio.timeout(RECV_TIMEOUT):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed:
            return ws.close_code, ws.close_reason


async def wait_for_metric(service: Service, http: httpx.AsyncClient, name: str, value: int) -> dict[str, int]:
    deadline = time.monotonic() + RECV_TIMEOUT
    while (metrics := await service.metrics(http))[name] != value:
        assert time.monotonic() < deadline, f"{name} never became {value}: {metrics}"
        await asyncio.sleep(0.02)
    return metrics


@pytest.fixture
async def http(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the internal listener, where publishes and the counters are."""
    async with service.internal() as client:
        yield client


# Connecting and receiving


async def test_subscribed_socket_receives_published_events(service: Service, http: httpx.AsyncClient) -> None:
    async with connect(service.ws_url(service.token("alice"))) as ws:
        connected = await receive(ws)
        assert connected["event"] == "connected"
        assert connected["channel"] == "user:alice"
        assert connected["expires_at"] > time.time()

        event = {"event": "task.updated", "task_id": "t1", "status": "running", "changes": {"progress": 0.5}}
        assert await service.publish(http, "user:alice", event) == 1

        assert await receive(ws) == event


async def test_user_does_not_receive_another_users_events(service: Service, http: httpx.AsyncClient) -> None:
    async with (
        connect(service.ws_url(service.token("carol"))) as carol,
        connect(service.ws_url(service.token("dave"))) as dave,
    ):
        await receive(carol)
        await receive(dave)

        assert await service.publish(http, "user:dave", {"event": "task.updated", "for": "dave"}) == 1
        assert await service.publish(http, "user:carol", {"event": "task.updated", "for": "carol"}) == 1

        # Carol's first message after "connected" is her own event, so Dave's was never sent to her.
        assert await receive(carol) == {"event": "task.updated", "for": "carol"}
        assert await receive(dave) == {"event": "task.updated", "for": "dave"}


async def test_every_socket_of_a_user_receives_the_event(service: Service, http: httpx.AsyncClient) -> None:
    token = service.token("erin")
    async with connect(service.ws_url(token)) as tab1, connect(service.ws_url(token)) as tab2:
        await receive(tab1)
        await receive(tab2)

        assert await service.publish(http, "user:erin", {"n": 1}) == 2

        assert await receive(tab1) == {"n": 1}
        assert await receive(tab2) == {"n": 1}


async def test_token_in_bearer_subprotocol_is_accepted(service: Service, http: httpx.AsyncClient) -> None:
    subprotocol = f"bearer.{service.token('frank')}"
    async with connect(service.ws_url(), subprotocols=[subprotocol]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == subprotocol
        assert (await receive(ws))["channel"] == "user:frank"
        await service.publish(http, "user:frank", {"n": 1})
        assert await receive(ws) == {"n": 1}


async def test_client_ping_gets_pong(service: Service) -> None:
    async with connect(service.ws_url(service.token("grace"))) as ws:
        await receive(ws)
        await ws.send(json.dumps({"type": "ping"}))
        assert await receive(ws) == {"event": "pong"}


async def test_publish_to_a_channel_without_sockets_delivers_nothing(http: httpx.AsyncClient, service: Service) -> None:
    assert await service.publish(http, "user:nobody-here", {"n": 1}) == 0


# Refused sockets


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "missing token"),
        ("not-a-token", "malformed token"),
        (issue("some-other-secret", "mallory", 300)[0], "invalid token signature"),
        (issue(REALTIME_SECRET, "alice", 300, now=time.time() - 600)[0], "token expired"),
    ],
    ids=["missing", "malformed", "forged", "expired"],
)
async def test_bad_token_is_refused_with_4401(service: Service, token: str | None, reason: str) -> None:
    async with service.internal() as http:
        before = (await service.metrics(http))["auth_failures"]
        async with connect(service.ws_url(token)) as ws:
            assert await closed_with(ws) == (4401, reason)
        assert (await service.metrics(http))["auth_failures"] == before + 1


# Internal publish API


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"X-Internal-Token": "wrong"}, {"Authorization": "Basic abc"}],
    ids=["missing", "wrong-bearer", "wrong-header", "not-bearer"],
)
async def test_publish_without_the_internal_token_is_401(http: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await http.post("/internal/publish", json={"channel": "user:alice", "event": {}}, headers=headers)

    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "unauthorized"
    assert body["retryable"] is False
    assert "internal token" in body["message"]


async def test_publish_accepts_the_x_internal_token_header(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/internal/publish", json={"channel": "user:nobody", "event": {}}, headers={"X-Internal-Token": PUBLISH_TOKEN}
    )
    assert response.status_code == 200
    assert response.json() == {"delivered": 0}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"event": {}}, "channel"),
        ({"channel": 7, "event": {}}, "channel"),
        ({"channel": ""}, "event"),
        ({"channel": "user:alice", "event": ["not", "an", "object"]}, "event"),
        ({"channel": "", "event": {}}, "channel"),
    ],
    ids=["missing-channel", "channel-not-string", "missing-event", "event-not-object", "empty-channel"],
)
async def test_bad_publish_body_is_400_naming_the_field(http: httpx.AsyncClient, body: Any, field: str) -> None:
    response = await http.post("/internal/publish", json=body, headers={"Authorization": f"Bearer {PUBLISH_TOKEN}"})

    assert response.status_code == 400
    error = response.json()
    # The structured body shared with main: validation problems also come with `details`.
    assert {"code", "message", "retryable"} <= set(error) <= {"code", "message", "retryable", "details"}
    assert error["code"] == "invalid_input"
    assert error["retryable"] is False
    assert field in error["message"]


async def test_malformed_json_is_400(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/internal/publish",
        content=b"{not json",
        headers={"Authorization": f"Bearer {PUBLISH_TOKEN}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    # The same code as main's for a body that is not JSON (services.shared.http_errors).
    assert response.json()["code"] == "bad_request"


async def test_batch_publish_pushes_each_event_in_order(service: Service, http: httpx.AsyncClient) -> None:
    async with connect(service.ws_url(service.token("judy"))) as ws:
        await receive(ws)
        events = [
            {"channel": "user:judy", "event": {"n": 0}},
            {"channel": "user:nobody", "event": {"n": 1}},
            {"channel": "user:judy", "event": {"n": 2}},
            {"channel": "user:judy", "event": {"n": 3}},
        ]
        response = await http.post(
            "/internal/publish/batch", json={"events": events}, headers={"Authorization": f"Bearer {PUBLISH_TOKEN}"}
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"delivered": 3}
        assert [(await receive(ws))["n"] for _ in range(3)] == [0, 2, 3]


async def test_batch_publish_without_the_internal_token_is_401(http: httpx.AsyncClient) -> None:
    response = await http.post("/internal/publish/batch", json={"events": []}, headers={"X-Internal-Token": "wrong"})
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


async def test_batch_with_an_empty_channel_is_400_naming_it_and_publishes_nothing(
    service: Service, http: httpx.AsyncClient
) -> None:
    before = await service.metrics(http)
    events = [{"channel": "user:judy", "event": {}}, {"channel": "", "event": {}}]
    response = await http.post(
        "/internal/publish/batch", json={"events": events}, headers={"Authorization": f"Bearer {PUBLISH_TOKEN}"}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_input"
    assert "events[1].channel" in response.json()["message"]
    assert (await service.metrics(http))["messages_published"] == before["messages_published"]


async def test_unknown_route_is_a_structured_404(http: httpx.AsyncClient) -> None:
    response = await http.get("/no/such/route")
    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "message": "Not Found", "retryable": False}


# Health and counters


async def test_healthz(service: Service) -> None:
    async with service.http() as public:
        response = await public.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_counters_follow_connections_and_messages(service: Service, http: httpx.AsyncClient) -> None:
    before = await service.metrics(http)
    async with connect(service.ws_url(service.token("heidi"))) as ws:
        await receive(ws)
        during = await service.metrics(http)
        assert during["connections_open"] == before["connections_open"] + 1
        assert during["connections_total"] == before["connections_total"] + 1

        await service.publish(http, "user:heidi", {"n": 1})
        await service.publish(http, "user:nobody", {"n": 2})
        await receive(ws)

    after = await wait_for_metric(service, http, "connections_open", before["connections_open"])
    assert after["messages_published"] == before["messages_published"] + 2
    assert after["messages_delivered"] == before["messages_delivered"] + 1
    assert after["messages_sent"] == before["messages_sent"] + 1
    assert after["connections_total"] == before["connections_total"] + 1
    assert set(after) >= {"messages_dropped", "slow_client_disconnects", "auth_failures", "channels"}


# Slow and dead clients


async def open_reluctant_reader(url: str) -> tuple[ClientConnection, socket.socket]:
    """A client that reads the "connected" message and then nothing more: a tiny receive buffer, and the client
    library stops reading from the socket as soon as one message waits for the application."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", int(url.split(":")[2].split("/")[0])))
    ws = await connect(url, sock=sock, max_queue=1, ping_interval=None)
    await receive(ws)
    return ws, sock


BIG = "x" * 32_768


async def publish_until_a_slow_client_is_dropped(service: Service, http: httpx.AsyncClient, channel: str) -> int:
    """Publishes numbered events big enough to fill socket buffers quickly; returns how many were published."""
    for n in range(2_000):
        await service.publish(http, channel, {"n": n, "padding": BIG})
        if n % 10 == 9 and (await service.metrics(http))["slow_client_disconnects"] > 0:
            return n + 1
    raise AssertionError(f"no client was dropped as too slow:\n{service.log()}")


async def test_slow_client_is_disconnected_and_others_keep_receiving(tmp_path: Path) -> None:
    async with (
        run_service(tmp_path, COMMUNICATION_QUEUE_SIZE="4") as service,
        service.internal() as http,
    ):
        url = service.ws_url(service.token("ivan"))
        async with connect(url, max_size=None) as fast:
            await receive(fast)
            slow, _ = await open_reluctant_reader(url)

            async def read_fast() -> list[int]:
                received: list[int] = []
                while not (event := await receive(fast)).get("last"):
                    received.append(event["n"])
                return [*received, event["n"]]

            reader = asyncio.create_task(read_fast())
            published = await publish_until_a_slow_client_is_dropped(service, http, "user:ivan")
            for n in range(published, published + 20):
                assert await service.publish(http, "user:ivan", {"n": n, "last": n == published + 19}) == 1
            received = await reader

            assert received == list(range(published + 20))
            metrics = await service.metrics(http)
            assert metrics["slow_client_disconnects"] == 1
            assert metrics["messages_dropped"] >= 1
            # The slow socket is still held while its close frame waits behind the data it has not read.
            assert metrics["connections_open"] == 2

            # Once the slow client reads again it finds what it was sent so far and then the close frame.
            code, reason = await closed_with(slow)
            assert (code, reason) == (1013, "too slow")
            await wait_for_metric(service, http, "connections_open", 1)


async def test_slow_client_that_never_reads_again_is_aborted(tmp_path: Path) -> None:
    async with (
        run_service(
            tmp_path,
            COMMUNICATION_QUEUE_SIZE="2",
            COMMUNICATION_PING_INTERVAL="0",
            COMMUNICATION_PING_TIMEOUT="2",
        ) as service,
        service.internal() as http,
    ):
        slow, _ = await open_reluctant_reader(service.ws_url(service.token("judy")))
        await publish_until_a_slow_client_is_dropped(service, http, "user:judy")
        # Dropped from its channel, but the server still holds the socket: the close frame cannot get through
        # the full buffers.
        metrics = await service.metrics(http)
        assert (metrics["connections_open"], metrics["channels"]) == (1, 0)

        # After the ping timeout the server gives up on the close handshake and aborts the connection.
        await wait_for_metric(service, http, "connections_open", 0)
        slow.transport.abort()


async def test_peer_that_stops_answering_pings_is_dropped(tmp_path: Path) -> None:
    async with (
        run_service(tmp_path, COMMUNICATION_PING_INTERVAL="0.2", COMMUNICATION_PING_TIMEOUT="0.5") as service,
        service.internal() as http,
    ):
        # A raw client that completes the handshake and then never reads or writes again, like a vanished peer.
        reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
        handshake = (
            f"GET /ws?token={service.token('kim')} HTTP/1.1\r\n"
            "Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        writer.write(handshake.encode())
        assert (await asyncio.wait_for(reader.readline(), RECV_TIMEOUT)).startswith(b"HTTP/1.1 101")
        await wait_for_metric(service, http, "connections_open", 1)

        await wait_for_metric(service, http, "connections_open", 0)
        writer.close()


async def test_a_socket_is_closed_when_its_token_expires(service: Service) -> None:
    async with connect(service.ws_url(service.token("leo", ttl_seconds=2))) as ws:
        await receive(ws)
        assert await closed_with(ws) == (4401, "token expired")


async def test_a_socket_outlives_its_token_when_told_to(tmp_path: Path) -> None:
    async with (
        run_service(tmp_path, COMMUNICATION_CLOSE_ON_TOKEN_EXPIRY="false") as service,
        connect(service.ws_url(service.token("lena", ttl_seconds=1))) as ws,
        service.internal() as http,
    ):
        expires: int = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT))["expires_at"]

        async def expired() -> bool:
            return time.time() > expires + 1

        await wait_for(expired, 10, "the token to expire", interval=0.1)
        assert await service.publish(http, "user:lena", {"n": 1}) == 1
        assert await receive(ws) == {"n": 1}


async def test_sockets_per_user_are_limited(tmp_path: Path) -> None:
    async with (
        run_service(tmp_path, COMMUNICATION_MAX_SOCKETS_PER_USER="2") as service,
        service.internal() as http,
    ):
        token = service.token("max")
        async with connect(service.ws_url(token)) as first, connect(service.ws_url(token)) as second:
            await receive(first)
            await receive(second)
            async with connect(service.ws_url(token)) as third:
                assert await closed_with(third) == (4429, "too many sockets: at most 2 per user")
            # Another user is not affected, and the refused socket was never subscribed.
            async with connect(service.ws_url(service.token("other"))) as other:
                assert (await receive(other))["event"] == "connected"
            assert await service.publish(http, "user:max", {"n": 1}) == 2
            assert (await service.metrics(http))["sockets_refused"] == 1
        # Once one closes, the user may open another.
        async with connect(service.ws_url(token)) as again:
            assert (await receive(again))["event"] == "connected"


# Lifecycle


async def test_sigterm_closes_sockets_and_exits_promptly(tmp_path: Path) -> None:
    async with run_service(tmp_path) as service, connect(service.ws_url(service.token("mia"))) as ws:
        await receive(ws)
        started = time.monotonic()

        service.process.send_signal(signal.SIGTERM)

        assert await closed_with(ws) == (1012, "")
        assert await asyncio.wait_for(service.process.wait(), 5) == 0
        assert time.monotonic() - started < 5


async def test_missing_required_settings_fail_fast(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"PUBLISH_TOKEN \(or PUBLISH_TOKEN_FILE\) is required"):
        async with run_service(tmp_path, PUBLISH_TOKEN=""):
            pass


# Listeners and request limits


async def test_publish_and_metrics_exist_only_on_the_internal_listener(service: Service) -> None:
    publish = {"channel": "user:nobody", "event": {}}
    token = {"Authorization": f"Bearer {PUBLISH_TOKEN}"}
    async with service.http() as public, service.internal() as internal:
        for path in ("/internal/publish", "/internal/publish/batch"):
            body = publish if path.endswith("publish") else {"events": [publish]}
            assert (await public.post(path, json=body, headers=token)).status_code == 404
            assert (await internal.post(path, json=body, headers=token)).status_code == 200
        assert (await public.get("/metrics")).status_code == 404
        assert (await internal.get("/metrics")).status_code == 200
        assert (await internal.get("/healthz")).status_code == 404
    # The websocket is the public listener's.
    internal_ws = service.internal_url.replace("http", "ws", 1) + f"/ws?token={service.token('nina')}"
    with pytest.raises((ConnectionClosed, InvalidStatus)):
        async with connect(internal_ws) as ws:
            await receive(ws)


async def test_an_oversized_publish_is_refused_before_it_is_read(tmp_path: Path) -> None:
    async with run_service(tmp_path, COMMUNICATION_MAX_PUBLISH_BYTES="1000") as service:
        head = (
            f"POST /internal/publish HTTP/1.1\r\nHost: communication\r\nAuthorization: Bearer {PUBLISH_TOKEN}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1001\r\n\r\n"
        )
        answer, _ = await exchange(service.internal_url, head.encode())
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        async with service.internal() as http:
            body = {"channel": "user:x", "event": {"pad": "x" * 900}}
            fits = await http.post("/internal/publish", json=body, headers={"Authorization": f"Bearer {PUBLISH_TOKEN}"})
            assert fits.status_code == 200, fits.text


async def test_a_client_slow_to_send_its_headers_is_cut_off(tmp_path: Path) -> None:
    async with run_service(tmp_path, COMMUNICATION_HEADER_TIMEOUT_SECONDS="1") as service:
        for url in (service.http_url, service.internal_url):
            answer, took = await exchange(url, b"GET /ws HTTP/1.1\r\nHost: communication\r\nUpgrade: web", timeout=6)
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
            assert 0.9 <= took < 4, took
        # A websocket lives on after its handshake, whatever the header timeout.
        async with connect(service.ws_url(service.token("olga"))) as ws:
            await receive(ws)
            await ws.send(json.dumps({"type": "ping"}))
            assert await receive(ws) == {"event": "pong"}

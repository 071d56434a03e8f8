"""communication as a real process, driven by real websocket clients and events published to its stream."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import nats as nats_client
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from deploy.local import LocalStack
from deploy.ports import free_port
from services.shared import event_stream
from services.shared.realtime_token import issue
from tests.stack import exchange, wait_for

from .conftest import REALTIME_SECRET, Events, Service, open_stream, run_service

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
    """The public listener."""
    async with service.http() as client:
        yield client


@pytest.fixture
async def internal(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    """The internal listener (metrics)."""
    async with service.internal() as client:
        yield client


# Connecting and receiving


def without_seq(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k != "seq"}


async def test_subscribed_socket_receives_published_events(service: Service, http: httpx.AsyncClient) -> None:
    async with connect(service.ws_url(service.token("alice"))) as ws:
        connected = await receive(ws)
        assert connected["event"] == "connected"
        assert connected["channel"] == "user:alice"
        assert connected["expires_at"] > time.time()
        assert isinstance(connected["seq"], int)

        event = {"event": "task.updated", "task_id": "t1", "status": "running", "changes": {"progress": 0.5}}
        seq = await service.publish("alice", event)

        assert await receive(ws) == {"seq": seq, **event}
        assert seq > connected["seq"]


async def test_user_does_not_receive_another_users_events(service: Service) -> None:
    async with (
        connect(service.ws_url(service.token("carol"))) as carol,
        connect(service.ws_url(service.token("dave"))) as dave,
    ):
        await receive(carol)
        await receive(dave)

        await service.publish("dave", {"event": "task.updated", "for": "dave"})
        await service.publish("carol", {"event": "task.updated", "for": "carol"})

        # Carol's first message after "connected" is her own event, so Dave's was never sent to her.
        assert without_seq(await receive(carol)) == {"event": "task.updated", "for": "carol"}
        assert without_seq(await receive(dave)) == {"event": "task.updated", "for": "dave"}


async def test_every_socket_of_a_user_receives_the_event(service: Service) -> None:
    token = service.token("erin")
    async with connect(service.ws_url(token)) as tab1, connect(service.ws_url(token)) as tab2:
        await receive(tab1)
        await receive(tab2)

        seq = await service.publish("erin", {"n": 1})

        assert await receive(tab1) == {"seq": seq, "n": 1}
        assert await receive(tab2) == {"seq": seq, "n": 1}


@pytest.mark.parametrize(
    "user", ["a.b c", "x*>", "李雷", "under_score"], ids=["dot-space", "wildcards", "cjk", "underscore"]
)
async def test_users_whose_names_no_subject_allows_receive_their_events(service: Service, user: str) -> None:
    async with connect(service.ws_url(service.token(user))) as ws:
        assert (await receive(ws))["channel"] == f"user:{user}"
        await service.publish(user, {"for": user})
        assert without_seq(await receive(ws)) == {"for": user}


async def test_token_in_bearer_subprotocol_is_accepted(service: Service) -> None:
    subprotocol = f"bearer.{service.token('frank')}"
    async with connect(service.ws_url(), subprotocols=[subprotocol]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == subprotocol
        assert (await receive(ws))["channel"] == "user:frank"
        await service.publish("frank", {"n": 1})
        assert without_seq(await receive(ws)) == {"n": 1}


async def test_client_ping_gets_pong(service: Service) -> None:
    async with connect(service.ws_url(service.token("grace"))) as ws:
        await receive(ws)
        await ws.send(json.dumps({"type": "ping"}))
        assert await receive(ws) == {"event": "pong"}


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
async def test_bad_token_is_refused_with_4401(
    service: Service, internal: httpx.AsyncClient, token: str | None, reason: str
) -> None:
    before = (await service.metrics(internal))["auth_failures"]
    async with connect(service.ws_url(token)) as ws:
        assert await closed_with(ws) == (4401, reason)
    assert (await service.metrics(internal))["auth_failures"] == before + 1


# Resuming with since


async def test_a_resuming_socket_gets_what_it_missed_then_live_events_each_once(service: Service) -> None:
    token = service.token("olga")
    async with connect(service.ws_url(token)) as ws:
        await receive(ws)
        first = await service.publish("olga", {"n": 0})
        assert (await receive(ws))["seq"] == first
    # Missed while no socket was open; another user's events interleave in the stream.
    missed = []
    for n in range(1, 4):
        missed.append(await service.publish("olga", {"n": n}))
        await service.publish("someone-else", {"n": n})
    async with connect(service.ws_url(token, since=first)) as ws:
        connected = await receive(ws)
        assert (connected["event"], connected["seq"]) == ("connected", first)
        replayed = [await receive(ws) for _ in missed]
        live = await service.publish("olga", {"n": 4})
        assert [(m["seq"], m["n"]) for m in replayed] == list(zip(missed, [1, 2, 3], strict=True))
        assert await receive(ws) == {"seq": live, "n": 4}
        await ws.send(json.dumps({"type": "ping"}))
        # Nothing came twice: the next message is the answer to the ping.
        assert await receive(ws) == {"event": "pong"}


async def test_events_published_while_a_socket_resumes_arrive_once(service: Service) -> None:
    token = service.token("pia")
    since = await service.publish("pia", {"n": -1})
    backlog = [await service.publish("pia", {"n": n}) for n in range(50)]
    async with connect(service.ws_url(token, since=since)) as ws:
        more = asyncio.gather(*(service.publish("pia", {"n": n}) for n in range(50, 100)))
        assert (await receive(ws))["event"] == "connected"
        seqs = sorted([*backlog, *await more])
        got = [await receive(ws) for _ in seqs]
        assert [m["seq"] for m in got] == seqs
        await ws.send(json.dumps({"type": "ping"}))
        assert await receive(ws) == {"event": "pong"}


async def test_since_with_nothing_missed_gets_only_live_events(service: Service) -> None:
    since = await service.publish("quinn", {"n": 0})
    async with connect(service.ws_url(service.token("quinn"), since=since)) as ws:
        assert (await receive(ws))["seq"] == since
        live = await service.publish("quinn", {"n": 1})
        assert await receive(ws) == {"seq": live, "n": 1}


@pytest.mark.parametrize(
    "since", ["abc", "-1", "1.5", "", "9" * 40], ids=["word", "negative", "fraction", "empty", "huge"]
)
async def test_a_malformed_since_is_closed_with_a_reason_naming_it(service: Service, since: str) -> None:
    async with connect(service.ws_url(service.token("rita"), since=since)) as ws:
        code, reason = await closed_with(ws)
    assert code == 4400
    assert reason is not None
    assert reason.startswith("invalid since")
    assert "integer" in reason


async def test_since_ahead_of_the_stream_gets_a_resync(service: Service) -> None:
    async with connect(service.ws_url(service.token("sam"), since=10**12)) as ws:
        connected = await receive(ws)
        resync = await receive(ws)
        assert resync["event"] == "resync"
        assert "ahead" in resync["reason"]
        live = await service.publish("sam", {"n": 1})
        assert resync["seq"] <= connected["seq"] or resync["seq"] < live
        assert await receive(ws) == {"seq": live, "n": 1}


async def test_since_older_than_retention_gets_a_resync(tmp_path: Path, nats_server: LocalStack) -> None:
    events = await open_stream(
        nats_server,
        stream="SHORT_RETENTION",
        subject_prefix="tasks.events.short",
        max_age_seconds=1.0,
        duplicate_window_seconds=1.0,
    )
    try:
        async with run_service(tmp_path, events) as service:
            old = await events.publish("tess", {"n": 0})
            await events.publish("tess", {"n": 1})

            async def expired() -> bool:
                state = (await events.js.stream_info("SHORT_RETENTION")).state
                return state.first_seq > old + 1

            await wait_for(expired, 30, "the stream to drop events older than a second", interval=0.1)
            async with connect(service.ws_url(service.token("tess"), since=old)) as ws:
                await receive(ws)
                resync = await receive(ws)
                assert resync["event"] == "resync"
                assert "retention" in resync["reason"]
                live = await events.publish("tess", {"n": 2})
                assert await receive(ws) == {"seq": live, "n": 2}
    finally:
        await events.js.delete_stream("SHORT_RETENTION")
        await events.nats.close()


async def test_more_missed_events_than_the_resume_limit_get_a_resync(tmp_path: Path, events: Events) -> None:
    async with run_service(tmp_path, events, COMMUNICATION_RESUME_MAX_EVENTS="3") as service:
        since = await events.publish("uma", {"n": 0})
        for n in range(1, 6):
            await events.publish("uma", {"n": n})
        async with connect(service.ws_url(service.token("uma"), since=since)) as ws:
            await receive(ws)
            resync = await receive(ws)
            assert resync["event"] == "resync"
            assert "more than 3" in resync["reason"]


async def test_unknown_route_is_a_structured_404(http: httpx.AsyncClient) -> None:
    response = await http.get("/no/such/route")
    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "message": "Not Found", "retryable": False}


async def test_there_is_no_http_publish_route(service: Service) -> None:
    # Events reach communication only through the stream, on neither listener.
    async with service.http() as public, service.internal() as internal:
        for http in (public, internal):
            for path in ("/internal/publish", "/internal/publish/batch"):
                assert (await http.post(path, json={"channel": "user:alice", "event": {}})).status_code in (404, 405)


# Health and counters


async def test_healthz_and_readyz(http: httpx.AsyncClient) -> None:
    response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert (await http.get("/readyz")).json() == {"status": "ok"}


async def test_counters_follow_connections_and_messages(service: Service, internal: httpx.AsyncClient) -> None:
    http = internal
    before = await service.metrics(http)
    async with connect(service.ws_url(service.token("heidi"))) as ws:
        await receive(ws)
        during = await service.metrics(http)
        assert during["connections_open"] == before["connections_open"] + 1
        assert during["connections_total"] == before["connections_total"] + 1

        await service.publish("heidi", {"n": 1})
        await service.publish("nobody", {"n": 2})
        await receive(ws)
        # The replica reads every user's events; only heidi's reach a socket.
        await wait_for_metric(service, http, "messages_published", before["messages_published"] + 2)

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


async def publish_until_a_slow_client_is_dropped(service: Service, http: httpx.AsyncClient, user: str) -> int:
    """Publishes numbered events big enough to fill socket buffers quickly; returns how many were published."""
    for n in range(2_000):
        await service.publish(user, {"n": n, "padding": BIG})
        if n % 10 == 9 and (await service.metrics(http))["slow_client_disconnects"] > 0:
            return n + 1
    raise AssertionError(f"no client was dropped as too slow:\n{service.log()}")


async def test_slow_client_is_disconnected_and_others_keep_receiving(tmp_path: Path, events: Events) -> None:
    async with (
        run_service(tmp_path, events, COMMUNICATION_QUEUE_SIZE="4") as service,
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
            published = await publish_until_a_slow_client_is_dropped(service, http, "ivan")
            for n in range(published, published + 20):
                await service.publish("ivan", {"n": n, "last": n == published + 19})
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


async def test_slow_client_that_never_reads_again_is_aborted(tmp_path: Path, events: Events) -> None:
    async with (
        run_service(
            tmp_path,
            events,
            COMMUNICATION_QUEUE_SIZE="2",
            COMMUNICATION_PING_INTERVAL="0",
            COMMUNICATION_PING_TIMEOUT="2",
        ) as service,
        service.internal() as http,
    ):
        slow, _ = await open_reluctant_reader(service.ws_url(service.token("judy")))
        await publish_until_a_slow_client_is_dropped(service, http, "judy")
        # Dropped from its channel, but the server still holds the socket: the close frame cannot get through
        # the full buffers.
        metrics = await service.metrics(http)
        assert (metrics["connections_open"], metrics["channels"]) == (1, 0)

        # After the ping timeout the server gives up on the close handshake and aborts the connection.
        await wait_for_metric(service, http, "connections_open", 0)
        slow.transport.abort()


async def test_peer_that_stops_answering_pings_is_dropped(tmp_path: Path, events: Events) -> None:
    async with (
        run_service(tmp_path, events, COMMUNICATION_PING_INTERVAL="0.2", COMMUNICATION_PING_TIMEOUT="0.5") as service,
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


async def test_a_socket_outlives_its_token_when_told_to(tmp_path: Path, events: Events) -> None:
    async with (
        run_service(tmp_path, events, COMMUNICATION_CLOSE_ON_TOKEN_EXPIRY="false") as service,
        connect(service.ws_url(service.token("lena", ttl_seconds=1))) as ws,
    ):
        expires: int = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT))["expires_at"]

        async def expired() -> bool:
            return time.time() > expires + 1

        await wait_for(expired, 10, "the token to expire", interval=0.1)
        seq = await service.publish("lena", {"n": 1})
        assert await receive(ws) == {"seq": seq, "n": 1}


async def test_sockets_per_user_are_limited(tmp_path: Path, events: Events) -> None:
    async with (
        run_service(tmp_path, events, COMMUNICATION_MAX_SOCKETS_PER_USER="2") as service,
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
            before = await service.metrics(http)
            seq = await service.publish("max", {"n": 1})
            assert await receive(first) == await receive(second) == {"seq": seq, "n": 1}
            after = await wait_for_metric(service, http, "messages_published", before["messages_published"] + 1)
            assert after["messages_delivered"] == before["messages_delivered"] + 2
            assert after["sockets_refused"] == 1
        # Once one closes, the user may open another.
        async with connect(service.ws_url(token)) as again:
            assert (await receive(again))["event"] == "connected"


# Lifecycle


async def test_sigterm_closes_sockets_and_exits_promptly(tmp_path: Path, events: Events) -> None:
    async with run_service(tmp_path, events) as service, connect(service.ws_url(service.token("mia"))) as ws:
        await receive(ws)
        started = time.monotonic()

        service.process.send_signal(signal.SIGTERM)

        assert await closed_with(ws) == (1012, "")
        assert await asyncio.wait_for(service.process.wait(), 5) == 0
        assert time.monotonic() - started < 5


async def test_missing_required_settings_fail_fast(tmp_path: Path, events: Events) -> None:
    with pytest.raises(RuntimeError, match=r"NATS_COMMUNICATION_PASSWORD \(or NATS_COMMUNICATION_PASSWORD_FILE\)"):
        async with run_service(tmp_path, events, NATS_COMMUNICATION_PASSWORD=""):
            pass


async def test_communication_may_only_read_the_stream(events: Events) -> None:
    """Its NATS user reads the stream but can neither publish an event nor change or remove the stream."""
    violations: list[str] = []

    async def error(exc: Exception) -> None:
        violations.append(str(exc))

    reader = events.reader
    nats = await nats_client.connect(reader.nats_url, user=reader.user, password=reader.password, error_cb=error)
    try:
        js = nats.jetstream(timeout=1)
        before = (await js.stream_info(reader.stream)).state.last_seq
        with pytest.raises(nats_client.errors.TimeoutError):
            await js.publish(event_stream.user_subject(reader, "forged"), b'{"forged": true}')
        with pytest.raises(nats_client.errors.TimeoutError):
            await js.purge_stream(reader.stream)
        with pytest.raises(nats_client.errors.TimeoutError):
            await js.delete_stream(reader.stream)

        async def refused() -> bool:
            return sum("permissions violation for publish" in v for v in violations) == 3

        await wait_for(refused, 10, "the server to refuse the three requests")
    finally:
        await nats.close()
    # Nothing reached the stream, which is still there with its events.
    assert (await events.js.stream_info(reader.stream)).state.last_seq == before


async def test_sockets_wait_for_the_stream_and_are_refused_until_it_is_read(tmp_path: Path, events: Events) -> None:
    """Before the replica reads the stream (here: it does not exist yet) a socket is told to try again."""
    port = free_port()
    later = dataclasses.replace(events.settings, stream="NOT_CREATED_YET", subject_prefix="tasks.events.later")
    env = {**os.environ, **events.env(), "EVENTS_STREAM": later.stream, "EVENTS_SUBJECT_PREFIX": later.subject_prefix}
    env.update({"REALTIME_SECRET": REALTIME_SECRET, "COMMUNICATION_HOST": "127.0.0.1", "COMMUNICATION_PORT": str(port)})
    env["COMMUNICATION_INTERNAL_PORT"] = str(free_port())
    log = (tmp_path / "waiting.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.communication", env=env, stdout=log, stderr=asyncio.subprocess.STDOUT
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:

            async def alive() -> int | None:
                try:
                    return (await http.get("/readyz")).status_code
                except httpx.TransportError:
                    return None

            assert await wait_for(alive, 15, "communication to answer") == 503
            async with connect(f"ws://127.0.0.1:{port}/ws?token={issue(REALTIME_SECRET, 'vic', 60)[0]}") as ws:
                assert await closed_with(ws) == (1013, "event stream unavailable; try again")
            await event_stream.ensure_stream(events.js, later)

            async def ready() -> bool:
                return (await http.get("/readyz")).status_code == 200

            await wait_for(ready, 15, "communication to read the new stream")
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()
        log.close()
        await events.js.delete_stream("NOT_CREATED_YET")


# Listeners and request limits


async def test_metrics_exist_only_on_the_internal_listener(service: Service) -> None:
    async with service.http() as public, service.internal() as internal:
        assert (await public.get("/metrics")).status_code == 404
        assert (await internal.get("/metrics")).status_code == 200
        assert (await internal.get("/healthz")).status_code == 404
    # The websocket is the public listener's.
    internal_ws = service.internal_url.replace("http", "ws", 1) + f"/ws?token={service.token('nina')}"
    with pytest.raises((ConnectionClosed, InvalidStatus)):
        async with connect(internal_ws) as ws:
            await receive(ws)


async def test_an_oversized_body_is_refused_before_it_is_read(tmp_path: Path, events: Events) -> None:
    async with run_service(tmp_path, events, COMMUNICATION_MAX_BODY_BYTES="1000") as service:
        head = "GET /healthz HTTP/1.1\r\nHost: communication\r\nContent-Length: 1001\r\n\r\n"
        answer, _ = await exchange(service.http_url, head.encode())
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        async with service.http() as http:
            fits = await http.request("GET", "/healthz", content=b"x" * 900)
            assert fits.status_code == 200, fits.text


async def test_a_client_slow_to_send_its_headers_is_cut_off(tmp_path: Path, events: Events) -> None:
    async with run_service(tmp_path, events, COMMUNICATION_HEADER_TIMEOUT_SECONDS="1") as service:
        for url in (service.http_url, service.internal_url):
            answer, took = await exchange(url, b"GET /ws HTTP/1.1\r\nHost: communication\r\nUpgrade: web", timeout=6)
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
            assert 0.9 <= took < 4, took
        # A websocket lives on after its handshake, whatever the header timeout.
        async with connect(service.ws_url(service.token("olga"))) as ws:
            await receive(ws)
            await ws.send(json.dumps({"type": "ping"}))
            assert await receive(ws) == {"event": "pong"}

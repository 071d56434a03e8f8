"""main's explicit request limits: a body larger than its route allows is refused with 413 before it is read (the
create route's limit follows the integration's schema), a client that sends its headers or its body too slowly is cut
off with 408 within the timeout, and list pages stay bounded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest

from deploy.local import LocalStack
from integrations.echo.schemas import EchoRequest
from services.main.body_limits import max_json_bytes
from services.main.integrations_router import create_body_type
from tests.stack import USERS, Api, MainProcess, exchange

pytestmark = pytest.mark.integration

TIMEOUT = 1.0


def post_head(path: str, length: int, host: str, token: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def test_an_oversized_create_body_is_refused_before_it_is_read(stack: LocalStack, alice: Api) -> None:
    # The create body: echo's request and main's create options.
    limit = max_json_bytes(create_body_type(EchoRequest))
    assert limit is not None and limit < 100_000  # derived from the schema (10,000 characters), not 10 MB
    host = urlsplit(stack.main_url).netloc
    # Only the headers are sent: the 413 arrives although the announced body never does.
    head = post_head("/api/integrations/echo/tasks", 50_000_000, host, USERS["alice"])
    answer, _ = await exchange(stack.main_url, head, timeout=10)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b'"code":"payload_too_large"' in answer
    # A body just over the limit without a length announced (chunked) is cut at the limit as well.
    async with httpx.AsyncClient(base_url=stack.main_url, headers=alice.http.headers) as http:

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"message": "'
            for _ in range(limit // 1000 + 1):
                yield b"x" * 1000
            yield b'"}'

        response = await http.post("/api/integrations/echo/tasks", content=chunks())
        assert response.status_code == 413, response.text
        # The largest valid body is accepted.
        largest = await http.post("/api/integrations/echo/tasks", json={"message": "\u00e9" * 10_000})
        assert largest.status_code == 202, largest.text


async def test_routes_without_a_body_take_only_a_small_one(stack: LocalStack) -> None:
    host = urlsplit(stack.main_url).netloc
    answer, _ = await exchange(stack.main_url, post_head("/api/realtime/token", 1_000_000, host, USERS["alice"]))
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    internal = urlsplit(stack.main_internal_url).netloc
    head = post_head("/internal/tasks/x/report", 5_000_000, internal, stack.secrets.report_token)
    answer, _ = await exchange(stack.main_internal_url, head)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]


async def test_list_pages_are_bounded(alice: Api) -> None:
    for params in ({"limit": "101"}, {"offset": "1000001"}, {"limit": "-1"}):
        response = await alice.http.get("/api/tasks", params=params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["code"] == "invalid_input"


@pytest.fixture(scope="module")
async def strict_main(stack: LocalStack, worker_env: dict[str, str]) -> AsyncIterator[MainProcess]:
    """A main beside the stack's with one-second header and body timeouts."""
    main = MainProcess(
        worker_env,
        stack.state_dir / "main-strict-timeouts.log",
        MAIN_HEADER_TIMEOUT_SECONDS=str(TIMEOUT),
        MAIN_BODY_TIMEOUT_SECONDS=str(TIMEOUT),
    )
    try:
        await main.wait_ready()
        yield main
    finally:
        main.kill()


@pytest.mark.parametrize(
    ("what", "sent"),
    [
        ("nothing after connecting", b""),
        ("half the headers", b"GET /healthz HTTP/1.1\r\nHost: main\r\nX-Slow: "),
        (
            "the headers but half the body",
            post_head("/api/integrations/echo/tasks", 50, "main", USERS["alice"]) + b'{"m',
        ),
    ],
)
async def test_a_slow_client_is_cut_off_within_the_timeout(strict_main: MainProcess, what: str, sent: bytes) -> None:
    answer, took = await exchange(strict_main.url, sent, timeout=TIMEOUT + 5)
    assert answer.startswith(b"HTTP/1.1 408 "), (what, answer[:200])
    assert TIMEOUT * 0.9 <= took < TIMEOUT + 3, (what, took)
    # The same listener answers a client that is not slow.
    async with httpx.AsyncClient(base_url=strict_main.url) as http:
        assert (await http.get("/healthz")).status_code == 200


async def test_a_kept_alive_connection_may_idle_between_requests_but_not_within_one(strict_main: MainProcess) -> None:
    parts = urlsplit(strict_main.url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: main\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200"), head
        length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))[15:])
        await reader.readexactly(length)
        # The behaviour under test: idling between requests, within uvicorn's keep-alive (5 s), is allowed.
        await asyncio.sleep(TIMEOUT * 1.5)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: main\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200"), head
        await reader.readexactly(length)
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        started = time.monotonic()
        rest = await asyncio.wait_for(reader.read(65536), TIMEOUT + 5)
        assert rest.startswith(b"HTTP/1.1 408 "), rest[:200]
        assert time.monotonic() - started < TIMEOUT + 3
    finally:
        writer.close()


async def test_an_anonymous_client_learns_nothing_about_a_routes_input(stack: LocalStack) -> None:
    async with httpx.AsyncClient(base_url=stack.main_url) as anonymous:
        for body in (b"{not json", b"{}", b'{"message": 5}', b'{"message": "x", "unknown": 1}'):
            response = await anonymous.post("/api/integrations/echo/tasks", content=body)
            assert (response.status_code, response.json()["code"]) == (401, "unauthorized"), body
        for params in ({"limit": "1000"}, {"status": "bogus"}):
            response = await anonymous.get("/api/tasks", params=params)
            assert response.status_code == 401, params

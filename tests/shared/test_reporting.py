"""The workers' report client on its pool of kept-alive connections, against the real main of the test stack: one
connection reused, concurrency bounded by the pool, reconnecting after main restarts, and main's answers mapped to
retryable or final failures."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from temporalio.exceptions import ApplicationError

from deploy.local import LocalStack
from services.shared.http_link import HttpLinkPool, LinkError
from services.shared.reporting import ReportClient
from services.shared.tasks import TaskReport
from tests.stack import Api

pytestmark = pytest.mark.integration

RUNNING = TaskReport(status="running", progress=0.5)


def links(stack: LocalStack, size: int, token: str | None = None) -> HttpLinkPool:
    return HttpLinkPool(stack.main_internal_url, token or stack.secrets.report_token, size, timeout=10)


async def new_task(alice: Api) -> str:
    # Long enough that an echo worker serving the stack (other tests' fixture) cannot finish it meanwhile.
    response = await alice.create("echo", {"message": "reported", "delay_seconds": 3600})
    assert response.status_code == 202, response.text
    task_id: str = response.json()["id"]
    return task_id


async def test_sequential_reports_reuse_one_connection(stack: LocalStack, alice: Api) -> None:
    task_id = await new_task(alice)
    pool = links(stack, size=8)
    client = ReportClient(pool)
    # From 0.1: an echo worker serving the stack may have reported the task running (at 0.0) first.
    progress = [(i + 1) / 10 for i in range(10)]
    outcomes = [await client.report(task_id, TaskReport(status="running", progress=p)) for p in progress]
    await client.close()
    assert [o.status for o in outcomes] == ["running"] * 10
    assert all(o.applied for o in outcomes)
    assert pool.connections_opened == 1
    assert (await alice.task(task_id))["progress"] == 1.0


async def test_concurrent_reports_are_bounded_by_the_pool(stack: LocalStack, alice: Api) -> None:
    task_ids = [await new_task(alice) for _ in range(30)]
    pool = links(stack, size=3)
    client = ReportClient(pool)
    outcomes = await asyncio.gather(*(client.report(task_id, RUNNING) for task_id in task_ids))
    await client.close()
    assert all(o.applied and o.status == "running" for o in outcomes)
    # 30 reports in flight at once went through exactly the pool's 3 connections, one request at a time each.
    assert pool.connections_opened == 3


async def test_reports_reconnect_after_main_restarts(stack: LocalStack, alice: Api) -> None:
    task_id = await new_task(alice)
    pool = links(stack, size=2)
    client = ReportClient(pool)
    assert (await client.report(task_id, RUNNING)).applied
    await asyncio.to_thread(stack.stop, "main")
    try:
        # Not an ApplicationError: the activity's retry policy tries again.
        with pytest.raises(LinkError):
            await client.report(task_id, RUNNING)
    finally:
        await asyncio.to_thread(stack.start, "main")
    outcome = await client.report(task_id, TaskReport(status="running", progress=0.75))
    await client.close()
    assert outcome.applied
    assert pool.connections_opened == 2


async def test_rejections_by_main_are_final(stack: LocalStack, alice: Api) -> None:
    task_id = await new_task(alice)
    client = ReportClient(links(stack, size=1))
    cases = {
        # An unknown task, a wrong credential, a report main cannot parse.
        "404": (client, "no-such-task", RUNNING),
        "401": (ReportClient(links(stack, size=1, token="wrong-token")), task_id, RUNNING),
        "400": (client, task_id, TaskReport(status="bogus")),  # type: ignore[arg-type]
    }
    for status, (reporter, reported_id, report) in cases.items():
        with pytest.raises(ApplicationError) as raised:
            await reporter.report(reported_id, report)
        assert raised.value.type == "ReportRejected"
        assert raised.value.non_retryable
        assert f"HTTP {status}" in raised.value.message
        await reporter.close()


@contextlib.asynccontextmanager
async def answering(status: int) -> AsyncIterator[str]:
    """An HTTP/1.1 server on a free port that answers every request with ``status``, keeping the connection open.
    main answers these only while it is overloaded or restarting, which a test cannot bring about on cue."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                body = b'{"code":"unavailable","message":"try again","retryable":true}'
                writer.write(b"HTTP/1.1 %d Status\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body))
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 429])
async def test_overload_and_server_errors_are_retryable(status: int) -> None:
    async with answering(status) as url:
        client = ReportClient(HttpLinkPool(url, "token", 1, timeout=5))
        with pytest.raises(RuntimeError, match=f"HTTP {status} ") as raised:
            await client.report("t-1", RUNNING)
        await client.close()
    assert not isinstance(raised.value, ApplicationError)


@pytest.mark.parametrize("status", [403, 409, 422])
async def test_other_client_errors_are_final(status: int) -> None:
    async with answering(status) as url:
        client = ReportClient(HttpLinkPool(url, "token", 1, timeout=5))
        with pytest.raises(ApplicationError) as raised:
            await client.report("t-1", RUNNING)
        await client.close()
    assert (raised.value.type, raised.value.non_retryable) == ("ReportRejected", True)


def test_a_pool_needs_a_link() -> None:
    with pytest.raises(ValueError, match="at least one"):
        HttpLinkPool("http://127.0.0.1:1", "token", 0, timeout=1)

"""The rules for fetching outside URLs, against real local servers: plain http, loopback, private, link-local and
metadata addresses are refused before anything is sent, redirects are checked hop by hop, and size and time are
bounded. What a setting allows (the local simulator) is fetched."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest

from services.shared.outbound import Outbound, OutboundError, OutboundRules, client, fetch, is_public, read_bounded
from services.shared.settings import Env


@dataclass
class Server:
    """A raw HTTP/1.1 server on 127.0.0.1: each path answers as ``routes`` says; ``seen`` is every request line."""

    port: int = 0
    seen: list[str] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return f"127.0.0.1:{self.port}"


Route = Callable[[asyncio.StreamWriter, str], Awaitable[None]]


def answer(status: int, body: bytes = b"", **headers: str) -> Route:
    async def respond(writer: asyncio.StreamWriter, _: str) -> None:
        head = "".join(
            f"{k.replace('_', '-')}: {v}\r\n" for k, v in {"content_length": str(len(body)), **headers}.items()
        )
        writer.write(f"HTTP/1.1 {status} X\r\n{head}connection: close\r\n\r\n".encode() + body)

    return respond


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, dict[str, Route]]]:
    state, routes = Server(), dict[str, Route]()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await reader.readline()).decode()
            await reader.readuntil(b"\r\n\r\n")
            state.seen.append(line.strip())
            path = line.split(" ")[1]
            await routes.get(path, answer(404))(writer, path)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield state, routes


async def get(url: str, rules: OutboundRules, max_bytes: int = 1_000_000, time_limit: float = 10) -> bytes:
    async with client(rules) as http, fetch(http, url, rules, time_limit=time_limit) as response:
        return b"".join([chunk async for chunk in read_bounded(response, max_bytes)])


async def refused(url: str, rules: OutboundRules, **bounds: float) -> OutboundError:
    with pytest.raises(OutboundError) as caught:
        await get(url, rules, **bounds)  # type: ignore[arg-type]
    return caught.value


def allowing(server: Server, **more: object) -> OutboundRules:
    return OutboundRules(allow_http=True, allowed_hosts=(server.origin,), **more)  # type: ignore[arg-type]


async def test_by_default_only_https_to_public_addresses_is_fetched(server: tuple[Server, dict[str, Route]]) -> None:
    state, routes = server
    routes["/file"] = answer(200, b"local")
    rules = OutboundRules()
    cases = {
        "plain http": f"http://{state.origin}/file",
        "loopback": f"https://{state.origin}/file",
        "a name for loopback": f"https://localhost:{state.port}/file",
        "loopback inside IPv6": f"https://[::ffff:127.0.0.1]:{state.port}/file",
        "the metadata address": "https://169.254.169.254/latest/meta-data/",
        "a private address": "https://10.20.30.40/file",
        "another private address": "https://192.168.1.1/file",
        "a shared address": "https://100.64.0.1/file",
        "unspecified": f"https://0.0.0.0:{state.port}/file",
        "credentials in the URL": "https://user:pass@example.org/file",
        "not a URL": "https://[::1/file",
        "no scheme": f"//{state.origin}/file",
    }
    for what, url in cases.items():
        started = time.monotonic()
        error = await refused(url, rules)
        assert error.code == "url_not_allowed", (what, error.message)
        assert time.monotonic() - started < 2, what  # refused, not a timed-out connection attempt
    assert state.seen == []  # nothing ever reached the server


async def test_an_allowed_host_is_fetched_and_its_redirects_are_checked_again(
    server: tuple[Server, dict[str, Route]],
) -> None:
    state, routes = server
    routes["/file"] = answer(200, b"the video")
    routes["/moved"] = answer(302, location="/file")
    routes["/to-metadata"] = answer(302, location="http://169.254.169.254/latest/meta-data/")
    routes["/to-other-loopback"] = answer(307, location=f"http://127.0.0.2:{state.port}/file")
    routes["/to-localhost"] = answer(301, location=f"http://localhost:{state.port}/file")
    routes["/loop"] = answer(302, location="/loop")
    rules = allowing(state)
    assert await get(f"http://{state.origin}/file", rules) == b"the video"
    assert await get(f"http://{state.origin}/moved", rules) == b"the video"
    for path in ("/to-metadata", "/to-other-loopback", "/to-localhost"):
        error = await refused(f"http://{state.origin}{path}", rules)
        assert error.code == "url_not_allowed", (path, error.message)
    assert (await refused(f"http://{state.origin}/loop", rules)).code == "too_many_redirects"
    # https only: a redirect to plain http is refused when http is not allowed (here for a second, public hop).
    strict = OutboundRules(allowed_hosts=(state.origin,))
    with pytest.raises(OutboundError, match="only https"):
        strict.check_url("http://example.org/file")


async def test_size_and_time_are_bounded(server: tuple[Server, dict[str, Route]]) -> None:
    state, routes = server

    async def announced_big(writer: asyncio.StreamWriter, _: str) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 50000000\r\n\r\n" + b"x" * 1000)

    async def chunked_big(writer: asyncio.StreamWriter, _: str) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _chunk in range(20):
            writer.write(b"400\r\n" + b"x" * 1024 + b"\r\n")
        writer.write(b"0\r\n\r\n")

    async def slow(writer: asyncio.StreamWriter, _: str) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nxx")
        await writer.drain()
        await asyncio.sleep(30)  # the server dawdles: the client's bound is what ends the fetch

    routes.update({"/big": announced_big, "/chunked": chunked_big, "/slow": slow})
    rules = allowing(state)
    assert (await refused(f"http://{state.origin}/big", rules, max_bytes=10_000)).code == "too_large"
    assert (await refused(f"http://{state.origin}/chunked", rules, max_bytes=10_000)).code == "too_large"
    started = time.monotonic()
    assert (await refused(f"http://{state.origin}/slow", rules, time_limit=0.5)).code == "fetch_timeout"
    assert time.monotonic() - started < 3


def test_public_addresses() -> None:
    private = ["127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.0.1", "169.254.169.254", "100.64.0.1", "0.0.0.0"]
    private += ["224.0.0.1", "::1", "fc00::1", "fe80::1", "::ffff:10.0.0.1", "2002:a00:1::", "::"]
    assert [a for a in private if is_public(ipaddress.ip_address(a))] == []
    assert all(is_public(ipaddress.ip_address(a)) for a in ("93.184.216.34", "2606:4700::1111", "8.8.8.8"))


def test_rules_from_the_environment() -> None:
    rules = OutboundRules.from_env(
        Env({"OUTBOUND_ALLOW_HTTP": "true", "OUTBOUND_ALLOWED_HOSTS": "simulator:8002, 10.9.0.0/16,Sim.Local"})
    )
    assert rules.allow_http and rules.allowed_hosts == ("simulator:8002", "sim.local")
    assert rules.permits("simulator", 8002, ipaddress.ip_address("172.18.0.5"))
    assert not rules.permits("simulator", 8003, ipaddress.ip_address("172.18.0.5"))
    assert rules.permits("anything", 80, ipaddress.ip_address("10.9.1.2"))
    assert OutboundRules.from_env(Env({})) == OutboundRules()
    assert isinstance(client(OutboundRules()), httpx.AsyncClient)


async def test_a_post_follows_only_the_redirects_that_keep_it_a_post(server: tuple[Server, dict[str, Route]]) -> None:
    """A webhook's POST: a 307 or 308 is followed (checked again, method and body kept); a 302 would turn it into a
    GET, so it is the answer."""
    state, routes = server
    routes["/hook"] = answer(204)
    routes["/kept"] = answer(307, location="/hook")
    routes["/changed"] = answer(302, location="/hook")
    routes["/to-metadata"] = answer(308, location="http://169.254.169.254/latest/meta-data/")
    outbound = Outbound(allowing(state))
    try:
        for path, status in (("/kept", 204), ("/changed", 302)):
            async with outbound.send("POST", f"http://{state.origin}{path}", content=b"{}") as response:
                assert response.status_code == status, path
        with pytest.raises(OutboundError, match="not public"):
            async with outbound.send("POST", f"http://{state.origin}/to-metadata", content=b"{}"):
                pass
    finally:
        await outbound.aclose()
    assert state.seen[:3] == ["POST /kept HTTP/1.1", "POST /hook HTTP/1.1", "POST /changed HTTP/1.1"]


def test_a_destination_kept_for_later_is_refused_by_its_form_and_its_literal_address() -> None:
    rules = OutboundRules()
    for url in ("http://hooks.example/", "https://10.0.0.1/", "https://[fe80::1]/", "https://localhost:8443/", "x"):
        with pytest.raises(OutboundError):
            rules.check_destination(url)
    # A name is resolved only when connecting (each time): accepted here.
    rules.check_destination("https://hooks.example/in")
    rules.check_destination("https://93.184.216.34/in")
    allowed = OutboundRules.from_env(Env({"HOOKS_ALLOW_HTTP": "1", "HOOKS_ALLOWED_HOSTS": "127.0.0.1:9"}), "HOOKS")
    allowed.check_destination("http://127.0.0.1:9/")
    with pytest.raises(OutboundError):
        allowed.check_destination("http://127.0.0.1:10/")

"""Fetching URLs that come from outside (a provider's media URL, a user's webhook): https only, every redirect checked
again, and never an address inside our own networks unless a setting allows it, with the size and the time bounded.

The address check runs where the connection is made (a network backend under httpx), on the addresses the name
resolves to at that moment, so a name that resolves to a public address when checked and to a private one when
connected (DNS rebinding) is refused as well. TLS still verifies the certificate for the URL's host name.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from .settings import Env, SettingsError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
REDIRECTS = frozenset({301, 302, 303, 307, 308})
# The redirects that keep the method and the body.
KEEPING_REDIRECTS = frozenset({307, 308})


class OutboundError(Exception):
    """A URL we will not fetch, or a fetch that broke its bounds. ``code`` says which: ``url_not_allowed``,
    ``too_many_redirects``, ``too_large`` or ``fetch_timeout``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class OutboundRules:
    """Which outside URLs may be fetched. By default only https to public addresses; the local stack and the tests
    allow their simulator (``OUTBOUND_ALLOW_HTTP``, ``OUTBOUND_ALLOWED_HOSTS``)."""

    allow_http: bool = False
    # host or host:port (as written in URLs), or networks (CIDR): reachable even when private or loopback.
    allowed_hosts: tuple[str, ...] = ()
    allowed_networks: tuple[Network, ...] = ()
    max_redirects: int = 5
    # The longest one fetch may take, its whole body included (a large video over a slow link).
    max_fetch_seconds: float = 900.0

    @classmethod
    def from_env(cls, env: Env, prefix: str = "OUTBOUND", defaults: OutboundRules | None = None) -> OutboundRules:
        """The rules from ``<prefix>_ALLOW_HTTP``, ``_ALLOWED_HOSTS``, ``_MAX_REDIRECTS`` and ``_MAX_FETCH_SECONDS``;
        unset ones keep ``defaults``'."""
        base = defaults or cls()
        hosts, networks = list(base.allowed_hosts), list(base.allowed_networks)
        allowed = env.optional(f"{prefix}_ALLOWED_HOSTS")
        if allowed is not None:
            hosts, networks = [], []
            for item in filter(None, (part.strip() for part in allowed.split(","))):
                try:
                    networks.append(ipaddress.ip_network(item, strict=False))
                except ValueError:
                    hosts.append(item.lower())
        rules = cls(
            allow_http=env.get_bool(f"{prefix}_ALLOW_HTTP", base.allow_http),
            allowed_hosts=tuple(hosts),
            allowed_networks=tuple(networks),
            max_redirects=env.get_int(f"{prefix}_MAX_REDIRECTS", base.max_redirects, minimum=0),
            max_fetch_seconds=env.get_float(f"{prefix}_MAX_FETCH_SECONDS", base.max_fetch_seconds),
        )
        if rules.max_fetch_seconds <= 0:
            raise SettingsError(f"{prefix}_MAX_FETCH_SECONDS must be positive")
        return rules

    def check_url(self, url: str) -> None:
        """Refuses a URL by its form: scheme, host, credentials. Addresses are checked when connecting."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise OutboundError("url_not_allowed", "not a valid URL") from None
        if port == 0:
            raise OutboundError("url_not_allowed", "not a valid URL")
        if parts.scheme != "https" and not (parts.scheme == "http" and self.allow_http):
            raise OutboundError("url_not_allowed", f"only https URLs are fetched, not {parts.scheme or 'no'} scheme")
        if not parts.hostname:
            raise OutboundError("url_not_allowed", "the URL names no host")
        if parts.username or parts.password:
            raise OutboundError("url_not_allowed", "URLs with credentials are not fetched")

    def check_destination(self, url: str) -> None:
        """``check_url``, and for a host written as an address (or ``localhost``) the address check as well: what can
        be refused before any name is resolved, for a URL kept to be fetched later (a webhook's). Names are checked
        again where each connection is made."""
        self.check_url(url)
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            address: Address = ipaddress.ip_address(host)
        except ValueError:
            if host != "localhost" and not host.endswith(".localhost"):
                return
            address = ipaddress.ip_address("127.0.0.1")
        if not self.permits(host, port, address):
            raise OutboundError("url_not_allowed", f"{host} is not a public address")

    def permits(self, host: str, port: int, address: Address) -> bool:
        host = host.lower().strip("[]")
        if host in self.allowed_hosts or f"{host}:{port}" in self.allowed_hosts:
            return True
        if any(address in network for network in self.allowed_networks):
            return True
        return is_public(address)


def is_public(address: Address) -> bool:
    """Globally routable: not loopback, private, link-local (cloud metadata at 169.254.169.254 included), shared
    (100.64/10), multicast, reserved or unspecified; an IPv4 address inside IPv6 is judged as IPv4."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if mapped is not None:
            return is_public(mapped)
    return address.is_global and not address.is_multicast


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses the rules permit: every address the name resolves to must be permitted."""

    def __init__(self, rules: OutboundRules) -> None:
        self._rules = rules
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in found))
        refused = [a for a in addresses if not self._rules.permits(host, port, a)]
        if refused or not addresses:
            raise OutboundError(
                "url_not_allowed", f"{host} resolves to {refused[0] if refused else 'nothing'}, which is not public"
            )
        return await self._backend.connect_tcp(str(addresses[0]), port, timeout, local_address, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise OutboundError("url_not_allowed", "unix sockets are not fetched")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class _CheckedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, rules: OutboundRules, limits: httpx.Limits) -> None:
        super().__init__(trust_env=False, limits=limits)
        # The pool httpx builds, with our backend: httpx has no parameter for it.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl.create_default_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_CheckedBackend(rules),
        )


def client(rules: OutboundRules, limits: httpx.Limits | None = None) -> httpx.AsyncClient:
    """The client for outside URLs. No proxy from the environment: a proxy would make the connection for us."""
    limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
    return httpx.AsyncClient(transport=_CheckedTransport(rules, limits), follow_redirects=False, trust_env=False)


class Outbound:
    """A process's way out to outside URLs: its rules and one client that keeps to them, made on first use."""

    def __init__(self, rules: OutboundRules, limits: httpx.Limits | None = None) -> None:
        self.rules = rules
        self._limits = limits
        self._http: httpx.AsyncClient | None = None

    def fetch(
        self, url: str, *, step_seconds: float | None = None
    ) -> contextlib.AbstractAsyncContextManager[httpx.Response]:
        """:func:`fetch` with this client and these rules, within the rules' ``max_fetch_seconds``."""
        return self.send("GET", url, step_seconds=step_seconds)

    def send(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        step_seconds: float | None = None,
    ) -> contextlib.AbstractAsyncContextManager[httpx.Response]:
        """:func:`send` with this client and these rules, within the rules' ``max_fetch_seconds``."""
        if self._http is None:
            self._http = client(self.rules, self._limits)
        return send(
            self._http,
            method,
            url,
            self.rules,
            content=content,
            headers=headers,
            time_limit=self.rules.max_fetch_seconds,
            step_seconds=step_seconds,
        )

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


def fetch(
    http: httpx.AsyncClient, url: str, rules: OutboundRules, *, time_limit: float, step_seconds: float | None = None
) -> contextlib.AbstractAsyncContextManager[httpx.Response]:
    """GET ``url``: :func:`send` without a body."""
    return send(http, "GET", url, rules, time_limit=time_limit, step_seconds=step_seconds)


@contextlib.asynccontextmanager
async def send(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    rules: OutboundRules,
    *,
    time_limit: float,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    step_seconds: float | None = None,
) -> AsyncIterator[httpx.Response]:
    """Send ``method`` to ``url`` (with a client from :func:`client`), following redirects one by one, each checked
    like the first, and yield the final response with its body unread (read it with :func:`read_bounded`). A GET
    follows every redirect; another method only those that keep the method and the body (307, 308), as any other
    would turn it into a GET. The whole exchange, body included, must end within ``time_limit`` seconds, and each
    step (connect, each read) within ``step_seconds`` when given; raises OutboundError, or httpx errors when the
    server fails."""
    step = (
        httpx.USE_CLIENT_DEFAULT if step_seconds is None else httpx.Timeout(step_seconds, connect=min(step_seconds, 10))
    )
    followed = REDIRECTS if method == "GET" else KEEPING_REDIRECTS
    try:
        async with asyncio.timeout(time_limit):
            for _ in range(rules.max_redirects + 1):
                rules.check_url(url)
                request = http.build_request(method, url, content=content, headers=headers, timeout=step)
                response = await http.send(request, stream=True)
                location = response.headers.get("location")
                if response.status_code not in followed or location is None:
                    try:
                        yield response
                    finally:
                        await response.aclose()
                    return
                await response.aclose()
                url = urljoin(url, location)
            raise OutboundError("too_many_redirects", f"more than {rules.max_redirects} redirects")
    except TimeoutError:
        raise OutboundError("fetch_timeout", f"the request took longer than {time_limit:g} s") from None


async def read_bounded(response: httpx.Response, max_bytes: int) -> AsyncIterator[bytes]:
    """The body in chunks; OutboundError(too_large) once it exceeds ``max_bytes`` (also when the server
    announces more)."""
    announced = response.headers.get("content-length", "")
    if announced.isdigit() and int(announced) > max_bytes:
        raise OutboundError("too_large", f"the body is {announced} bytes, more than {max_bytes}")
    received = 0
    async for chunk in response.aiter_bytes():
        received += len(chunk)
        if received > max_bytes:
            raise OutboundError("too_large", f"the body is more than {max_bytes} bytes")
        yield chunk

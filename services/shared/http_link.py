"""One kept-alive HTTP/1.1 connection for JSON POSTs to one of our own services, one request at a time, and a pool
of them for callers with many requests in flight (the workers' reports, the benchmark clients).

A general-purpose client (httpx) spent more of main's CPU on each publish to communication than main spent
handling the report that caused it, and on 2 cores it took the benchmark clients' share of the CPU they measure.
These callers need only a POST with a JSON body and the answer back, so this writes the request itself and reads
the response with httptools' parser.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from urllib.parse import urlsplit

import httptools


class LinkError(Exception):
    """The request may not have been handled: the connection failed, timed out, or the answer was garbled."""


class _Response:
    """httptools callbacks: the body, whether the whole message has arrived, and whether the connection stays
    open."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.body = bytearray()
        self.complete = False
        self.keep_alive = False

    def on_body(self, data: bytes) -> None:
        self.body += data

    def on_message_complete(self) -> None:
        # Asked here: once this callback returns, the parser has reset and always answers False.
        self.keep_alive = self.parser.should_keep_alive()
        self.complete = True


class HttpLink:
    def __init__(self, base_url: str, token: str, timeout: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base URL must be http(s)://host[:port], got {base_url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._prefix = parts.path.rstrip("/")
        self._headers = (
            f"Host: {parts.netloc}\r\n"
            f"Authorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\n"
            "Accept: application/json\r\n"
        ).encode()
        self._timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.connections_opened = 0

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """POST ``body`` as JSON to ``path``; the response's status code and body. Raises ``LinkError``."""
        request = b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s" % (
            (self._prefix + path).encode(),
            self._headers,
            len(body),
            body,
        )
        # A kept-alive connection that the server closed while idle fails before anything was handled: that
        # one failure is retried at once on a new connection.
        reused = self._reader is not None and not self._reader.at_eof()
        try:
            return await self._exchange(request)
        except LinkError:
            if not reused:
                raise
        return await self._exchange(request)

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        try:
            async with asyncio.timeout(self._timeout):
                reader, writer = await self._connection()
                writer.write(request)
                await writer.drain()
                response = _Response()
                while not response.complete:
                    data = await reader.read(65_536)
                    if not data:
                        raise LinkError("the server closed the connection")
                    response.parser.feed_data(data)
                status: int = response.parser.get_status_code()
                if not response.keep_alive:
                    await self.close()
                return status, bytes(response.body)
        except (OSError, TimeoutError, httptools.HttpParserError) as exc:
            await self.close()
            raise LinkError(f"{type(exc).__name__}: {exc}") from exc
        except LinkError:
            await self.close()
            raise

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None or self._reader.at_eof():
            await self.close()
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port, ssl=self._ssl)
            self.connections_opened += 1
        return self._reader, self._writer

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class HttpLinkPool:
    """Up to ``size`` ``HttpLink``s to one service, so that up to ``size`` requests are in flight at once; a request
    waits while every link is busy. A request takes the link used most recently, so a light load keeps reusing one
    warm connection instead of cycling through connections the server may have closed as idle. Links connect on
    first use: a large pool costs nothing until the load needs it."""

    def __init__(self, base_url: str, token: str, size: int, timeout: float) -> None:
        if size < 1:
            raise ValueError(f"a pool needs at least one link, got {size}")
        self._links = [HttpLink(base_url, token, timeout) for _ in range(size)]
        self._idle: asyncio.LifoQueue[HttpLink] = asyncio.LifoQueue()
        for link in reversed(self._links):
            self._idle.put_nowait(link)

    @property
    def connections_opened(self) -> int:
        return sum(link.connections_opened for link in self._links)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """``HttpLink.post`` on a free link. Raises ``LinkError``."""
        link = await self._idle.get()
        try:
            return await link.post(path, body)
        finally:
            self._idle.put_nowait(link)

    async def close(self) -> None:
        for link in self._links:
            await link.close()

"""HTTP/1.1 requests written by hand over kept-alive connections, for benchmark clients. A general-purpose client
(httpx) costs more CPU per request than the servers being measured, and the clients share the machine's cores
with them."""

from __future__ import annotations

import asyncio


def post_bytes(host: str, port: int, path: str, token: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The status and body of one response with a Content-Length (what our services send)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
        elif name.strip().lower() == "transfer-encoding":
            raise RuntimeError("chunked responses are not supported by this client")
    return status, await reader.readexactly(length)


class Connection:
    """One kept-alive connection; one request at a time."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port, self.token = host, port, token
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        writer.write(post_bytes(self.host, self.port, path, self.token, body))
        return await read_response(reader)

    async def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None

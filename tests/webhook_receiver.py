"""A webhook receiver for tests: a real HTTP server on a given port that verifies what it accepts with the
``standardwebhooks`` package, an implementation of the specification independent of ours."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def webhook_env(port: int, max_attempts: int = 40) -> dict[str, str]:
    """main's webhook settings for a test stack: plain http to a receiver on 127.0.0.1:``port``, and a retry schedule
    of seconds (0.3 s doubling to at most 1.5 s; with 40 attempts about a minute)."""
    return {
        "MAIN_WEBHOOK_ALLOW_HTTP": "true",
        "MAIN_WEBHOOK_ALLOWED_HOSTS": f"127.0.0.1:{port}",
        "MAIN_WEBHOOK_RETRY_INITIAL_SECONDS": "0.3",
        "MAIN_WEBHOOK_RETRY_MAX_SECONDS": "1.5",
        "MAIN_WEBHOOK_MAX_ATTEMPTS": str(max_attempts),
        "MAIN_WEBHOOK_START_POLL_MS": "200",
    }


# Paths that always answer the same.
FIXED = {"/gone": 410, "/fail": 500}
# The attempts of one message that /flaky fails.
FLAKY_FAILURES = 2


@dataclass
class Delivery:
    """A request the receiver accepted (2xx) after it verified: its webhook id, event and body."""

    message_id: str
    event: str
    task: dict[str, Any]
    signatures: int


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1:``port``: it answers each request with the next of ``answers`` (2xx when none
    are left), except on ``/gone`` (always 410), ``/fail`` (always 500) and ``/flaky`` (500 to a message's first two
    attempts), and keeps what it accepted after verifying it with ``secrets`` (any of them). ``requests``: every
    request's webhook id, in order; ``paths``: the path of each."""

    port: int
    secrets: list[str] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    accepted: list[Delivery] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    _server: asyncio.Server | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def of(self, task_id: str) -> list[Delivery]:
        return [d for d in self.accepted if d.task["id"] == task_id]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            request_line, *lines = head.split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            path = request_line.split(" ")[1]
            message_id = headers.get("webhook-id", "")
            self.requests.append(message_id)
            self.paths.append(path)
            status = self._answer(path, message_id)
            if 200 <= status < 300:
                status = self._accept(headers, body)
            writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode())
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def _answer(self, path: str, message_id: str) -> int:
        if path in FIXED:
            return FIXED[path]
        if path == "/flaky" and self.requests.count(message_id) <= FLAKY_FAILURES:
            return 500
        return self.answers.pop(0) if self.answers else 200

    def _accept(self, headers: dict[str, str], body: bytes) -> int:
        for secret in self.secrets:
            with contextlib.suppress(WebhookVerificationError):
                Webhook(secret).verify(body, headers, json_parse=False)
                break
        else:
            self.refused.append(headers.get("webhook-id", ""))
            return 401
        signatures = len(headers["webhook-signature"].split(" "))
        self.accepted.append(Delivery(headers["webhook-id"], headers["webhook-event"], json.loads(body), signatures))
        return 204

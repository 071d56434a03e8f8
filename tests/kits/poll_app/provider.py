"""The provider's client, and the provider itself: its API in process (through httpx's mock transport), its result
links on a port of 127.0.0.1 (``serving``), where the copy fetches them through the outbound rules, as it would
fetch a real provider's."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import msgspec
from litestar import Litestar, Response, get
from litestar.params import FromPath

from services.shared.outbound import OutboundRules
from services.shared.provider_client import ProviderError, ProviderHttp, is_transient, retry_after, said
from tests.stack import serve

from .schemas import ProviderJob

BASE = "http://acme.test"
# What the activities' outbound rules allow: the result links' server, plain http on 127.0.0.1.
LINKS = OutboundRules(allow_http=True, allowed_hosts=("127.0.0.1",))


def http_error(response: httpx.Response) -> ProviderError:
    status, wait = response.status_code, retry_after(response)
    retryable = is_transient(status)
    return ProviderError(f"http_{status}", said(response), retryable=retryable, status=status, retry_after=wait)


class _Created(msgspec.Struct):
    id: str


class _Link(msgspec.Struct):
    url: str


class Client:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = ProviderHttp(http, "Acme", http_error, uncertain="acme_submit_uncertain", media="acme_media")

    async def create(self, prompt: str, idempotency_key: str | None, callback_url: str | None) -> str:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        response = await self.http.submit(
            "POST",
            f"{BASE}/jobs",
            timeout_seconds=30,
            idempotent=idempotency_key is not None,
            json={"prompt": prompt, "callback_url": callback_url},
            headers=headers,
        )
        return msgspec.json.decode(response.content, type=_Created).id

    async def get(self, job_id: str) -> ProviderJob:
        response = await self.http.send("GET", f"{BASE}/jobs/{job_id}", timeout_seconds=10)
        return msgspec.json.decode(response.content, type=ProviderJob)

    async def delete(self, job_id: str) -> None:
        await self.http.send("DELETE", f"{BASE}/jobs/{job_id}", timeout_seconds=10)

    async def link(self, job_id: str) -> str:
        """The result's download link; it expires, so it is asked for right before the download."""
        response = await self.http.send("GET", f"{BASE}/jobs/{job_id}/link", timeout_seconds=10)
        return msgspec.json.decode(response.content, type=_Link).url


@dataclass
class Provider:
    """``submits``: what each POST /jobs does, in order: ``ok``; ``lost`` (created, but the answer never comes:
    the client times out reading it); ``slow`` (created, answered after 3 s); ``429``. Then ``ok``. A job is
    ``working`` until ``finish``, or until it has been read ``done_after`` times; ``broken_links``: how many
    downloads fail before one succeeds; ``link_to``: a URL handed out instead of its own links."""

    submits: list[str] = field(default_factory=list[str])
    done_after: int | None = None
    reads: int = 0
    jobs: dict[str, str] = field(default_factory=dict[str, str])
    keys: dict[str, str] = field(default_factory=dict[str, str])
    posts: int = 0
    deleted: list[str] = field(default_factory=list[str])
    callback_urls: dict[str, str | None] = field(default_factory=dict[str, str | None])
    links: list[str] = field(default_factory=list[str])
    broken_links: int = 0
    link_to: str | None = None
    # Where the result links are served (``serving``).
    files_url: str = "http://127.0.0.1:9"

    def client(self) -> Client:
        return Client(httpx.AsyncClient(transport=httpx.MockTransport(self.answer)))

    def finish(self, state: str = "done") -> None:
        for job_id in self.jobs:
            self.jobs[job_id] = state

    async def answer(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST":
            self.posts += 1
            step = self.submits.pop(0) if self.submits else "ok"
            key = request.headers.get("idempotency-key")
            job_id = self.keys.get(key) if key else None
            if job_id is None and step != "429":
                job_id = f"job-{uuid.uuid4().hex[:8]}"
                self.jobs[job_id] = "working"
                self.callback_urls[job_id] = msgspec.json.decode(request.content)["callback_url"]
                if key:
                    self.keys[key] = job_id
            if step == "lost":
                raise httpx.ReadTimeout("no answer", request=request)
            if step == "slow":
                await asyncio.sleep(3)
            if step == "429":
                return httpx.Response(429, text="slow down", headers={"Retry-After": "3"})
            return httpx.Response(200, json={"id": job_id})
        job_id = path.split("/")[2]
        if path.endswith("/link"):
            self.links.append(self.link_to or f"{self.files_url}/jobs/{job_id}?token={len(self.links)}")
            return httpx.Response(200, json={"url": self.links[-1]})
        if request.method == "DELETE":
            self.deleted.append(job_id)
            self.jobs[job_id] = "killed"
            return httpx.Response(204)
        self.reads += 1
        if self.done_after is not None and self.reads >= self.done_after and self.jobs[job_id] == "working":
            self.jobs[job_id] = "done"
        return httpx.Response(200, json={"id": job_id, "state": self.jobs[job_id]})

    def files(self) -> Litestar:
        @get("/jobs/{job_id:str}")
        async def download(job_id: FromPath[str]) -> Response[bytes]:
            if self.broken_links:
                self.broken_links -= 1
                return Response(b"try again", status_code=503)
            return Response(f"result of {job_id}".encode(), media_type="text/plain")

        return Litestar([download])

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """The result links, served while inside."""
        async with serve(self.files()) as url:
            self.files_url = url
            yield

"""The provider's client, and the provider itself (in process, through httpx's mock transport)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

import httpx
import msgspec

from services.shared.provider_client import ProviderError, ProviderHttp, is_transient, retry_after, said

from .schemas import ProviderJob

BASE = "http://acme.test"


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
    downloads fail before one succeeds."""

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
        if request.url.host == "files.test":
            if self.broken_links:
                self.broken_links -= 1
                return httpx.Response(503, text="try again")
            return httpx.Response(200, content=f"result of {job_id}".encode())
        if path.endswith("/link"):
            self.links.append(f"http://files.test/jobs/{job_id}?token={len(self.links)}")
            return httpx.Response(200, json={"url": self.links[-1]})
        if request.method == "DELETE":
            self.deleted.append(job_id)
            self.jobs[job_id] = "killed"
            return httpx.Response(204)
        self.reads += 1
        if self.done_after is not None and self.reads >= self.done_after and self.jobs[job_id] == "working":
            self.jobs[job_id] = "done"
        return httpx.Response(200, json={"id": job_id, "state": self.jobs[job_id]})

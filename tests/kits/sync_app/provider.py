"""The provider's client, and the provider itself as a script of answers served through httpx's mock transport."""

from __future__ import annotations

import asyncio
import base64

import httpx
import msgspec

from services.shared.provider_client import ProviderError, ProviderHttp, is_transient, retry_after, said

# The envelope's codes: 0 is success; these are final; any other is worth retrying.
FINAL_CODES = {1001: "content_rejected", 1002: "provider_auth"}


class _Envelope(msgspec.Struct, frozen=True):
    code: int
    message: str = ""
    data: dict[str, str] | None = None


class Generated(msgspec.Struct, frozen=True):
    data: bytes
    model: str


def http_error(response: httpx.Response) -> ProviderError:
    status = response.status_code
    code = "provider_unavailable" if is_transient(status) else "provider_rejected"
    return ProviderError(
        code, f"HTTP {status} {said(response)}", retryable=is_transient(status), retry_after=retry_after(response)
    )


class Client:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = ProviderHttp(http, "Acme", http_error)

    async def generate(self, prompt: str) -> Generated:
        response = await self._http.send("POST", "http://acme.test/generate", timeout_seconds=30, json={"p": prompt})
        envelope = msgspec.json.decode(response.content, type=_Envelope)
        if envelope.code != 0:
            # An error inside a 200 answer: the envelope's code says whether it is final.
            final = FINAL_CODES.get(envelope.code)
            message = f"Acme said {envelope.code}: {envelope.message}"
            raise ProviderError(final or "provider_unavailable", message, retryable=final is None, status=200)
        assert envelope.data is not None
        return Generated(base64.b64decode(envelope.data["text"]), envelope.data["model"])


class Provider:
    """Answers each request with the next of ``script`` (an HTTP status below 1000, an envelope code from 1000, or
    (status, Retry-After)), then succeeds.
    ``hold``: requests wait until it is cleared."""

    def __init__(self, *script: int | tuple[int, str]) -> None:
        self.script = list(script)
        self.prompts: list[str] = []
        self.hold: asyncio.Event | None = None

    def client(self) -> Client:
        return Client(httpx.AsyncClient(transport=httpx.MockTransport(self.answer)))

    async def answer(self, request: httpx.Request) -> httpx.Response:
        self.prompts.append(msgspec.json.decode(request.content)["p"])
        if self.hold is not None:
            await self.hold.wait()
        step = self.script.pop(0) if self.script else 0
        if isinstance(step, tuple):
            status, wait = step
            return httpx.Response(status, text="busy", headers={"Retry-After": wait})
        if 400 <= step < 1000:
            return httpx.Response(step, text="unavailable")
        if step:
            return httpx.Response(200, json={"code": step, "message": "not now" if step not in FINAL_CODES else "no"})
        text = base64.b64encode(f"made: {self.prompts[-1]}".encode()).decode()
        return httpx.Response(200, json={"code": 0, "data": {"text": text, "model": "acme-1"}})

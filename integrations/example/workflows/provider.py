"""Typed client for the provider's one slow call, and the worker's provider settings. Used only by the activities.

Scaffold contract (replace it with the real provider's): ``POST {base}/v1/generate`` with ``{"prompt": ...}``
and ``Authorization: Bearer <key>`` answers ``{"content_type": ..., "data": <base64>, "model": ...}``; errors
are ``{"error": {"code", "message"}}``. Every failure is a ``ProviderError``: ``provider_auth`` (401, 403) and
``provider_rejected`` (other 4xx) are final, ``provider_unavailable`` (408, 429, 5xx, timeouts, connection
errors, malformed answers) is worth retrying.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

import httpx
import msgspec

from services.shared.provider_client import (
    ProviderError,
    ProviderHttp,
    error_envelope,
    is_transient,
    retry_after,
    said,
)
from services.shared.settings import Env, SettingsError


@dataclass(frozen=True)
class ProviderSettings:
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    # Bound on one call; slow providers can take minutes.
    timeout_seconds: float = 300.0

    @classmethod
    def from_env(cls, env: Env) -> ProviderSettings:
        """The worker's settings:
        EXAMPLE_BASE_URL (required),
        EXAMPLE_API_KEY (sent as a Bearer token when set),
        EXAMPLE_TIMEOUT_SECONDS (one call)."""
        name = "EXAMPLE_TIMEOUT_SECONDS"
        timeout = env.get_float(name, cls.timeout_seconds)
        if timeout <= 0:
            raise SettingsError(f"{name} must be positive, got {timeout:g}")
        return cls(env.get("EXAMPLE_BASE_URL").rstrip("/"), env.optional("EXAMPLE_API_KEY"), timeout)


class _Generated(msgspec.Struct, frozen=True):
    content_type: str
    data: str
    model: str | None = None


class Generated(msgspec.Struct, frozen=True):
    data: bytes
    content_type: str
    model: str | None


def http_error(response: httpx.Response) -> ProviderError:
    """A non-2xx answer, keeping the provider's own code and message."""
    status = response.status_code
    code, words = error_envelope(response)
    message = f"the provider answered HTTP {status} " + (f"{code}: {words}" if code else said(response))
    if status in (401, 403):
        return ProviderError("provider_auth", message, retryable=False, status=status)
    if not is_transient(status):
        return ProviderError("provider_rejected", message, retryable=False, status=status)
    return ProviderError("provider_unavailable", message, retryable=True, retry_after=retry_after(response))


class ProviderClient:
    def __init__(self, http: httpx.AsyncClient, settings: ProviderSettings) -> None:
        self._http = ProviderHttp(http, "the provider", http_error)
        self._settings = settings

    async def generate(self, prompt: str) -> Generated:
        key = self._settings.api_key
        response = await self._http.send(
            "POST",
            f"{self._settings.base_url}/v1/generate",
            timeout_seconds=self._settings.timeout_seconds,
            json={"prompt": prompt},
            headers={"Authorization": f"Bearer {key}"} if key else {},
        )
        try:
            body = msgspec.json.decode(response.content, type=_Generated)
            return Generated(base64.b64decode(body.data, validate=True), body.content_type, body.model)
        except (msgspec.DecodeError, msgspec.ValidationError, binascii.Error, ValueError) as exc:
            raise self._http.unavailable(f"the provider sent a malformed answer: {exc}") from exc

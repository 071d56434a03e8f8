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
from dataclasses import dataclass

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
from services.shared.settings import Env, ProviderEndpoint, SettingsError

TIMEOUT_VARIABLE = "EXAMPLE_TIMEOUT_SECONDS"


@dataclass(frozen=True)
class ProviderSettings:
    """The worker's settings. The provider's address and key come from the variables the manifest declares
    (``provider``: ``ProviderEndpoint``):
    EXAMPLE_BASE_URL,
    EXAMPLE_API_KEY;
    and TIMEOUT_VARIABLE bounds one call."""

    endpoint: ProviderEndpoint
    # Bound on one call; slow providers can take minutes.
    timeout_seconds: float = 300.0

    @classmethod
    def from_env(cls, env: Env, endpoint: ProviderEndpoint) -> ProviderSettings:
        return cls(endpoint, env.get_float(TIMEOUT_VARIABLE, cls.timeout_seconds))

    def __post_init__(self) -> None:
        if self.timeout_seconds <= 0:
            raise SettingsError(f"{TIMEOUT_VARIABLE} must be positive, got {self.timeout_seconds:g}")


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
        endpoint = self._settings.endpoint
        response = await self._http.send(
            "POST",
            f"{endpoint.base_url}/v1/generate",
            timeout_seconds=self._settings.timeout_seconds,
            json={"prompt": prompt},
            headers={"Authorization": f"Bearer {endpoint.api_key}"},
        )
        try:
            body = msgspec.json.decode(response.content, type=_Generated)
            return Generated(base64.b64decode(body.data, validate=True), body.content_type, body.model)
        except (msgspec.DecodeError, msgspec.ValidationError, binascii.Error, ValueError) as exc:
            raise self._http.unavailable(f"the provider sent a malformed answer: {exc}") from exc

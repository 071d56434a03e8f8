"""What every typed provider client is built from: one error type and the HTTP calls it comes from.

Provider clients know nothing about Temporal. Every failure is a ``ProviderError`` whose ``code`` becomes the
task's error code and whose ``retryable`` says whether trying again can help; the activity kit turns it into
the ``ApplicationError`` a workflow's retry policy acts on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import IO, Any, TypeVar

import httpx
import msgspec

from .outbound import Outbound, OutboundError, read_bounded

T = TypeVar("T")

_MAX_MESSAGE = 500


class ProviderError(Exception):
    """A failed provider call. ``retry_after``: seconds the provider asked us to wait before trying again."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


def is_transient(status: int) -> bool:
    """Whether an HTTP status may turn out differently later: a timeout, a rate limit, a server error."""
    return status in (408, 429) or status >= 500


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds, when the provider sent one."""
    raw = response.headers.get("retry-after")
    if raw is not None:
        with contextlib.suppress(ValueError):
            return max(0.0, float(raw))
    return None


class ErrorDetail(msgspec.Struct):
    """The ``{"code": ..., "message": ...}`` many providers use for an error, in error answers and in job views."""

    code: str = ""
    message: str = ""


class _ErrorBody(msgspec.Struct):
    error: ErrorDetail | None = None


def error_envelope(response: httpx.Response) -> tuple[str, str]:
    """The code and message of the common JSON error body, ``{"error": {"code": ..., "message": ...}}``; empty
    strings for what the answer does not carry."""
    try:
        error = msgspec.json.decode(response.content, type=_ErrorBody).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        error = None
    return (error.code, error.message) if error is not None else ("", "")


def envelope_error(response: httpx.Response) -> ProviderError:
    """A non-2xx answer that carries the common error body: the provider's own code (else ``http_<status>``) and
    message; retryable when the status is transient, after the provider's ``Retry-After``."""
    status = response.status_code
    code, message = error_envelope(response)
    return ProviderError(
        code or f"http_{status}",
        message or said(response),
        retryable=is_transient(status),
        status=status,
        retry_after=retry_after(response),
    )


def said(response: httpx.Response) -> str:
    """The start of an answer's body, for a message when the provider's error format is unknown."""
    return response.text[:_MAX_MESSAGE].strip() or response.reason_phrase


class ProviderHttp:
    """One provider's HTTP calls with their failures as ``ProviderError``: ``error`` maps a non-2xx answer,
    ``unavailable`` is the code of a transport failure, ``uncertain`` that of a submit that may have reached the
    provider, and ``media`` the prefix of download failures (``<media>_unavailable``, ``_unreachable``,
    ``_too_large``, ``_url_not_allowed``, ``_too_many_redirects``, ``_fetch_timeout``)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        label: str,
        error: Callable[[httpx.Response], ProviderError],
        *,
        unavailable: str = "provider_unavailable",
        uncertain: str = "provider_submit_uncertain",
        media: str = "provider_media",
    ) -> None:
        self.http = http
        self.label = label
        self._error = error
        self._unavailable = unavailable
        self._uncertain = uncertain
        self._media = media

    async def send(self, method: str, url: str, *, timeout_seconds: float, **kwargs: Any) -> httpx.Response:
        """A request whose repeat is harmless (a read, a cancel): every transport failure is retryable."""
        try:
            response = await self.http.request(method, url, timeout=_timeout(timeout_seconds), **kwargs)
        except httpx.TimeoutException as exc:
            message = f"no answer from {self.label} within {timeout_seconds:g}s ({type(exc).__name__})"
            raise self.unavailable(message) from exc
        except httpx.TransportError as exc:
            raise self.unavailable(f"could not reach {self.label}: {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            raise self._error(response)
        return response

    async def submit_json(
        self, method: str, url: str, answer: type[T], *, timeout_seconds: float, idempotent: bool = False, **kwargs: Any
    ) -> T:
        """``submit``, and its answer read as ``answer``: an answer that cannot be read is uncertain too."""
        response = await self.submit(method, url, timeout_seconds=timeout_seconds, idempotent=idempotent, **kwargs)
        try:
            return msgspec.json.decode(response.content, type=answer)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise self.uncertain_error(f"{self.label}'s answer could not be read: {exc}", idempotent) from exc

    async def submit(
        self, method: str, url: str, *, timeout_seconds: float, idempotent: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """A request that creates paid work. A retryable failure means the provider certainly created nothing: it
        refused, or the request was never fully sent. Once the request may have reached the provider, a failure
        is ``uncertain`` and final, unless the request carries the provider's idempotency key (``idempotent``):
        then sending it again cannot start a second job."""
        try:
            response = await self.http.request(method, url, timeout=_timeout(timeout_seconds), **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.WriteTimeout) as exc:
            raise self.unavailable(f"could not send the request to {self.label}: {exc!r}") from exc
        except httpx.HTTPError as exc:
            message = f"no answer from {self.label} after sending the request ({exc!r})"
            raise self.uncertain_error(message, idempotent) from exc
        if response.status_code in (502, 504):
            # A gateway answered: the service behind it may still have accepted the job.
            error = self._error(response)
            raise self.uncertain_error(f"HTTP {response.status_code} {error.code}: {error.message}", idempotent)
        if not response.is_success:
            raise self._error(response)
        return response

    def unavailable(self, message: str) -> ProviderError:
        return ProviderError(self._unavailable, message, retryable=True)

    def uncertain_error(self, message: str, idempotent: bool = False) -> ProviderError:
        if idempotent:
            return ProviderError(self._uncertain, f"{message}; retried with the same idempotency key", retryable=True)
        return ProviderError(
            self._uncertain,
            f"{message}; {self.label} may or may not have created the task, so it is not resubmitted automatically",
            retryable=False,
        )

    async def download(
        self,
        outbound: Outbound,
        url: str,
        sink: IO[bytes],
        progress: Callable[[], None],
        *,
        limit: int,
        timeout_seconds: float,
    ) -> int:
        """Stream a media URL the provider handed out into ``sink``, at most ``limit`` bytes; the byte count. The URL
        comes from outside, so it is fetched through ``outbound`` (its rules: https, public addresses, each redirect
        checked, the whole fetch bounded); ``timeout_seconds`` bounds each wait for the next bytes. Such URLs are
        presigned: no credentials are sent with them. An expired or revoked link is final, and so is a URL the
        rules refuse (``<media>_url_not_allowed``, ``_too_many_redirects``)."""
        size = 0
        try:
            async with outbound.fetch(url, step_seconds=timeout_seconds) as response:
                if response.status_code in (401, 403, 404, 410):
                    raise ProviderError(
                        f"{self._media}_unavailable",
                        f"{self.label}'s media link answered HTTP {response.status_code} (expired or revoked)",
                        retryable=False,
                        status=response.status_code,
                    )
                if not response.is_success:
                    raise ProviderError(
                        f"{self._media}_unreachable",
                        f"{self.label}'s media link answered HTTP {response.status_code}",
                        retryable=True,
                        status=response.status_code,
                    )
                async for chunk in read_bounded(response, limit):
                    size += len(chunk)
                    sink.write(chunk)
                    progress()
        except OutboundError as exc:
            # Only a fetch that ran out of time may go better another time.
            retryable = exc.code == "fetch_timeout"
            message = f"{self.label}'s media link: {exc.message}"
            raise ProviderError(f"{self._media}_{exc.code}", message, retryable=retryable) from exc
        except httpx.HTTPError as exc:
            raise ProviderError(
                f"{self._media}_unreachable", f"downloading {self.label}'s media failed: {exc!r}", retryable=True
            ) from exc
        return size


def _timeout(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(seconds, connect=min(seconds, 10.0))

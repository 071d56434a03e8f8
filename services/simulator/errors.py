"""Error answers every stand-in gives: a provider's own error body, and the control API's refusals."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import msgspec
from litestar import Response

JSON_MEDIA_TYPE = "application/json"


def json_response(body: Mapping[str, Any] | list[Any], status: int = 200) -> Response[bytes]:
    return Response(content=msgspec.json.encode(body), status_code=status, media_type=JSON_MEDIA_TYPE)


class ProviderError(Exception):
    """An error answer in the provider's own shape; raised while handling, turned into the response."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body

    def response(self) -> Response[bytes]:
        return json_response(self.body, self.status)


class ErrorShapes(Protocol):
    """How one provider words the errors that request faults produce."""

    def rate_limited(self, code: str | None) -> ProviderError: ...

    def server_error(self, status: int, code: str | None) -> ProviderError: ...

    def timed_out(self) -> ProviderError: ...

    malformed_body: bytes


class ControlError(Exception):
    """A refused ``/_sim`` request (or a media link that does not work); ``detail`` says why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail

    def response(self) -> Response[bytes]:
        return json_response({"detail": self.detail}, self.status)

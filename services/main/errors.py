"""Structured errors: every error response is ``{code, message, retryable}``."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from sqlalchemy.exc import InterfaceError, OperationalError


class ErrorBody(msgspec.Struct, frozen=True, omit_defaults=True):
    code: str
    message: str
    retryable: bool
    details: Any = None


class ApiError(HTTPException):
    """Raised by handlers and services; rendered as the structured body with its status."""

    def __init__(self, status_code: int, code: str, message: str, retryable: bool = False, details: Any = None):
        super().__init__(status_code=status_code, detail=message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.details = details


_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def _describe_validation(exc: ValidationException) -> str:
    problems = exc.extra if isinstance(exc.extra, list) else []
    parts = []
    for problem in problems:
        if isinstance(problem, dict):
            key = problem.get("key")
            message = problem.get("message", "")
            parts.append(f"{key}: {message}" if key else str(message))
    return "; ".join(parts) or str(exc.detail)


def handle_http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    if isinstance(exc, ApiError):
        body = ErrorBody(exc.code, exc.message, exc.retryable, exc.details)
    elif isinstance(exc, ValidationException):
        body = ErrorBody("invalid_input", f"invalid request: {_describe_validation(exc)}", False, exc.extra)
    else:
        code = _CODES.get(exc.status_code, "error" if exc.status_code < 500 else "internal_error")
        body = ErrorBody(code, str(exc.detail), exc.status_code >= 500 or exc.status_code == 429)
    return Response(body, status_code=exc.status_code, headers=exc.headers)


def temporal_unreachable(exc: BaseException) -> bool:
    """Temporal could not be reached by a client that never connected (main started while Temporal was down): the
    SDK's lazy client raises RuntimeError("Failed client connect: ...") then, where a connected one raises RPCError."""
    return isinstance(exc, RuntimeError) and str(exc).startswith("Failed client connect")


def store_unreachable(exc: BaseException) -> bool:
    """The database could not be reached or dropped the connection (restarting, failing over)."""
    return isinstance(exc, OperationalError | InterfaceError | OSError)


def handle_unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    if temporal_unreachable(exc):
        return Response(ErrorBody("temporal_unavailable", "Temporal is unreachable; try again", True), status_code=503)
    if store_unreachable(exc):
        body = ErrorBody("store_unavailable", "the task store is unreachable; try again", True)
        return Response(body, status_code=503)
    return Response(
        ErrorBody("internal_error", f"unexpected server error ({type(exc).__name__})", True),
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
    )


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")

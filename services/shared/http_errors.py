"""Structured HTTP errors for main and communication: every error response is ``{code, message, retryable}``.

Messages never carry a secret: they name what was wrong (a variable, a field, a key), not the value sent.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap

log = logging.getLogger("http")

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "rate_limited",
}


class ErrorBody(msgspec.Struct, frozen=True, omit_defaults=True):
    code: str
    message: str
    retryable: bool
    details: Any = None


class ApiError(HTTPException):
    """Raised by handlers, guards and services; rendered as the structured body with its status."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        retryable: bool = False,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.details = details


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def _describe_validation(exc: ValidationException) -> str:
    problems = exc.extra if isinstance(exc.extra, list) else []
    parts = []
    for problem in problems:
        if isinstance(problem, dict):
            key, message = problem.get("key"), problem.get("message", "")
            parts.append(f"{key}: {message}" if key else str(message))
    return "; ".join(parts) or str(exc.detail)


def handle_http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    if isinstance(exc, ApiError):
        body = ErrorBody(exc.code, exc.message, exc.retryable, exc.details)
    elif isinstance(exc, ValidationException):
        body = ErrorBody("invalid_input", f"invalid request: {_describe_validation(exc)}", False, exc.extra)
    else:
        code = CODES.get(exc.status_code, "error" if exc.status_code < 500 else "internal_error")
        body = ErrorBody(code, str(exc.detail), exc.status_code >= 500 or exc.status_code == 429)
    return Response(body, status_code=exc.status_code, headers=exc.headers)


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    # The client learns only the exception's type; the traceback goes to the log, where it can be acted on.
    log.error("unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
    return Response(
        ErrorBody("internal_error", f"unexpected server error ({type(exc).__name__})", True),
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {HTTPException: handle_http_exception, Exception: handle_unexpected}

"""main's own error cases on top of the shared structured errors (``services.shared.http_errors``)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.types import ExceptionHandlersMap
from sqlalchemy.exc import InterfaceError, OperationalError

from services.shared.http_errors import EXCEPTION_HANDLERS, ApiError, ErrorBody, handle_unexpected, not_found

# Integrations' api modules import these two from here.
__all__ = ["MAIN_EXCEPTION_HANDLERS", "ApiError", "not_found", "temporal_unreachable"]


def temporal_unreachable(exc: BaseException) -> bool:
    """Temporal could not be reached by a client that never connected (main started while Temporal was down): the
    SDK's lazy client raises RuntimeError("Failed client connect: ...") then, where a connected one raises RPCError."""
    return isinstance(exc, RuntimeError) and str(exc).startswith("Failed client connect")


def _handle_runtime_error(request: Request[Any, Any, Any], exc: RuntimeError) -> Response[ErrorBody]:
    if temporal_unreachable(exc):
        return Response(ErrorBody("temporal_unavailable", "Temporal is unreachable; try again", True), status_code=503)
    return handle_unexpected(request, exc)


def _handle_store_unreachable(_: Request[Any, Any, Any], __: Exception) -> Response[ErrorBody]:
    # The database could not be reached or dropped the connection (restarting, failing over).
    return Response(ErrorBody("store_unavailable", "the task store is unreachable; try again", True), status_code=503)


MAIN_EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    **EXCEPTION_HANDLERS,
    RuntimeError: _handle_runtime_error,
    OperationalError: _handle_store_unreachable,
    InterfaceError: _handle_store_unreachable,
    OSError: _handle_store_unreachable,
}

"""A route's body limit (``request_max_body_size``) applied to the length a request announces, before anything
runs: Litestar checks the limit only while a handler reads the body, so a route that takes no body would otherwise
let a client announce and send any amount."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import HTTPRouteHandler
from litestar.handlers.base import BaseRouteHandler

from .http_errors import ApiError


async def announced_body_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """An app-wide guard: 413 when Content-Length exceeds the route's limit (a body sent without a length is
    counted while it is read, by Litestar)."""
    if not isinstance(handler, HTTPRouteHandler):
        return
    limit = handler.resolve_request_max_body_size()
    announced = connection.headers.get("content-length", "")
    if limit is not None and announced.isdigit() and int(announced) > limit:
        raise ApiError(413, "payload_too_large", f"the request body may be at most {limit} bytes on this route")

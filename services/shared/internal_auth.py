"""Who may call the routes our services offer each other (main's report API, communication's metrics), and on
which listener.

Each service serves two listeners: the public one (users, browsers) and an internal one that only the stack's own
network reaches. A route handler marked ``opt={INTERNAL: True}`` is served on the internal listener only, every
other route on the public listener only; asked on the wrong one, a route does not exist (404). Internal routes also
need the credential of their trust edge (``Authorization: Bearer <token>`` or ``X-Internal-Token``).
"""

from __future__ import annotations

from typing import Any

from litestar import Router
from litestar.connection import ASGIConnection
from litestar.exceptions import NotFoundException
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from .http_errors import ApiError
from .settings import TokenPair

INTERNAL = "internal"


def presented_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    scheme, _, value = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return connection.headers.get("x-internal-token") or None


def internal_token_guard(tokens: TokenPair) -> Guard:
    """Admits only callers holding the trust edge's current or previous token."""

    # async on purpose: Litestar runs a sync guard in a worker thread, a costly hop on every report and publish.
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        token = presented_token(connection)
        if token is None:
            raise ApiError(401, "unauthorized", "internal endpoint: missing internal token (Authorization: Bearer)")
        if not tokens.accepts(token):
            raise ApiError(401, "unauthorized", "internal endpoint: invalid internal token")

    return guard


def internal_router(*handlers: Any, tokens: TokenPair | None = None, max_body_bytes: int | None = None) -> Router:
    """Route handlers served on the internal listener only; with ``tokens``, only to holders of that trust edge's
    token."""
    return Router(
        path="/",
        route_handlers=list(handlers),
        guards=[] if tokens is None else [internal_token_guard(tokens)],
        opt={INTERNAL: True},
        request_max_body_size=max_body_bytes,
    )


def listener_guard(internal_port: int) -> Guard:
    """An app-wide guard: internal routes exist only on the listener bound to ``internal_port``, the others only
    on the public listener. The listener is the local port the connection came in on (``scope["server"]``)."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        server = connection.scope.get("server")
        on_internal_listener = server is not None and server[1] == internal_port
        if on_internal_listener != bool(handler.opt.get(INTERNAL)):
            raise NotFoundException()

    return guard

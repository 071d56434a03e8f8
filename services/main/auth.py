"""Who is calling: users by API key (Bearer), backends by the internal token."""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from .errors import ApiError


def bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value:
        return None
    return value.strip()


def current_user(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The user owning the API key in ``Authorization: Bearer``; a dependency of every public route."""
    api_keys: dict[str, str] = connection.app.state.settings.api_keys
    token = bearer(connection)
    if token is None:
        raise ApiError(401, "unauthorized", "missing API key: send 'Authorization: Bearer <key>'")
    for key, user in api_keys.items():
        # Bytes, not str: compare_digest refuses str with non-ASCII characters, which a header may carry.
        if hmac.compare_digest(key.encode(), token.encode()):
            return user
    raise ApiError(401, "unauthorized", "invalid API key")


async def internal_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard for /internal routes: only holders of the internal token (our activities, our backends)."""
    # async on purpose: Litestar runs a sync guard in a worker thread, a costly hop on every report.
    expected: str = connection.app.state.settings.platform.internal_token
    token = bearer(connection) or connection.headers.get("x-internal-token")
    if token is None:
        raise ApiError(401, "unauthorized", "internal endpoint: missing internal token")
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise ApiError(401, "unauthorized", "internal endpoint: invalid internal token")

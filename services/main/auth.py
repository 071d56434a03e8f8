"""Who is calling: users by API key (Bearer). The workers' report credential is checked by the shared
internal-token guard (``services.shared.internal_auth``), on main's internal listener."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from services.shared.http_errors import ApiError


def _bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    scheme, _, value = connection.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def current_user(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The user owning the API key in ``Authorization: Bearer``; a dependency of every public route."""
    api_keys: dict[str, str] = connection.app.state.settings.api_keys
    token = _bearer(connection)
    if not token:
        raise ApiError(401, "unauthorized", "missing API key: send 'Authorization: Bearer <key>'")
    for key, user in api_keys.items():
        # Bytes, not str: compare_digest refuses str with non-ASCII characters, which a header may carry.
        if hmac.compare_digest(key.encode(), token.encode()):
            return user
    raise ApiError(401, "unauthorized", "invalid API key")


def api_key_id(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """What names the caller's API key in the store (its rate limit): the key's SHA-256, never the key. Call after
    ``current_user``."""
    return hashlib.sha256(_bearer(connection).encode()).hexdigest()


async def api_key_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Refuses a request without a valid API key before its body is read or validated: an anonymous client learns
    nothing about a route's input and makes main parse nothing. (async: a sync guard would run in a thread.)"""
    current_user(connection)

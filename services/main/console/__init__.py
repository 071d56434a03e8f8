"""The web console: static HTML, CSS and JS served by main under ``/console``, outside the OpenAPI schema.

The page talks to main's public API with the user's API key, and to communication's websocket with a token
from ``POST /api/realtime/token``; it needs no server-side code of its own.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Response, Router
from litestar.static_files import create_static_files_router

STATIC_DIR = Path(__file__).parent / "static"

# Scripts and styles only from main itself: the API key sits in sessionStorage, so no injected script may
# run. Images, videos and the websocket come from other origins (the S3 server's presigned URLs,
# communication), so those stay open.
CONTENT_SECURITY_POLICY = (
    "script-src 'self'; style-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)


def _security_headers(response: Response[object]) -> Response[object]:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def console_router() -> Router:
    return create_static_files_router(
        path="/console",
        directories=[STATIC_DIR],
        html_mode=True,
        name="console",
        include_in_schema=False,
        after_request=_security_headers,
    )

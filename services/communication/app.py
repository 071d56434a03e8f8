"""The app factory: ``create_app(settings)`` wires the hub, the routes and the structured errors."""

from __future__ import annotations

from litestar import Litestar, Router
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig

from .errors import handle_http_exception, handle_unexpected
from .hub import Hub
from .routes import PublishController, RealtimeController, StatusController, internal_token_guard
from .settings import CommunicationSettings


def create_app(settings: CommunicationSettings) -> Litestar:
    hub = Hub(settings.queue_size)
    internal = Router(
        path="/", route_handlers=[PublishController], guards=[internal_token_guard(settings.internal_token)]
    )
    app = Litestar(
        route_handlers=[RealtimeController, StatusController, internal],
        dependencies={
            "hub": Provide(lambda: hub, use_cache=True, sync_to_thread=False),
            "settings": Provide(lambda: settings, use_cache=True, sync_to_thread=False),
        },
        exception_handlers={HTTPException: handle_http_exception, Exception: handle_unexpected},
        openapi_config=OpenAPIConfig(title="communication", version="0.1.0"),
        # Logging is configured by the runner (__main__); the app must not install its own handlers.
        logging_config=None,
    )
    app.state.hub = hub
    app.state.settings = settings
    return app

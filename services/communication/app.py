"""The app factory: ``create_app(settings)`` wires the hub, the routes and the structured errors."""

from __future__ import annotations

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

from services.shared.http_errors import EXCEPTION_HANDLERS
from services.shared.internal_auth import internal_router, listener_guard
from services.shared.request_limits import announced_body_guard

from .hub import Hub
from .routes import MetricsController, PublishController, RealtimeController, StatusController
from .settings import CommunicationSettings


def create_app(settings: CommunicationSettings) -> Litestar:
    hub = Hub(settings.queue_size)
    # On the internal listener only: publishing needs main's publish token; the counters need the network.
    publish = internal_router(
        PublishController, tokens=settings.publish_tokens, max_body_bytes=settings.max_publish_bytes
    )
    metrics = internal_router(MetricsController)
    app = Litestar(
        route_handlers=[RealtimeController, StatusController, publish, metrics],
        dependencies={
            "hub": Provide(lambda: hub, use_cache=True, sync_to_thread=False),
            "settings": Provide(lambda: settings, use_cache=True, sync_to_thread=False),
        },
        guards=[listener_guard(settings.internal_port), announced_body_guard],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(title="communication", version="0.1.0"),
        # Logging is configured by the runner (__main__); the app must not install its own handlers.
        logging_config=None,
    )
    app.state.hub = hub
    app.state.settings = settings
    return app

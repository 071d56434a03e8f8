"""The app factory: ``create_app(settings)`` wires the hub, the event feed, the routes and the structured errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

from services.shared.http_errors import EXCEPTION_HANDLERS
from services.shared.internal_auth import internal_router, listener_guard
from services.shared.request_limits import announced_body_guard

from .feed import EventFeed
from .hub import Hub
from .routes import MetricsController, RealtimeController, StatusController
from .settings import CommunicationSettings


def create_app(settings: CommunicationSettings) -> Litestar:
    hub = Hub(settings.queue_size)
    feed = EventFeed(settings.events, hub)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        # In the background: the server answers /healthz while NATS or the stream is not there yet.
        feed.start()
        try:
            yield
        finally:
            await feed.stop()

    # On the internal listener only: the counters are for the stack's network.
    metrics = internal_router(MetricsController)
    app = Litestar(
        route_handlers=[RealtimeController, StatusController, metrics],
        dependencies={
            "hub": Provide(lambda: hub, use_cache=True, sync_to_thread=False),
            "feed": Provide(lambda: feed, use_cache=True, sync_to_thread=False),
            "settings": Provide(lambda: settings, use_cache=True, sync_to_thread=False),
        },
        guards=[listener_guard(settings.internal_port), announced_body_guard],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(title="communication", version="0.1.0"),
        # Logging is configured by the runner (__main__); the app must not install its own handlers.
        logging_config=None,
    )
    app.state.hub = hub
    app.state.feed = feed
    app.state.settings = settings
    return app

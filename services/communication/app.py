"""The app factory: ``create_app(settings)`` wires the hub, the event feed, the routes and the structured errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig

from .errors import handle_http_exception, handle_unexpected
from .feed import EventFeed
from .hub import Hub
from .routes import RealtimeController, StatusController
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

    app = Litestar(
        route_handlers=[RealtimeController, StatusController],
        dependencies={
            "hub": Provide(lambda: hub, use_cache=True, sync_to_thread=False),
            "feed": Provide(lambda: feed, use_cache=True, sync_to_thread=False),
            "settings": Provide(lambda: settings, use_cache=True, sync_to_thread=False),
        },
        exception_handlers={HTTPException: handle_http_exception, Exception: handle_unexpected},
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(title="communication", version="0.1.0"),
        # Logging is configured by the runner (__main__); the app must not install its own handlers.
        logging_config=None,
    )
    app.state.hub = hub
    app.state.feed = feed
    app.state.settings = settings
    return app

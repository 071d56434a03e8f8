"""main's app factory: settings in, a wired Litestar app out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from services.shared import logs
from services.shared.discovery import Discovery, discover
from services.shared.internal_auth import internal_router, listener_guard
from services.shared.outbound import Outbound
from services.shared.request_limits import announced_body_guard
from services.shared.storage import ObjectStore
from services.shared.temporal import connect

from .console import console_router
from .controllers import (
    HealthController,
    IntegrationController,
    InternalController,
    LimitsController,
    RealtimeController,
    TaskController,
    WebhookController,
)
from .errors import MAIN_EXCEPTION_HANDLERS
from .integrations_router import integration_router, load_api
from .platform_worker import PlatformWorker
from .reconciler import Reconciler
from .relay import OutboxRelay
from .retention import Retention
from .retention_workflow import RetentionWorkflow
from .schemas import IntegrationList, IntegrationRead
from .service import TaskService
from .settings import MainSettings
from .store import TaskStore
from .webhooks.activities import DeliveryActivities
from .webhooks.starter import DeliveryStarter
from .webhooks.workflows import WebhookDeliveryWorkflow

log = logging.getLogger("main")


def create_app(settings: MainSettings, discovery: Discovery | None = None) -> Litestar:
    discovery = discovery if discovery is not None else discover(blacklist=settings.blacklist)
    apis = {i.name: (i, load_api(i)) for i in discovery.integrations}
    routers: list[Router] = [integration_router(i, api, settings) for i, api in apis.values()]
    # The report API (and the callback URLs for the submits): on the internal listener only, for holders of the
    # workers' report token.
    internal = internal_router(
        InternalController, tokens=settings.report_tokens, max_body_bytes=settings.max_report_bytes
    )
    mounted = IntegrationList(
        [
            IntegrationRead(i.name, i.manifest.description, i.manifest.pattern, i.manifest.console)
            for i in discovery.integrations
        ]
    )
    log.info("mounted integrations: %s", ", ".join(i.name for i in discovery.integrations) or "none")

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        store = TaskStore.from_url(settings.database_url)
        await store.migrate()
        # Lazy: main starts (and serves reads of stored state) even while Temporal is still coming up.
        temporal = await connect(settings.platform.temporal, lazy=True)
        # In the background: main serves (and writes events to its outbox) while NATS is away.
        relay = OutboxRelay(store, settings.events, settings.relay_batch_size, settings.relay_poll_ms / 1000)
        relay.start()
        objects = ObjectStore(settings.platform.storage)
        deliveries = DeliveryStarter(store, temporal, settings.webhooks)
        deliveries.start()
        app.state.tasks = tasks = TaskService(settings, store, temporal, relay, objects, apis, deliveries)
        # In every process; the one holding the store's lease does the work.
        reconciler = Reconciler(tasks)
        reconciler.start()
        retention = Retention(tasks)
        outbound = Outbound(settings.webhooks.outbound)
        webhooks = DeliveryActivities(tasks, outbound)
        platform = PlatformWorker(
            settings.platform.temporal,
            workflows=[RetentionWorkflow, WebhookDeliveryWorkflow],
            activities=[retention.purge, webhooks.deliver, webhooks.give_up],
            setups=[retention.ensure_schedule, retention.ensure_lifecycle],
        )
        platform.start()
        try:
            yield
        finally:
            await platform.stop()
            await reconciler.stop()
            await deliveries.stop()
            await relay.stop()
            await outbound.aclose()
            await store.close()

    def provide_tasks(state: State) -> TaskService:
        tasks: TaskService = state.tasks
        return tasks

    return Litestar(
        route_handlers=[
            TaskController,
            IntegrationController,
            LimitsController,
            WebhookController,
            internal,
            RealtimeController,
            HealthController,
            console_router(),
            *routers,
        ],
        dependencies={"tasks": Provide(provide_tasks, sync_to_thread=False)},
        guards=[listener_guard(settings.internal_port), announced_body_guard],
        exception_handlers=MAIN_EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        lifespan=[lifespan],
        state=State({"settings": settings, "integrations": mounted}),
        openapi_config=OpenAPIConfig(
            title="Async task platform — main",
            version="0.1.0",
            description=(
                "Create and follow durable asynchronous tasks. Authenticate with `Authorization: Bearer <API key>`."
            ),
            components=Components(
                security_schemes={"apiKey": SecurityScheme(type="http", scheme="bearer", description="API key")}
            ),
            security=[{"apiKey": []}],
            path="/docs",
        ),
        debug=False,
    )


def app_factory() -> Litestar:
    """For ``uvicorn --factory services.main.app:app_factory`` and each of MAIN_WORKERS processes: settings read
    from the environment once."""
    logs.configure()
    return create_app(MainSettings.from_env())

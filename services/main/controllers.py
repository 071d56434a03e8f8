"""main's own routes: tasks across integrations, the mounted integrations, the caller's limits, the webhook secret,
the internal report API, realtime tokens, health."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, Parameter

from services.shared import realtime_token
from services.shared.reporting import CallbackUrl
from services.shared.tasks import ReportOutcome, TaskReport

from .auth import api_key_guard, api_key_id, current_user
from .schemas import Health, IntegrationList, Limits, RealtimeToken, TaskPage, TaskRead, WebhookSecretRead
from .service import TaskService

StatusFilter = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class TaskController(Controller):
    path = "/api/tasks"
    tags = ["tasks"]
    guards = [api_key_guard]

    @get("/", operation_id="list_tasks", summary="List your tasks, newest first")
    async def list_tasks(
        self,
        request: Request[Any, Any, Any],
        tasks: NamedDependency[TaskService],
        integration: Annotated[str | None, Parameter(description="only this integration", max_length=64)] = None,
        status: Annotated[StatusFilter | None, Parameter(description="only this status")] = None,
        limit: Annotated[int, Parameter(ge=1, le=100, description="page size")] = 20,
        offset: Annotated[int, Parameter(ge=0, le=1_000_000, description="items to skip")] = 0,
    ) -> TaskPage:
        user = current_user(request)
        records, total = await tasks.list(user, integration, status, limit, offset)
        next_offset = offset + len(records) if offset + len(records) < total else None
        return TaskPage([tasks.read(r) for r in records], total, limit, offset, next_offset)

    @get("/{task_id:str}", operation_id="read_task", summary="Read a task (synced with Temporal when not terminal)")
    async def read_task(
        self, task_id: FromPath[str], request: Request[Any, Any, Any], tasks: NamedDependency[TaskService]
    ) -> TaskRead:
        return tasks.read(await tasks.get_for(current_user(request), task_id))

    @post("/{task_id:str}/cancel", status_code=202, operation_id="cancel_task", summary="Cancel a task")
    async def cancel_task(
        self, task_id: FromPath[str], request: Request[Any, Any, Any], tasks: NamedDependency[TaskService]
    ) -> TaskRead:
        return tasks.read(await tasks.cancel(current_user(request), task_id))

    @delete(
        "/{task_id:str}",
        status_code=204,
        operation_id="delete_task",
        summary="Delete a task: cancel it if it runs, remove its files and input; afterwards it reads as absent",
    )
    async def delete_task(
        self, task_id: FromPath[str], request: Request[Any, Any, Any], tasks: NamedDependency[TaskService]
    ) -> None:
        await tasks.delete(current_user(request), task_id)


class IntegrationController(Controller):
    path = "/api/integrations"
    tags = ["integrations"]
    guards = [api_key_guard]

    @get(
        "/",
        operation_id="list_integrations",
        summary="The integrations main serves: name, description, pattern and console hints",
    )
    async def list_integrations(self, request: Request[Any, Any, Any]) -> IntegrationList:
        current_user(request)
        integrations: IntegrationList = request.app.state.integrations
        return integrations


class InternalController(Controller):
    """Served on main's internal listener only, to holders of the report token (see ``app.create_app``)."""

    path = "/internal"
    tags = ["internal"]
    include_in_schema = False

    @post("/tasks/{task_id:str}/report", status_code=200, operation_id="report_task")
    async def report(
        self, task_id: FromPath[str], data: JSONBody[TaskReport], tasks: NamedDependency[TaskService]
    ) -> ReportOutcome:
        return await tasks.report(task_id, data)

    @post("/tasks/{task_id:str}/callback-url", status_code=200, operation_id="task_callback_url")
    async def callback_url(self, task_id: FromPath[str], tasks: NamedDependency[TaskService]) -> CallbackUrl:
        """Where the task's provider may call back: asked by the submit activity, right before the submit."""
        return CallbackUrl(await tasks.callback_url(task_id))


class LimitsController(Controller):
    path = "/api/limits"
    tags = ["limits"]
    guards = [api_key_guard]

    @get("/", operation_id="read_limits", summary="Your limits and how much of them you use now")
    async def read_limits(self, request: Request[Any, Any, Any], tasks: NamedDependency[TaskService]) -> Limits:
        return await tasks.limits(current_user(request), api_key_id(request))


class WebhookController(Controller):
    """Your webhook signing secret. It is returned here only: never logged, never in Temporal, never in an error."""

    path = "/api/webhooks"
    tags = ["webhooks"]
    guards = [api_key_guard]

    @get("/secret", operation_id="read_webhook_secret", summary="Your webhook signing secret (made on first use)")
    async def read_secret(
        self, request: Request[Any, Any, Any], tasks: NamedDependency[TaskService]
    ) -> WebhookSecretRead:
        return await tasks.webhook_secret(current_user(request))

    @post(
        "/secret/rotate",
        status_code=200,
        operation_id="rotate_webhook_secret",
        summary="A new webhook signing secret; the previous one signs too for MAIN_WEBHOOK_SECRET_OVERLAP_SECONDS",
    )
    async def rotate_secret(
        self, request: Request[Any, Any, Any], tasks: NamedDependency[TaskService]
    ) -> WebhookSecretRead:
        await tasks.take_request(api_key_id(request))
        return await tasks.rotate_webhook_secret(current_user(request))


class RealtimeController(Controller):
    path = "/api/realtime"
    tags = ["realtime"]
    guards = [api_key_guard]

    @post("/token", status_code=201, operation_id="issue_realtime_token", summary="A short-lived websocket token")
    async def issue_token(self, request: Request[Any, Any, Any], tasks: NamedDependency[TaskService]) -> RealtimeToken:
        user = current_user(request)
        settings = tasks.settings
        token, exp = realtime_token.issue(settings.realtime_secret, user, settings.realtime_ttl_seconds)
        return RealtimeToken(
            token=token,
            expires_at=datetime.fromtimestamp(exp, UTC),
            url=settings.realtime_public_url,
            channel=realtime_token.user_channel(user),
        )


class HealthController(Controller):
    tags = ["health"]

    @get("/healthz", operation_id="healthz", summary="The process is up")
    async def healthz(self) -> Health:
        return Health("ok")

    @get("/readyz", operation_id="readyz", summary="The store and Temporal are reachable")
    async def readyz(self, tasks: NamedDependency[TaskService]) -> Response[Health]:
        async def temporal_ok() -> bool:
            try:
                await asyncio.wait_for(tasks.temporal.service_client.check_health(), 2.0)
            except Exception:
                return False
            return True

        store_ok, temporal_up = await asyncio.gather(tasks.store.ping(), temporal_ok())
        checks = {"store": store_ok, "temporal": temporal_up}
        ready = all(checks.values())
        return Response(Health("ok" if ready else "unavailable", checks), status_code=200 if ready else 503)

"""Routes built for each integration from its ``IntegrationApi``."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler
from litestar.params import Body, FromPath, HeaderParameter, Parameter
from temporalio.service import RPCError, RPCStatusCode

from services.shared.discovery import Integration
from services.shared.http_errors import ApiError, not_found
from services.shared.manifest import slug
from services.shared.submit_poll import CALLBACK_SIGNAL
from services.shared.tasks import DEFAULT_PRIORITY, HIGHEST_PRIORITY, LOWEST_PRIORITY, is_terminal, workflow_id_for

from .auth import api_key_guard, api_key_id, current_user
from .body_limits import max_json_bytes
from .callback_tokens import accepts
from .kit import InputError, IntegrationApi, ProviderCallback, TaskAction, TaskHandle
from .schemas import TaskRead
from .service import CreateOptions, TaskService, WebhookOptions
from .settings import MainSettings
from .store import WEBHOOK_EVENTS


class CallbackAck(msgspec.Struct, frozen=True):
    # False when the task is already finished and the callback changes nothing.
    accepted: bool


def load_api(integration: Integration) -> IntegrationApi[Any]:
    module = integration.import_api_module()
    api = getattr(module, "api", None)
    if not isinstance(api, IntegrationApi):
        raise TypeError(f"integration {integration.name!r}: api.py must define `api = IntegrationApi(...)`")
    return api


TaskPriority = Annotated[
    int,
    msgspec.Meta(
        ge=HIGHEST_PRIORITY,
        le=LOWEST_PRIORITY,
        description=f"{HIGHEST_PRIORITY} runs first, {LOWEST_PRIORITY} last (default {DEFAULT_PRIORITY}); "
        "how urgent a priority a user may give is a setting of main's",
    ),
]
# Not bounded in the schema: the maximum is the integration's, and main answers a value out of bounds with a 422
# naming the field (see ``TaskService.create``), not the 400 of a body that does not parse.
TaskDeadline = Annotated[
    float | None,
    msgspec.Meta(
        description="seconds from this create until the task must be done, more than 0 and at most the integration's "
        "maximum (its manifest's deadline.max_seconds); without it, the integration's default. Time spent queued "
        "counts. Past it the provider job is cancelled where the provider allows and the task fails "
        "deadline_exceeded"
    ),
]
WebhookUrl = Annotated[
    str,
    msgspec.Meta(
        max_length=2048,
        description="where signed webhooks of this task go (Standard Webhooks); https to a public address, unless "
        "main's MAIN_WEBHOOK_* settings allow more",
    ),
]
# Loose bounds: an unknown or repeated event is main's to refuse (422 naming the field), not the schema's.
WebhookEvents = Annotated[
    list[Annotated[str, msgspec.Meta(max_length=32)]],
    msgspec.Meta(
        max_length=8,
        description=f"which changes send a webhook, of {list(WEBHOOK_EVENTS)} (default ['completed']); needs "
        "webhook_url",
    ),
]
# What every create body takes beside the integration's own request fields.
CREATE_OPTIONS: list[tuple[str, Any, Any]] = [
    ("priority", TaskPriority, DEFAULT_PRIORITY),
    ("deadline_seconds", TaskDeadline, None),
    ("webhook_url", WebhookUrl | None, None),
    ("webhook_events", WebhookEvents | None, None),
]


def create_body_type(request_type: type[Any]) -> type[msgspec.Struct]:
    """The create route's body: the integration's request with main's options added (same name, so the schema
    reads as the integration's own)."""
    clash = {name for name, _, _ in CREATE_OPTIONS} & set(request_type.__struct_fields__)
    if clash:
        raise TypeError(f"{request_type.__name__}: fields {sorted(clash)} are main's create options")
    return msgspec.defstruct(
        request_type.__name__, CREATE_OPTIONS, bases=(request_type,), module=request_type.__module__
    )


def split_create_body(body: Any, request_type: type[Any]) -> tuple[Any, CreateOptions]:
    """The integration's request and main's options from a create body."""
    request = request_type(**{name: getattr(body, name) for name in request_type.__struct_fields__})
    webhook = WebhookOptions(body.webhook_url, body.webhook_events)
    return request, CreateOptions(priority=body.priority, deadline_seconds=body.deadline_seconds, webhook=webhook)


def create_body_limit(body_type: type[Any], settings: MainSettings) -> int:
    """A create route's body limit: the largest body its request schema admits, at most MAIN_MAX_CREATE_BODY_BYTES
    (a request must fit into the workflow's input, which Temporal bounds)."""
    derived = max_json_bytes(body_type)
    ceiling = settings.max_create_body_bytes
    return ceiling if derived is None else min(derived, ceiling)


def integration_router(integration: Integration, api: IntegrationApi[Any], settings: MainSettings) -> Router:
    name = integration.name
    op = slug(name).replace("-", "_")
    body_type = create_body_type(api.request_type)

    async def create_task(
        data: Any,
        request: Request[Any, Any, Any],
        tasks: NamedDependency[TaskService],
        idempotency_key: Annotated[
            str | None,
            HeaderParameter(
                name="Idempotency-Key",
                required=False,
                max_length=256,
                description="a retried create with the same key returns the same task",
            ),
        ] = None,
    ) -> Response[TaskRead]:
        user = current_user(request)
        task_request, options = split_create_body(data, api.request_type)
        try:
            record, _ = await tasks.create(
                user, integration, api, task_request, idempotency_key, options, key_id=api_key_id(request)
            )
        except InputError as exc:
            raise ApiError(422, "invalid_input", f"invalid request: {exc}", details={"field": exc.field}) from exc
        return Response(tasks.read(record), status_code=202, headers={"Location": f"/api/tasks/{record.id}"})

    # The body type is the integration's own input Struct (with main's options), so validation and the OpenAPI
    # schema follow it.
    create_task.__annotations__["data"] = Annotated[body_type, Body()]

    async def read_task(
        task_id: FromPath[str], request: Request[Any, Any, Any], tasks: NamedDependency[TaskService]
    ) -> TaskRead:
        user = current_user(request)
        return tasks.read(await tasks.get_for(user, task_id, integration=name))

    handlers: list[Any] = [
        post(
            "/tasks",
            status_code=202,
            operation_id=f"create_{op}_task",
            summary=f"Create a {name} task",
            description=api.summary or integration.manifest.description,
            tags=[name],
            request_max_body_size=create_body_limit(body_type, settings),
            # Before the body is parsed: an anonymous client gets 401, whatever it sends.
            guards=[api_key_guard],
        )(create_task),
        get(
            "/tasks/{task_id:str}",
            operation_id=f"read_{op}_task",
            summary=f"Read a {name} task (synced with Temporal when not terminal)",
            tags=[name],
        )(read_task),
        *(action_route(name, op, action) for action in api.actions),
    ]
    if api.callback is not None:
        handlers.append(callback_route(name, op, api.callback))
    return Router(path=f"/api/integrations/{name}", route_handlers=handlers)


def action_route(name: str, op: str, action: TaskAction) -> HTTPRouteHandler:
    async def run_action(
        task_id: FromPath[str], request: Request[Any, Any, Any], tasks: NamedDependency[TaskService]
    ) -> TaskRead:
        user = current_user(request)
        await tasks.take_request(api_key_id(request))
        record = await tasks.get_for(user, task_id, integration=name, sync=False)
        if is_terminal(record.status):
            return tasks.read(record)
        await action.run(TaskHandle(task_id, tasks.temporal.get_workflow_handle(workflow_id_for(task_id))))
        return tasks.read(await tasks.sync(record))

    return post(
        f"/tasks/{{task_id:str}}/{action.name}",
        status_code=200,
        operation_id=f"{action.name}_{op}_task",
        summary=action.summary,
        description=action.description,
        tags=[name],
    )(run_action)


def callback_route(name: str, op: str, callback: ProviderCallback) -> HTTPRouteHandler:
    async def provider_callback(
        task_id: FromPath[str],
        request: Request[Any, Any, Any],
        tasks: NamedDependency[TaskService],
        secret: str | None = Parameter(required=False, max_length=256, description="the task's callback token"),
    ) -> Response[Any]:
        if not secret:
            raise ApiError(401, "unauthorized", "missing callback token")
        # An unknown task and a wrong token get the same answer, so the endpoint confirms nothing; a wrong token
        # costs no database read.
        if not accepts(tasks.settings.callback_keys, task_id, secret):
            raise not_found(f"task {task_id}")
        record = await tasks.store.get(task_id)
        if record is None or record.integration != name:
            raise not_found(f"task {task_id}")
        body = await request.body()
        if callback.challenge is not None and (echo := callback.challenge(body)) is not None:
            return Response(echo)
        if is_terminal(record.status):
            return Response(CallbackAck(accepted=False))
        handle = tasks.temporal.get_workflow_handle(workflow_id_for(task_id))
        try:
            await handle.signal(CALLBACK_SIGNAL, callback.hint(body))
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return Response(CallbackAck(accepted=False))
            # Providers retry a callback that failed.
            raise ApiError(503, "temporal_unavailable", "could not deliver the callback; try again", True) from exc
        return Response(CallbackAck(accepted=True))

    return post(
        "/tasks/{task_id:str}/callback",
        status_code=200,
        operation_id=f"{op}_callback",
        summary="The provider's callback URL for a task (authenticated by the task's callback token)",
        description="Wakes the task's workflow, which then queries the provider: the callback body is not trusted.",
        tags=[name],
    )(provider_callback)

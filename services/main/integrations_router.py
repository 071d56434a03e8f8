"""Routes built for each integration from its ``IntegrationApi``."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, HeaderParameter

from services.shared.discovery import Integration
from services.shared.http_errors import ApiError
from services.shared.manifest import slug

from .auth import api_key_guard, current_user
from .body_limits import max_json_bytes
from .kit import InputError, IntegrationApi
from .schemas import TaskRead
from .service import TaskService
from .settings import MainSettings


def load_api(integration: Integration) -> IntegrationApi[Any]:
    module = integration.import_api_module()
    api = getattr(module, "api", None)
    if not isinstance(api, IntegrationApi):
        raise TypeError(f"integration {integration.name!r}: api.py must define `api = IntegrationApi(...)`")
    return api


def create_body_limit(api: IntegrationApi[Any], settings: MainSettings) -> int:
    """A create route's body limit: the largest body its request schema admits, at most MAIN_MAX_CREATE_BODY_BYTES
    (a request must fit into the workflow's input, which Temporal bounds)."""
    derived = max_json_bytes(api.request_type)
    ceiling = settings.max_create_body_bytes
    return ceiling if derived is None else min(derived, ceiling)


def integration_router(integration: Integration, api: IntegrationApi[Any], settings: MainSettings) -> Router:
    name = integration.name
    op = slug(name).replace("-", "_")

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
        try:
            record, _ = await tasks.create(user, integration, api, data, idempotency_key)
        except InputError as exc:
            raise ApiError(422, "invalid_input", f"invalid request: {exc}", details={"field": exc.field}) from exc
        return Response(tasks.read(record), status_code=202, headers={"Location": f"/api/tasks/{record.id}"})

    # The body type is the integration's own input Struct, so validation and the OpenAPI schema follow it.
    create_task.__annotations__["data"] = Annotated[api.request_type, Body()]

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
            request_max_body_size=create_body_limit(api, settings),
            # Before the body is parsed: an anonymous client gets 401, whatever it sends.
            guards=[api_key_guard],
        )(create_task),
        get(
            "/tasks/{task_id:str}",
            operation_id=f"read_{op}_task",
            summary=f"Read a {name} task (synced with Temporal when not terminal)",
            tags=[name],
        )(read_task),
        *api.routes,
    ]
    return Router(path=f"/api/integrations/{name}", route_handlers=handlers)

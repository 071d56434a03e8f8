"""HTTP routes of the simulator: the two providers' contracts, Ark's media links, health and ``/_sim`` control."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, Router, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from .ark import ControlError
from .config import SimulatorSettings
from .control import Simulator
from .state import Incoming, json_response, request_id

AnyRequest = Request[Any, Any, Any]
SimulatorDep = NamedDependency[Simulator]


async def _incoming(request: AnyRequest, simulator: Simulator) -> Incoming:
    body = await request.body()

    async def wait_disconnect() -> None:
        # Once the body is read, the next ASGI message for this request is the disconnect.
        while (await request.receive())["type"] != "http.disconnect":
            pass

    base_url = str(request.base_url).rstrip("/")
    return Incoming(
        headers=request.headers,
        query={key: request.query_params.getall(key) for key in request.query_params},
        body=body,
        base_url=simulator.settings.public_url or base_url,
        wait_disconnect=wait_disconnect,
    )


def _control_error(error: ControlError) -> Response[bytes]:
    return json_response({"detail": error.detail}, error.status)


# --- health --------------------------------------------------------------------------------------------------


@get("/healthz", operation_id="Healthz", description="Liveness and readiness of the simulator.")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


# --- Gemini --------------------------------------------------------------------------------------------------


@post(
    "/v1beta/models/{model_and_method:str}",
    status_code=200,
    operation_id="GeminiGenerateContent",
    description="Gemini generateContent; the path segment is '{model}:generateContent'.",
)
async def gemini_generate_content(
    model_and_method: FromPath[str], request: AnyRequest, simulator: SimulatorDep
) -> Response[bytes]:
    return await simulator.gemini.generate_content(model_and_method, await _incoming(request, simulator))


# --- Ark -----------------------------------------------------------------------------------------------------

_ARK_TASKS = "/api/v3/contents/generations/tasks"


@post(_ARK_TASKS, status_code=200, operation_id="ArkCreateTask", description="Create a video generation task.")
async def ark_create_task(request: AnyRequest, simulator: SimulatorDep) -> Response[bytes]:
    return await simulator.ark.create_task(await _incoming(request, simulator))


@get(_ARK_TASKS, operation_id="ArkListTasks", description="List tasks (page_num, page_size, filter.*).")
async def ark_list_tasks(request: AnyRequest, simulator: SimulatorDep) -> Response[bytes]:
    return await simulator.ark.list_tasks(await _incoming(request, simulator))


@get(_ARK_TASKS + "/{task_id:str}", operation_id="ArkGetTask", description="Query one task.")
async def ark_get_task(task_id: FromPath[str], request: AnyRequest, simulator: SimulatorDep) -> Response[bytes]:
    return await simulator.ark.get_task(task_id, await _incoming(request, simulator))


@delete(
    _ARK_TASKS + "/{task_id:str}",
    status_code=200,
    operation_id="ArkDeleteTask",
    description="Cancel a queued task, or delete a finished one.",
)
async def ark_delete_task(task_id: FromPath[str], request: AnyRequest, simulator: SimulatorDep) -> Response[bytes]:
    return await simulator.ark.delete_task(task_id, await _incoming(request, simulator))


@get(
    "/_media/{name:str}",
    operation_id="ArkMedia",
    description="Video ({id}.mp4) or last frame ({id}-last.png) of a succeeded task, until the link expires.",
)
async def ark_media(name: FromPath[str], simulator: SimulatorDep) -> Response[bytes]:
    try:
        media = await simulator.media(name)
    except ControlError as error:
        message = "Request has expired" if error.status == 403 else "The specified key does not exist."
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{error.detail}</Code><Message>{message}</Message>"
            f"<RequestId>{request_id()}</RequestId></Error>"
        )
        return Response(content=xml.encode(), status_code=error.status, media_type="application/xml")
    return Response(content=media.body, media_type=media.media_type)


# --- control API ---------------------------------------------------------------------------------------------


@get("/config", operation_id="SimGetConfig", description="Current run-time behaviour.")
async def sim_get_config(simulator: SimulatorDep) -> Response[bytes]:
    return json_response(msgspec.to_builtins(simulator.config()))


@post("/config", status_code=200, operation_id="SimSetConfig", description="Change some run-time settings.")
async def sim_set_config(request: AnyRequest, simulator: SimulatorDep) -> Response[bytes]:
    try:
        return json_response(msgspec.to_builtins(simulator.update_config(await request.body())))
    except ControlError as error:
        return _control_error(error)


@get("/faults", operation_id="SimGetFaults", description="Queued faults not used up yet.")
async def sim_get_faults(simulator: SimulatorDep) -> Response[bytes]:
    return json_response(simulator.pending_faults())


@post("/faults", status_code=200, operation_id="SimAddFaults", description="Queue one fault or a list of faults.")
async def sim_add_faults(request: AnyRequest, simulator: SimulatorDep) -> Response[bytes]:
    try:
        return json_response(simulator.add_faults(await request.body()))
    except ControlError as error:
        return _control_error(error)


@delete("/faults", status_code=200, operation_id="SimClearFaults", description="Drop every queued fault.")
async def sim_clear_faults(simulator: SimulatorDep) -> Response[bytes]:
    simulator.clear_faults()
    return json_response([])


@get("/stats", operation_id="SimStats", description="Request counts, Ark task queries and callbacks.")
async def sim_stats(simulator: SimulatorDep) -> Response[bytes]:
    return json_response(simulator.stats())


@post("/reset", status_code=200, operation_id="SimReset", description="Forget all tasks, faults and counters.")
async def sim_reset(simulator: SimulatorDep) -> Response[bytes]:
    await simulator.reset()
    return json_response({"status": "reset"})


@get("/ark/tasks/{task_id:str}", operation_id="SimGetArkTask", description="An Ark task with queries and callbacks.")
async def sim_get_ark_task(task_id: FromPath[str], simulator: SimulatorDep) -> Response[bytes]:
    try:
        return json_response(simulator.ark_task(task_id))
    except ControlError as error:
        return _control_error(error)


@post(
    "/ark/tasks/{task_id:str}",
    status_code=200,
    operation_id="SimPatchArkTask",
    description="Change an unfinished Ark task: queue_seconds, run_seconds, outcome, error_code, error_message.",
)
async def sim_patch_ark_task(task_id: FromPath[str], request: AnyRequest, simulator: SimulatorDep) -> Response[bytes]:
    try:
        return json_response(simulator.patch_ark_task(task_id, await request.body()))
    except ControlError as error:
        return _control_error(error)


def create_app(settings: SimulatorSettings | None = None, *, clock: Callable[[], float] = time.time) -> Litestar:
    """The simulator app. Settings come from the environment when not given; ``clock`` is for tests."""
    simulator = Simulator(settings or SimulatorSettings.from_env(), clock=clock)

    def provide_simulator() -> Simulator:
        return simulator

    control_router = Router(
        path="/_sim",
        route_handlers=[
            sim_get_config,
            sim_set_config,
            sim_get_faults,
            sim_add_faults,
            sim_clear_faults,
            sim_stats,
            sim_reset,
            sim_get_ark_task,
            sim_patch_ark_task,
        ],
        include_in_schema=False,
    )
    app = Litestar(
        route_handlers=[
            healthz,
            gemini_generate_content,
            ark_create_task,
            ark_list_tasks,
            ark_get_task,
            ark_delete_task,
            ark_media,
            control_router,
        ],
        dependencies={"simulator": Provide(provide_simulator, sync_to_thread=False)},
        on_shutdown=[simulator.close],
    )
    app.state.simulator = simulator
    return app

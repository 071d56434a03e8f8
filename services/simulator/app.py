"""HTTP routes of the simulator: every stand-in's provider contract, health and the ``/_sim`` control API."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from litestar import Litestar, Request, Response, Router, delete, get, post
from litestar.di import NamedDependency, Provide

from .config import SimulatorSettings
from .control import Simulator
from .errors import ControlError, json_response

AnyRequest = Request[Any, Any, Any]
SimulatorDep = NamedDependency[Simulator]


@get("/healthz", operation_id="Healthz", description="Liveness and readiness of the simulator.")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


# --- control API ---------------------------------------------------------------------------------------------


@get("/config", operation_id="SimGetConfig", description="Current run-time behaviour.")
async def sim_get_config(simulator: SimulatorDep) -> Response[bytes]:
    return json_response(simulator.config().as_dict())


@post("/config", status_code=200, operation_id="SimSetConfig", description="Change some run-time settings.")
async def sim_set_config(request: AnyRequest, simulator: SimulatorDep) -> Response[bytes]:
    return json_response(simulator.update_config(await request.body()).as_dict())


@get("/faults", operation_id="SimGetFaults", description="Queued faults not used up yet.")
async def sim_get_faults(simulator: SimulatorDep) -> Response[bytes]:
    return json_response(simulator.pending_faults())


@post("/faults", status_code=200, operation_id="SimAddFaults", description="Queue one fault or a list of faults.")
async def sim_add_faults(request: AnyRequest, simulator: SimulatorDep) -> Response[bytes]:
    return json_response(simulator.add_faults(await request.body()))


@delete("/faults", status_code=200, operation_id="SimClearFaults", description="Drop every queued fault.")
async def sim_clear_faults(simulator: SimulatorDep) -> Response[bytes]:
    simulator.clear_faults()
    return json_response([])


@get("/stats", operation_id="SimStats", description="Request counts and what each stand-in adds.")
async def sim_stats(simulator: SimulatorDep) -> Response[bytes]:
    return json_response(simulator.stats())


@post("/reset", status_code=200, operation_id="SimReset", description="Forget all tasks, faults and counters.")
async def sim_reset(simulator: SimulatorDep) -> Response[bytes]:
    await simulator.reset()
    return json_response({"status": "reset"})


def _control_error(_: AnyRequest, error: ControlError) -> Response[bytes]:
    return error.response()


def create_app(settings: SimulatorSettings | None = None, *, clock: Callable[[], float] = time.time) -> Litestar:
    """The simulator app. Settings come from the environment when not given; ``clock`` is for tests."""
    simulator = Simulator(settings or SimulatorSettings.from_env(), clock=clock)

    def provide_simulator() -> Simulator:
        return simulator

    shared_control = [
        sim_get_config,
        sim_set_config,
        sim_get_faults,
        sim_add_faults,
        sim_clear_faults,
        sim_stats,
        sim_reset,
    ]
    stand_in_control = [Router(path=f"/{s.name}", route_handlers=s.control_routes()) for s in simulator.stand_ins]
    app = Litestar(
        route_handlers=[
            healthz,
            *(route for stand_in in simulator.stand_ins for route in stand_in.http_routes()),
            Router(path="/_sim", route_handlers=[*shared_control, *stand_in_control], include_in_schema=False),
        ],
        dependencies={"simulator": Provide(provide_simulator, sync_to_thread=False)},
        exception_handlers={ControlError: _control_error},
        on_shutdown=[simulator.close],
    )
    app.state.simulator = simulator
    return app

"""example's HTTP API, mounted by main under /api/integrations/example. It only starts and reads workflows."""

from __future__ import annotations

from services.main.kit import IntegrationApi, StartContext
from services.main.store import TaskRecord

from .schemas import ExampleInput, ExampleRequest
from .workflows.workflows import ExampleWorkflow


def build_input(task: TaskRecord, request: ExampleRequest, _: StartContext) -> ExampleInput:
    return ExampleInput(task_id=task.id, request=request)


api = IntegrationApi(
    request_type=ExampleRequest,
    workflow=ExampleWorkflow.run,
    build_input=build_input,
    summary="Store a message as a text object after an optional delay (test integration).",
)

"""example's HTTP API, mounted by main under /api/integrations/example. It only starts and reads workflows."""

from __future__ import annotations

from services.main.kit import IntegrationApi, NewTask

from .schemas import ExampleInput, ExampleRequest
from .workflows.workflows import ExampleWorkflow


def build_input(new: NewTask[ExampleRequest]) -> ExampleInput:
    return ExampleInput(task_id=new.task.id, request=new.request)


api = IntegrationApi(
    request_type=ExampleRequest,
    workflow=ExampleWorkflow.run,
    build_input=build_input,
    summary="Store a message as a text object after an optional delay (test integration).",
)

"""echo's HTTP API, mounted by main under /api/integrations/echo. It only starts and reads workflows."""

from __future__ import annotations

from services.main.kit import IntegrationApi, StartContext
from services.main.store import TaskRecord
from services.shared.tasks import TaskEnvelope

from .schemas import EchoInput, EchoRequest
from .workflows.workflows import EchoWorkflow


def build_input(task: TaskRecord, request: EchoRequest, _: StartContext) -> EchoInput:
    return EchoInput(TaskEnvelope(task.id), request)


api = IntegrationApi(
    request_type=EchoRequest,
    workflow=EchoWorkflow.run,
    build_input=build_input,
    summary="Store a message as a text object after an optional delay (test integration).",
)

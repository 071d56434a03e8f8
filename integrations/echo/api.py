"""echo's HTTP API, mounted by main under /api/integrations/echo. It only starts and reads workflows."""

from __future__ import annotations

from services.main.kit import IntegrationApi, NewTask

from .schemas import EchoInput, EchoRequest
from .workflows.workflows import EchoWorkflow


def build_input(new: NewTask[EchoRequest]) -> EchoInput:
    return EchoInput(new.task, new.request)


api = IntegrationApi(
    request_type=EchoRequest,
    workflow=EchoWorkflow.run,
    build_input=build_input,
    summary="Store a message as a text object after an optional delay (test integration).",
)

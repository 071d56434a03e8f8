"""echo's HTTP API, mounted by main under /api/integrations/echo. It only starts and reads workflows."""

from __future__ import annotations

from services.main.kit import sync_call_api

from .schemas import EchoRequest
from .workflows.workflows import SLOWEST, EchoWorkflow

api = sync_call_api(
    EchoRequest,
    EchoWorkflow.run,
    execution_timeout=SLOWEST.execution_timeout,
    summary="Store a message as a text object after an optional delay (test integration).",
)

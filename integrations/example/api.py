"""The integration's HTTP API, mounted by main under the integration's name:
``/api/integrations/example``.

main answers ``POST .../tasks`` with 202 and starts the workflow; reads are main's, synced with Temporal. Only
main's kit is imported here: never the provider client, the activities or object storage.
"""

from __future__ import annotations

from services.main.kit import InputError, sync_call_api

from .schemas import ExampleRequest
from .workflows.workflows import CALL, ExampleWorkflow


def check(request: ExampleRequest) -> None:
    """What the schema cannot express; raise InputError naming the field (main answers 422)."""
    if not request.prompt.strip():
        raise InputError("prompt", "must not be blank")


# The workflow's input is the task and the request; pass build_input= to make another job of the request.
api = sync_call_api(ExampleRequest, ExampleWorkflow.run, execution_timeout=CALL.execution_timeout, check=check)

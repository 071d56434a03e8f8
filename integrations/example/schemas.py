"""Input and output types of this integration, shared by its API, workflow and activity.

Pure and deterministic (the workflow sandbox imports this module, and so does main), so no I/O here.
"""

from __future__ import annotations

from typing import Annotated, TypeAlias

import msgspec

from services.shared.sync_call import CallInput, TaskInput
from services.shared.tasks import StoredObject

CALL_ACTIVITY = "example.call"


class ExampleRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a user sends to create a task (``POST .../tasks``)."""

    prompt: Annotated[str, msgspec.Meta(min_length=1, max_length=10_000, description="what to generate")]


class ExampleResult(msgspec.Struct, frozen=True):
    """What the activity returns: where the result is, and small metadata. Never the bytes."""

    result: StoredObject
    model: str | None = None


# The workflow's input and the activity's: the task, and the request as the provider call needs it.
ExampleInput: TypeAlias = TaskInput[ExampleRequest]
ExampleCall: TypeAlias = CallInput[ExampleRequest]

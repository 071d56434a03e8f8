"""Input and output types of the echo integration, shared by its API and its workflow."""

from __future__ import annotations

from typing import Annotated, TypeAlias

import msgspec

from services.shared.sync_call import CallInput, TaskInput

PROCESS_ACTIVITY = "echo.process"
MAX_DELAY_SECONDS = 3600


class EchoRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    message: Annotated[str, msgspec.Meta(min_length=1, max_length=10_000, description="text to store")]
    delay_seconds: Annotated[
        float, msgspec.Meta(ge=0, le=MAX_DELAY_SECONDS, description="how long the activity works")
    ] = 0.0
    fail_attempts: Annotated[
        int, msgspec.Meta(ge=0, le=10, description="activity attempts that fail before one succeeds")
    ] = 0


EchoInput: TypeAlias = TaskInput[EchoRequest]
ProcessInput: TypeAlias = CallInput[EchoRequest]

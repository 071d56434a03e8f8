"""Input and output types of the example integration, shared by its API and its workflow."""

from __future__ import annotations

from typing import Annotated

import msgspec

PROCESS_ACTIVITY = "example.process"


class ExampleRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    message: Annotated[str, msgspec.Meta(min_length=1, max_length=10_000, description="text to store")]
    delay_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600, description="how long the activity works")] = 0.0
    fail_attempts: Annotated[
        int, msgspec.Meta(ge=0, le=10, description="activity attempts that fail before one succeeds")
    ] = 0


class ExampleInput(msgspec.Struct, frozen=True):
    task_id: str
    request: ExampleRequest


class ProcessInput(msgspec.Struct, frozen=True):
    task_id: str
    message: str
    delay_seconds: float
    fail_attempts: int

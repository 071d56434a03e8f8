"""A minimal sync-call integration for the kit's tests: one call to a provider that answers every request with
HTTP 200 and an envelope, ``{"code": 0, "data": {...}}`` or ``{"code": N, "message": ...}``, and sometimes with
an HTTP error status instead."""

from __future__ import annotations

from typing import TypeAlias

import msgspec

from services.shared.sync_call import CallInput, TaskInput
from services.shared.tasks import StoredObject

CALL_ACTIVITY = "kit_sync.call"


class Job(msgspec.Struct, frozen=True):
    prompt: str


class Called(msgspec.Struct, frozen=True):
    text: StoredObject
    model: str


AppInput: TypeAlias = TaskInput[Job]
AppCallInput: TypeAlias = CallInput[Job]

"""A minimal submit-poll integration for the kit's tests. Its provider's job states are ``queued``, ``working``,
``done``, ``error`` and ``killed``; a finished job's result is fetched in two steps (a call for a short-lived
link, then the link), and callbacks must first echo a challenge (see the main-side tests)."""

from __future__ import annotations

from typing import TypeAlias

import msgspec

from services.shared.submit_poll import Activities, CopyInput, JobInput, SubmitInput

NAMES = Activities.named("kit_poll")


class Request(msgspec.Struct, frozen=True):
    prompt: str


class ProviderJob(msgspec.Struct, frozen=True):
    """The provider's job as the workflow reads it."""

    id: str
    state: str
    error: str | None = None


AppInput: TypeAlias = JobInput[Request]
AppSubmit: TypeAlias = SubmitInput[Request]
AppCopy: TypeAlias = CopyInput[ProviderJob]

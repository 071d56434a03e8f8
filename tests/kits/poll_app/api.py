"""The minimal submit-poll integration's API: the pattern's refresh, and a callback whose provider first checks
the URL with a challenge that must be echoed."""

from __future__ import annotations

from typing import Any

import msgspec

from services.main.kit import ProviderCallback, submit_poll_api

from .schemas import Request
from .workflows import JOB, KitPollWorkflow


class _Challenge(msgspec.Struct):
    challenge: str | None = None


def challenge(body: bytes) -> dict[str, Any] | None:
    """``{"challenge": "..."}`` is the provider checking the URL: it wants the value back."""
    try:
        said = msgspec.json.decode(body, type=_Challenge).challenge
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return {"challenge": said} if said is not None else None


api = submit_poll_api(
    Request,
    KitPollWorkflow.run,
    execution_timeout=JOB.execution_timeout,
    callback=ProviderCallback(challenge=challenge),
)

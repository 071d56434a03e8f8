"""The minimal submit-poll integration's API: the pattern's refresh, and a callback whose provider first checks
the URL with a challenge that must be echoed."""

from __future__ import annotations

from typing import Any

import msgspec

from services.main.kit import REFRESH, IntegrationApi, NewTask, ProviderCallback

from .schemas import AppInput, Request
from .workflows import KitPollWorkflow


class _Challenge(msgspec.Struct):
    challenge: str | None = None


def challenge(body: bytes) -> dict[str, Any] | None:
    """``{"challenge": "..."}`` is the provider checking the URL: it wants the value back."""
    try:
        said = msgspec.json.decode(body, type=_Challenge).challenge
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return {"challenge": said} if said is not None else None


def build_input(new: NewTask[Request]) -> AppInput:
    return AppInput(new.task, new.request, callback_url=new.start.callback_url)


api = IntegrationApi(
    request_type=Request,
    workflow=KitPollWorkflow.run,
    build_input=build_input,
    actions=[REFRESH],
    callback=ProviderCallback(challenge=challenge),
)

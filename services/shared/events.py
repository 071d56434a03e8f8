"""Events that main publishes to communication and communication pushes to frontends."""

from __future__ import annotations

from typing import Any

import msgspec


class TaskEvent(msgspec.Struct, frozen=True):
    """``task.updated``: one per applied state change. ``changes`` holds only the fields that changed
    (status, progress, output with download URLs, error). ``version`` is the task's version after the change:
    with several main processes, events of one task may arrive out of order, and an event whose version is not
    above the last one seen is stale."""

    task_id: str
    integration: str
    status: str
    changes: dict[str, Any]
    timestamp: str
    version: int
    event: str = "task.updated"


class PublishRequest(msgspec.Struct, frozen=True):
    """Body of communication's ``POST /internal/publish``."""

    channel: str
    event: dict[str, Any]


class PublishBatch(msgspec.Struct, frozen=True):
    """Body of communication's ``POST /internal/publish/batch``: events in the order they are pushed."""

    events: list[PublishRequest]


class PublishResult(msgspec.Struct, frozen=True):
    delivered: int

"""Events that main publishes to communication and communication pushes to frontends."""

from __future__ import annotations

from typing import Any

import msgspec


class TaskEvent(msgspec.Struct, frozen=True):
    """``task.updated``: one per applied state change. ``changes`` holds only the fields that changed
    (status, progress, output with download URLs, error)."""

    task_id: str
    integration: str
    status: str
    changes: dict[str, Any]
    timestamp: str
    event: str = "task.updated"


class PublishRequest(msgspec.Struct, frozen=True):
    """Body of communication's ``POST /internal/publish``."""

    channel: str
    event: dict[str, Any]


class PublishResult(msgspec.Struct, frozen=True):
    delivered: int

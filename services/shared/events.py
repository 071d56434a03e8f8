"""Events that main writes to its outbox and communication pushes to frontends."""

from __future__ import annotations

from typing import Any

import msgspec


class TaskEvent(msgspec.Struct, frozen=True):
    """One per applied state change: ``task.updated`` (and ``task.deleted`` when a task is removed). ``changes``
    holds only the fields that changed (status, progress, output with download URLs, error). ``version`` is the
    task's version after the change; an event whose version is not above the last one seen for that task is stale.
    ``id`` identifies the event (JetStream's message id). communication adds the stream sequence ``seq`` when it
    delivers the event; a client resumes after a reconnect from the last ``seq`` it saw."""

    id: str
    task_id: str
    integration: str
    status: str
    changes: dict[str, Any]
    timestamp: str
    version: int
    event: str = "task.updated"

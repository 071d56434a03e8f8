"""What main's HTTP API returns."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from services.shared.manifest import ConsoleHints, Pattern
from services.shared.tasks import TaskError, TaskStatus

from .store import DeliveryStatus, WebhookEvent


class ObjectRead(msgspec.Struct, frozen=True):
    key: str
    content_type: str
    size: int
    url: str
    url_expires_at: datetime


class OutputRead(msgspec.Struct, frozen=True):
    objects: dict[str, ObjectRead]
    data: dict[str, Any]


class WebhookDeliveryRead(msgspec.Struct, frozen=True):
    """One webhook a change of the task sends. ``status``: pending (attempts go on), delivered (a 2xx answer), gone
    (the receiver answered 410: nothing more is sent), failed (every attempt failed), dropped (the task no longer
    exists: nothing was sent). ``last_error``: how the last failed attempt failed."""

    event: WebhookEvent
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    delivered_at: datetime | None


class WebhookSecretRead(msgspec.Struct, frozen=True):
    """Your webhook signing secret (Standard Webhooks: ``whsec_<base64 key>``), since when it signs, and after a
    rotation until when the previous one signs too (a second signature in ``webhook-signature``); null: no other."""

    secret: str
    created_at: datetime
    previous_valid_until: datetime | None


class TaskRead(msgspec.Struct, frozen=True):
    id: str
    integration: str
    status: TaskStatus
    input: dict[str, Any]
    output: OutputRead | None
    error: TaskError | None
    progress: float | None
    provider_task_id: str | None
    workflow_id: str
    created_at: datetime
    updated_at: datetime
    # Goes up by one with every applied change; events carry the same number.
    version: int
    links: dict[str, str]
    # The timeline: when the task must be done (its create plus its deadline), when it first became running and
    # when it reached its terminal state; null when not (yet) so, or for tasks from before the timeline.
    deadline_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    # Attempts at the provider work (sync-call: each try of the call; submit-poll: each submit, not the polls).
    provider_attempts: int | None
    # The webhooks the task's changes sent or are sending, oldest first; empty for a task without a webhook_url.
    webhooks: list[WebhookDeliveryRead]


class TaskPage(msgspec.Struct, frozen=True):
    items: list[TaskRead]
    total: int
    limit: int
    offset: int
    next_offset: int | None


class RealtimeToken(msgspec.Struct, frozen=True):
    token: str
    expires_at: datetime
    url: str
    channel: str


class Health(msgspec.Struct, frozen=True):
    status: str
    checks: dict[str, bool] = msgspec.field(default_factory=dict)


class IntegrationRead(msgspec.Struct, frozen=True):
    """An integration main serves, as its manifest declares it. Its create route is
    ``POST /api/integrations/<name>/tasks``, whose body schema is in this OpenAPI document."""

    name: str
    description: str
    pattern: Pattern
    # How the web console presents it (label, fields shown first, text widgets, examples); null: none declared.
    console: ConsoleHints | None


class IntegrationList(msgspec.Struct, frozen=True):
    items: list[IntegrationRead]


class ActiveTasks(msgspec.Struct, frozen=True):
    """Tasks queued or running at once: your limit, and how many you have."""

    limit: int
    used: int


class RequestRate(msgspec.Struct, frozen=True):
    """Your API key's token bucket for creates and task actions (refresh): refilled at ``per_second``, holding at
    most ``burst``; ``available`` requests may be sent at once now."""

    per_second: float
    burst: int
    available: float


class Limits(msgspec.Struct, frozen=True):
    active_tasks: ActiveTasks
    requests: RequestRate
    # The most urgent priority you may give a task (1 is the most urgent), and the one a task gets without one.
    highest_priority: int
    default_priority: int

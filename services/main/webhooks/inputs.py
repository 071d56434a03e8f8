"""What a delivery's workflow gets and does: the names of its activities and its one input. No secret, URL or task
data: the activities read those from main's store, so none of it enters Temporal's history."""

from __future__ import annotations

import msgspec

DELIVER_ACTIVITY = "webhook.deliver"
GIVE_UP_ACTIVITY = "webhook.give_up"
WORKFLOW_ID_PREFIX = "webhook-"


def delivery_workflow_id(delivery_id: str) -> str:
    # Not task-*: the reconciler treats those as task workflows.
    return f"{WORKFLOW_ID_PREFIX}{delivery_id}"


class DeliveryInput(msgspec.Struct, frozen=True, kw_only=True):
    """One delivery and its retry schedule (main's MAIN_WEBHOOK_RETRY_* and _MAX_ATTEMPTS when it was started)."""

    delivery_id: str
    initial_seconds: float
    backoff: float
    max_seconds: float
    max_attempts: int
    # One attempt: the POST with its redirects, and the store reads and writes around it.
    attempt_seconds: float

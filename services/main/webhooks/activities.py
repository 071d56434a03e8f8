"""The activities of a delivery's workflow, run by main's platform worker with main's store at hand: each attempt
reads the delivery, the task and the owner's secrets from the store (so none of them enters Temporal's history),
signs the task as ``GET /api/tasks/{id}`` shows it now, POSTs it under the webhook outbound rules, and records the
attempt in the delivery row."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import httpx
import msgspec
from temporalio import activity
from temporalio.exceptions import ApplicationError

from services.shared.outbound import Outbound, OutboundError

from ..service import TaskService
from ..store import DeliveryStatus
from .inputs import DELIVER_ACTIVITY, GIVE_UP_ACTIVITY
from .signing import new_secret, signed_headers

log = logging.getLogger("main.webhooks")

GONE = 410
# Longer answers are cut: the delivery row keeps a summary, not the receiver's page.
MAX_ERROR_CHARS = 300


class DeliveryActivities:
    def __init__(self, tasks: TaskService, outbound: Outbound) -> None:
        self._tasks = tasks
        self._outbound = outbound

    @activity.defn(name=DELIVER_ACTIVITY)
    async def deliver(self, delivery_id: str) -> DeliveryStatus:
        """One attempt. Ends without an error when the delivery is over (delivered, gone, or its task no longer
        exists); raises a retryable error after any other answer or a failed connection."""
        store = self._tasks.store
        delivery = await store.delivery(delivery_id)
        if delivery is None or delivery.status != "pending":
            return "dropped" if delivery is None else delivery.status
        record = await store.get(delivery.task_id)
        if record is None or record.webhook_url is None:
            await store.end_delivery(delivery_id, "dropped", "the task no longer exists")
            return "dropped"
        body = msgspec.json.encode(self._tasks.read(record))
        secrets = await store.signing_secrets(record.owner, new_secret())
        now = time.time()
        headers = signed_headers(secrets.signing(datetime.fromtimestamp(now, UTC)), delivery.id, int(now), body)
        headers |= {"content-type": "application/json", "webhook-event": delivery.event}
        try:
            async with self._outbound.send("POST", record.webhook_url, content=body, headers=headers) as response:
                answer = response.status_code
        except OutboundError as exc:
            error = f"{exc.code}: {exc.message}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        else:
            if 200 <= answer < 300:
                await store.record_attempt(delivery_id, "delivered", None, datetime.now(UTC))
                return "delivered"
            if answer == GONE:
                await store.record_attempt(delivery_id, "gone", "HTTP 410: the receiver wants no more deliveries")
                return "gone"
            error = f"HTTP {answer}"
        error = error[:MAX_ERROR_CHARS]
        await store.record_attempt(delivery_id, "pending", error)
        log.info("webhook delivery %s (task %s), attempt failed: %s", delivery_id, record.id, error)
        raise ApplicationError(f"webhook delivery failed: {error}")

    @activity.defn(name=GIVE_UP_ACTIVITY)
    async def give_up(self, delivery_id: str) -> None:
        """Every attempt failed: the delivery ends failed, with the last attempt's error."""
        await self._tasks.store.end_delivery(delivery_id, "failed", None)

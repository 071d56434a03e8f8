from __future__ import annotations

import asyncio

from temporalio import activity

from services.shared.storage import ObjectStore
from services.shared.tasks import StoredObject

from ..schemas import PROCESS_ACTIVITY, ProcessInput

HEARTBEAT_SECONDS = 1.0


def object_key(task_id: str) -> str:
    # Deterministic, so a retried attempt overwrites instead of leaving a second object.
    return f"tasks/{task_id}/example.txt"


class ExampleActivities:
    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    @activity.defn(name=PROCESS_ACTIVITY)
    async def process(self, input: ProcessInput) -> StoredObject:
        if activity.info().attempt <= input.fail_attempts:
            raise RuntimeError(f"simulated failure on attempt {activity.info().attempt}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + input.delay_seconds
        # Heartbeats let a restarted worker take over quickly and let cancellation reach the activity.
        while (remaining := deadline - loop.time()) > 0:
            activity.heartbeat()
            await asyncio.sleep(min(HEARTBEAT_SECONDS, remaining))
        data = input.message.encode()
        key = object_key(input.task_id)
        await self._store.put_bytes(key, data, "text/plain; charset=utf-8")
        return StoredObject(key=key, content_type="text/plain; charset=utf-8", size=len(data))

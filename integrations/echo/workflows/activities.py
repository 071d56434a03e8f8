from __future__ import annotations

import asyncio

from temporalio import activity

from services.shared.activity_kit import ActivityKit
from services.shared.tasks import StoredObject

from ..schemas import PROCESS_ACTIVITY, ProcessInput


class EchoActivities:
    def __init__(self, kit: ActivityKit) -> None:
        self._kit = kit

    @activity.defn(name=PROCESS_ACTIVITY)
    async def process(self, input: ProcessInput) -> StoredObject:
        request = input.job
        async with self._kit.running(input.task):
            if activity.info().attempt <= request.fail_attempts:
                raise RuntimeError(f"simulated failure on attempt {activity.info().attempt}")
            # The "provider call": heartbeating, so a restarted worker takes over quickly and a cancel arrives.
            await self._kit.heartbeating(asyncio.sleep(request.delay_seconds))
            data = request.message.encode()
            return await self._kit.put(input.task, "echo", "txt", data, "text/plain; charset=utf-8")

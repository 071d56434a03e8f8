from __future__ import annotations

from temporalio import activity

from services.shared.activity_kit import ActivityKit

from .provider import Client
from .schemas import CALL_ACTIVITY, AppCallInput, Called


class AppActivities:
    def __init__(self, kit: ActivityKit, client: Client) -> None:
        self._kit = kit
        self._client = client

    @activity.defn(name=CALL_ACTIVITY)
    async def call(self, input: AppCallInput) -> Called:
        async with self._kit.running(input.task):
            generated = await self._kit.call(self._client.generate(input.job.prompt))
            text = await self._kit.put(input.task, "text", "txt", generated.data, "text/plain")
        return Called(text, generated.model)

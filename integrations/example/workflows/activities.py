from __future__ import annotations

from dataclasses import dataclass

from temporalio import activity

from services.shared.activity_kit import ActivityKit

from ..schemas import CALL_ACTIVITY, ExampleCall, ExampleResult
from .provider import ProviderClient


@dataclass(frozen=True)
class ExampleActivities:
    kit: ActivityKit
    provider: ProviderClient

    @activity.defn(name=CALL_ACTIVITY)
    async def call(self, input: ExampleCall) -> ExampleResult:
        """Report running, call the provider, put the result into object storage; where it is (never the bytes)."""
        async with self.kit.running(input.task):
            generated = await self.kit.call(self.provider.generate(input.job.prompt))
            # The extension is the integration's: a retried attempt overwrites the same object.
            stored = await self.kit.put(input.task, "result", "txt", generated.data, generated.content_type)
        return ExampleResult(stored, generated.model)

from __future__ import annotations

from services.shared.worker_kit import WorkerContext, WorkerSpec

from .activities import ImageActivities
from .provider import GeminiClient, GeminiSettings
from .workflows import NanoBanana2ImageWorkflow


def worker_spec(ctx: WorkerContext) -> WorkerSpec:
    # Settings are read once, here: a missing key stops the worker at start-up with the variable's name.
    gemini = GeminiClient(ctx.http, GeminiSettings.from_env(ctx.env, ctx.provider_endpoint()))
    return WorkerSpec(
        workflows=[NanoBanana2ImageWorkflow],
        activities=[*ctx.report_activities(), ImageActivities(ctx.activity_kit(), gemini).generate],
    )

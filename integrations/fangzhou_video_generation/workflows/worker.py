from __future__ import annotations

from services.shared.worker_kit import WorkerContext, WorkerSpec

from .activities import FangzhouActivities
from .provider import ArkClient, ArkSettings
from .workflows import FangzhouVideoWorkflow


def worker_spec(ctx: WorkerContext) -> WorkerSpec:
    # Read once, when the worker starts: Ark's address, key, default model and the poll policy.
    settings = ArkSettings.from_env(ctx.env, ctx.provider_endpoint())
    ark = FangzhouActivities(ctx.activity_kit(), ArkClient(ctx.http, settings), settings)
    return WorkerSpec(
        workflows=[FangzhouVideoWorkflow],
        activities=[*ctx.report_activities(), ark.submit, ark.query, ark.cancel, ark.copy_result],
    )

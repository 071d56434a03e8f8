from __future__ import annotations

from services.shared.worker_kit import WorkerContext, WorkerSpec

from .activities import EchoActivities
from .workflows import EchoWorkflow


def worker_spec(ctx: WorkerContext) -> WorkerSpec:
    return WorkerSpec(
        workflows=[EchoWorkflow],
        activities=[*ctx.report_activities(), EchoActivities(ctx.activity_kit()).process],
    )

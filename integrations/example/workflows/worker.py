from __future__ import annotations

from services.shared.worker_kit import WorkerContext, WorkerSpec

from .activities import ExampleActivities
from .workflows import ExampleWorkflow


def worker_spec(ctx: WorkerContext) -> WorkerSpec:
    return WorkerSpec(
        workflows=[ExampleWorkflow],
        activities=[*ctx.report_activities(), ExampleActivities(ctx.store).process],
    )

from __future__ import annotations

from services.shared.worker_kit import WorkerContext, WorkerSpec

from .activities import ExampleActivities
from .provider import ProviderClient, ProviderSettings
from .workflows import ExampleWorkflow


def worker_spec(ctx: WorkerContext) -> WorkerSpec:
    # Settings are read once, here: a missing key (or base URL) stops the worker at start-up, naming the variable.
    provider = ProviderClient(ctx.http, ProviderSettings.from_env(ctx.env, ctx.provider_endpoint()))
    # Every workflow, and every activity they run (the shared report activity too).
    return WorkerSpec(
        workflows=[ExampleWorkflow],
        activities=[*ctx.report_activities(), ExampleActivities(ctx.activity_kit(), provider).call],
    )

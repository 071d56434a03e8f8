"""What an integration's ``workflows/worker.py`` receives and returns.

Each integration exposes ``worker_spec(ctx: WorkerContext) -> WorkerSpec``; the launcher builds one
Temporal Worker from it on the integration's own task queue. The spec lists every workflow and every activity
the workflows run, the shared report activity included (``ctx.report_activities()``): an activity missing
from it fails every attempt of the step that runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from .activity_kit import ActivityKit
from .reporting import ReportActivities, ReportClient
from .settings import Env, PlatformSettings
from .storage import ObjectStore


@dataclass(frozen=True)
class WorkerContext:
    settings: PlatformSettings
    env: Env
    http: httpx.AsyncClient
    store: ObjectStore
    reporter: ReportClient

    def report_activities(self) -> list[Callable[..., Any]]:
        """The shared ``report_task`` activity; every task workflow reports through it. Its final report of a task
        that failed or was cancelled also removes the task's objects."""
        return [ReportActivities(self.reporter, self.store).report_task]

    def activity_kit(self) -> ActivityKit:
        """What the integration's activities report running through and store their results with."""
        return ActivityKit(self.store, self.reporter)


@dataclass(frozen=True)
class WorkerSpec:
    workflows: Sequence[type] = field(default_factory=list[type])
    activities: Sequence[Callable[..., Any]] = field(default_factory=list[Callable[..., Any]])

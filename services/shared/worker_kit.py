"""What an integration's ``workflows/worker.py`` receives and returns.

Each integration exposes ``worker_spec(ctx: WorkerContext) -> WorkerSpec``; the launcher builds one
Temporal Worker from it on the integration's own task queue. The spec lists every workflow and every activity
the workflows run, the shared report activity included (``ctx.report_activities()``): an activity missing
from it fails every attempt of the step that runs it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from .activity_kit import ActivityKit
from .manifest import Manifest
from .outbound import Outbound
from .reporting import ReportActivities, ReportClient
from .settings import Env, PlatformSettings, ProviderEndpoint, SettingsError
from .storage import ObjectStore

log = logging.getLogger("async_task")


@dataclass(frozen=True)
class WorkerContext:
    settings: PlatformSettings
    env: Env
    # For the provider's API.
    http: httpx.AsyncClient
    store: ObjectStore
    reporter: ReportClient
    # For URLs from outside (a provider's result links): the worker's outbound rules.
    outbound: Outbound
    # The integration whose worker_spec is being called (set by the launcher for each).
    manifest: Manifest | None = None

    def provider_endpoint(self) -> ProviderEndpoint:
        """The integration's provider as its manifest declares it: base URL and key from the worker's environment.
        Raises SettingsError naming the variable when the key is missing (the worker then exits)."""
        manifest = self.manifest
        if manifest is None or manifest.provider is None:
            raise SettingsError("worker_spec asks for a provider that manifest.json does not declare (`provider`)")
        endpoint = ProviderEndpoint.from_env(self.env, manifest.provider)
        if endpoint.simulated:
            log.warning(
                "integration %s: no %s, so the provider simulator at %s stands in for its provider",
                manifest.name,
                manifest.provider.api_key_env,
                endpoint.base_url,
            )
        return endpoint

    def report_activities(self) -> list[Callable[..., Any]]:
        """The shared ``report_task`` activity; every task workflow reports through it. Its final report of a task
        that failed or was cancelled also removes the task's objects."""
        return [ReportActivities(self.reporter, self.store).report_task]

    def activity_kit(self) -> ActivityKit:
        """What the integration's activities report running through and store their results with."""
        return ActivityKit(self.store, self.reporter, outbound=self.outbound)


@dataclass(frozen=True)
class WorkerSpec:
    workflows: Sequence[type] = field(default_factory=list[type])
    activities: Sequence[Callable[..., Any]] = field(default_factory=list[Callable[..., Any]])

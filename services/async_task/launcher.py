"""The async task component: for each integration, one Temporal Worker on its task queue (its workflows, reports
and other activities) and one on its provider queue (its provider calls, rate-limited by the Temporal server)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from services.shared.discovery import Discovery, Integration, parse_blacklist
from services.shared.http_link import HttpLinkPool
from services.shared.job_slot_activities import JobSlotActivities
from services.shared.job_slots import JobSlotsWorkflow
from services.shared.manifest import ProviderLimits, limit_settings
from services.shared.outbound import Outbound, OutboundRules
from services.shared.reporting import ReportClient
from services.shared.settings import Env, PlatformSettings, SettingsError
from services.shared.storage import ObjectStore
from services.shared.worker_kit import WorkerContext, WorkerSpec
from services.shared.workflow_kit import provider_queue

log = logging.getLogger("async_task")

# Struct types must be the same class objects inside and outside the sandbox for msgspec to decode into
# them, so the shared task model and msgspec itself are passed through.
WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("msgspec", "services.shared")
)


# A cancel reaches a running activity in the answer to its next heartbeat, which the SDK sends at most every 0.8 x
# the activity's heartbeat timeout (48 s for a copy). Capped, a cancelled task's activity stops within seconds, and
# so does the workflow that waits for it.
HEARTBEAT_THROTTLE = timedelta(seconds=5)


class LauncherError(Exception):
    pass


@dataclass(frozen=True)
class LauncherSettings:
    platform: PlatformSettings
    # Workers -> main: the credential of the report API, on main's internal listener.
    report_token: str = field(repr=False)
    main_internal_url: str = "http://127.0.0.1:8010"
    blacklist: tuple[str, ...] = ()
    shutdown_timeout: timedelta = timedelta(seconds=10)
    # Activity slots per Worker. Provider activities mostly wait on slow calls, so slots are cheap; the
    # shared HTTP pool and the report connections are sized to match (see __main__).
    max_concurrent_activities: int = 200
    # What the activities may fetch from outside (OUTBOUND_*): by default https to public addresses only.
    outbound: OutboundRules = field(default_factory=OutboundRules)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LauncherSettings:
        env = Env(environ)
        return cls(
            platform=PlatformSettings.from_env(env),
            report_token=env.secret("REPORT_TOKEN"),
            main_internal_url=env.get_http_url("MAIN_INTERNAL_URL", cls.main_internal_url),
            blacklist=parse_blacklist(env.raw("INTEGRATIONS_BLACKLIST")),
            shutdown_timeout=timedelta(
                seconds=env.get_float("ASYNC_TASK_SHUTDOWN_SECONDS", cls.shutdown_timeout.total_seconds())
            ),
            max_concurrent_activities=env.get_int(
                "ASYNC_TASK_MAX_CONCURRENT_ACTIVITIES", cls.max_concurrent_activities
            ),
            outbound=OutboundRules.from_env(env),
        )


def select(discovery: Discovery, names: Sequence[str]) -> list[Integration]:
    """All served integrations, or the named ones (a name that is unknown or excluded is an error)."""
    if not names:
        if not discovery.integrations:
            raise LauncherError("no integrations to serve (all excluded or none found)")
        return list(discovery.integrations)
    selected: list[Integration] = []
    for name in names:
        try:
            selected.append(discovery.get(name))
        except KeyError as exc:
            excluded = next((e for e in discovery.excluded if e.known_as(name)), None)
            hint = f" (excluded: folder {excluded.folder}, {excluded.reason})" if excluded else ""
            raise LauncherError(f"{exc.args[0]}{hint}") from exc
    return selected


def load_spec(integration: Integration, ctx: WorkerContext) -> WorkerSpec:
    """The integration's ``worker_spec``, given ``ctx`` with the integration's manifest."""
    module = integration.import_worker_module()
    factory = getattr(module, "worker_spec", None)
    if not callable(factory):
        raise LauncherError(f"integration {integration.name!r}: workflows/worker.py defines no worker_spec(ctx)")
    spec = factory(dataclasses.replace(ctx, manifest=integration.manifest))
    if not isinstance(spec, WorkerSpec) or not spec.workflows:
        raise LauncherError(f"integration {integration.name!r}: worker_spec() must return a WorkerSpec with workflows")
    return spec


def task_queue_workers(
    client: Client,
    task_queue: str,
    workflows: Sequence[type],
    activities: Sequence[Callable[..., Any]],
    limits: ProviderLimits,
    *,
    shutdown_timeout: timedelta,
    max_concurrent_activities: int,
    identity: str | None = None,
) -> list[Worker]:
    """The two Workers that serve one integration's task queue: its workflows (and the job slots workflow) on
    the queue itself, and its provider queue, where the server dispatches at most ``requests_per_second``
    activities a second over all pollers. Both register every activity: where an activity runs is the workflow's
    choice (``Step.provider_call``), and an activity scheduled on the task queue before it had a provider queue
    still finds a worker."""
    registered = [*activities, *_slot_activities(client, task_queue, limits)]
    options: dict[str, Any] = {
        "graceful_shutdown_timeout": shutdown_timeout,
        "max_concurrent_activities": max_concurrent_activities,
        "max_heartbeat_throttle_interval": HEARTBEAT_THROTTLE,
        "identity": identity,
    }
    return [
        Worker(
            client,
            task_queue=task_queue,
            workflows=[*workflows, JobSlotsWorkflow],
            activities=registered,
            workflow_runner=WORKFLOW_RUNNER,
            **options,
        ),
        Worker(
            client,
            task_queue=provider_queue(task_queue),
            activities=registered,
            max_task_queue_activities_per_second=limits.requests_per_second,
            **options,
        ),
    ]


def _slot_activities(client: Client, task_queue: str, limits: ProviderLimits) -> list[Callable[..., Any]]:
    slots = JobSlotActivities(client, task_queue, limits.max_concurrent_jobs)
    return [slots.ask, slots.closed]


def provider_limits(integration: Integration, env: Env) -> ProviderLimits:
    """The manifest's limits with the environment's overrides, each checked like the manifest's value."""
    declared = integration.manifest.limits
    rate_name, jobs_name = limit_settings(integration.name)
    rate = env.get_float(rate_name, 0.0) if env.optional(rate_name) else declared.requests_per_second
    jobs = env.get_int(jobs_name, 0, minimum=1) if env.optional(jobs_name) else declared.max_concurrent_jobs
    if rate is not None and rate <= 0:
        raise SettingsError(f"environment variable {rate_name} must be positive, got {rate}")
    return ProviderLimits(rate, jobs)


def build_workers(
    client: Client,
    integrations: Sequence[Integration],
    ctx: WorkerContext,
    shutdown_timeout: timedelta,
    max_concurrent_activities: int,
) -> list[Worker]:
    workers: list[Worker] = []
    for integration in integrations:
        spec = load_spec(integration, ctx)
        limits = provider_limits(integration, ctx.env)
        workers += task_queue_workers(
            client,
            integration.task_queue,
            spec.workflows,
            spec.activities,
            limits,
            identity=f"{integration.name}@{_hostname()}",
            shutdown_timeout=shutdown_timeout,
            max_concurrent_activities=max_concurrent_activities,
        )
        log.info(
            "worker ready: integration=%s task_queue=%s workflows=%s activities=%d requests_per_second=%s "
            "max_concurrent_jobs=%s",
            integration.name,
            integration.task_queue,
            ",".join(w.__name__ for w in spec.workflows),
            len(spec.activities),
            limits.requests_per_second or "unlimited",
            limits.max_concurrent_jobs or "uncapped",
        )
    return workers


def _hostname() -> str:
    return socket.gethostname()


async def run_workers(workers: Sequence[Worker], stop: asyncio.Event) -> None:
    """Run every worker until ``stop`` is set, then shut them all down explicitly (graceful, bounded)."""

    async def run_one(worker: Worker) -> None:
        async with worker:
            await stop.wait()

    tasks = [asyncio.create_task(run_one(w), name=f"worker:{w.task_queue}") for w in workers]
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    for task in done:
        error = task.exception()
        if error is not None:
            # One worker died: stop the others so the process exits and its supervisor restarts it.
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise error
    await asyncio.gather(*tasks)


# Below the report activity's start-to-close timeout, so an attempt that gets no answer fails as a LinkError
# naming the cause rather than as an activity timeout.
REPORT_TIMEOUT_SECONDS = 10.0


def make_context(settings: LauncherSettings, env: Env, http: httpx.AsyncClient, connections: int) -> WorkerContext:
    """What every worker_spec gets; ``connections``: report connections, and outbound ones, at most."""
    links = HttpLinkPool(settings.main_internal_url, settings.report_token, connections, REPORT_TIMEOUT_SECONDS)
    return WorkerContext(
        settings=settings.platform,
        env=env,
        http=http,
        store=ObjectStore(settings.platform.storage),
        reporter=ReportClient(links),
        outbound=Outbound(settings.outbound, httpx.Limits(max_connections=connections, max_keepalive_connections=20)),
    )

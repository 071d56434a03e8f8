"""The async task component: one Temporal Worker per integration, each on that integration's task queue."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from services.shared.discovery import Discovery, Integration, parse_blacklist
from services.shared.http_link import HttpLinkPool
from services.shared.outbound import Outbound, OutboundRules
from services.shared.reporting import ReportClient
from services.shared.settings import Env, PlatformSettings
from services.shared.storage import ObjectStore
from services.shared.worker_kit import WorkerContext, WorkerSpec

log = logging.getLogger("async_task")

# Struct types must be the same class objects inside and outside the sandbox for msgspec to decode into
# them, so the shared task model and msgspec itself are passed through.
WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("msgspec", "services.shared")
)


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
    module = integration.import_worker_module()
    factory = getattr(module, "worker_spec", None)
    if not callable(factory):
        raise LauncherError(f"integration {integration.name!r}: workflows/worker.py defines no worker_spec(ctx)")
    spec = factory(ctx)
    if not isinstance(spec, WorkerSpec) or not spec.workflows:
        raise LauncherError(f"integration {integration.name!r}: worker_spec() must return a WorkerSpec with workflows")
    return spec


def build_workers(
    client: Client,
    integrations: Sequence[Integration],
    ctx: WorkerContext,
    shutdown_timeout: timedelta,
    max_concurrent_activities: int,
) -> list[Worker]:
    workers: list[Worker] = []
    for integration in integrations:
        spec = load_spec(integration, dataclasses.replace(ctx, manifest=integration.manifest))
        workers.append(
            Worker(
                client,
                task_queue=integration.task_queue,
                workflows=list(spec.workflows),
                activities=list(spec.activities),
                workflow_runner=WORKFLOW_RUNNER,
                graceful_shutdown_timeout=shutdown_timeout,
                max_concurrent_activities=max_concurrent_activities,
                identity=f"{integration.name}@{_hostname()}",
            )
        )
        log.info(
            "worker ready: integration=%s task_queue=%s workflows=%s activities=%d",
            integration.name,
            integration.task_queue,
            ",".join(w.__name__ for w in spec.workflows),
            len(spec.activities),
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

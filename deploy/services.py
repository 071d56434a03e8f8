"""Our own services (main, communication, the provider simulator, one worker per integration) and the
environment contract they are started with, in both run modes."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from services.shared.discovery import Discovery, DiscoveryError, Integration, discover, parse_blacklist
from services.shared.manifest import slug
from services.shared.settings import Env, TemporalSettings

from .catalog import APP_IMAGE, Middleware, healthcheck, published
from .errors import DeployError
from .paths import REPO_ROOT
from .probe import http_health, task_queue_pollers
from .spec import ComposeContext, ComposeService, Health, LocalContext, ProcessSpec

APP_BUILD = {"context": ".", "dockerfile": "docker/app.Dockerfile"}
# Provider credentials are passed through; without a key the integration talks to our simulator.
PROVIDERS = (("GEMINI_API_KEY", "GEMINI_BASE_URL"), ("ARK_API_KEY", "ARK_BASE_URL"))


@dataclass(frozen=True)
class AppService:
    name: str
    module: str
    port_field: str
    container_port: int
    # Published to the host in docker mode (user-facing).
    published: bool

    @property
    def env_prefix(self) -> str:
        return self.name.upper()

    def built(self) -> bool:
        return (REPO_ROOT / self.module.replace(".", "/") / "__main__.py").is_file()


# Start order: nothing depends on the simulator; main publishes to communication.
APP_SERVICES = (
    AppService("simulator", "services.simulator", "simulator", 8002, published=False),
    AppService("communication", "services.communication", "communication", 8001, published=True),
    AppService("main", "services.main", "main", 8000, published=True),
)
WORKER_MODULE = "services.async_task"


def worker_name(integration: Integration) -> str:
    return f"worker-{slug(integration.name)}"


def worker_built() -> bool:
    return (REPO_ROOT / WORKER_MODULE.replace(".", "/") / "__main__.py").is_file()


def discover_integrations(environ: Mapping[str, str] | None = None) -> tuple[Discovery, tuple[str, ...]]:
    env = os.environ if environ is None else environ
    blacklist = parse_blacklist(env.get("INTEGRATIONS_BLACKLIST"))
    try:
        return discover(blacklist=blacklist), blacklist
    except DiscoveryError as exc:
        raise DeployError(str(exc)) from exc


# --- local mode ----------------------------------------------------------------------------------------------


def local_environment(ctx: LocalContext, middleware: Sequence[Middleware]) -> dict[str, str]:
    """The shared contract every one of our local processes is started with (on top of the caller's env)."""
    env = dict(ctx.environ)
    for m in middleware:
        env.update(m.local_app_env(ctx))
    simulator_url = ctx.url(ctx.ports.simulator)
    env.update(
        {
            "MAIN_URL": ctx.url(ctx.ports.main),
            "COMMUNICATION_URL": ctx.url(ctx.ports.communication),
            "SIMULATOR_URL": simulator_url,
            "INTERNAL_TOKEN": ctx.secrets.internal_token,
            "REALTIME_SECRET": ctx.secrets.realtime_secret,
            # Keys given by the caller (e.g. tests with several users) are served next to the dev key.
            "API_KEYS": ",".join(filter(None, (ctx.secrets.api_keys, ctx.environ.get("API_KEYS", "")))),
            "DATABASE_URL": f"sqlite+aiosqlite:///{ctx.state_dir / 'main.db'}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    for service in APP_SERVICES:
        env[f"{service.env_prefix}_HOST"] = ctx.host
        env[f"{service.env_prefix}_PORT"] = str(getattr(ctx.ports, service.port_field))
    for key, base_url in PROVIDERS:
        if not ctx.environ.get(key):
            env.pop(key, None)
            env[base_url] = simulator_url
    return env


def local_app_processes(
    ctx: LocalContext, env: Mapping[str, str], integrations: Sequence[Integration]
) -> list[ProcessSpec]:
    specs: list[ProcessSpec] = []
    for service in APP_SERVICES:
        port = int(getattr(ctx.ports, service.port_field))
        url = f"{ctx.url(port)}/healthz"
        specs.append(
            ProcessSpec(
                name=service.name,
                kind="service",
                argv=(str(ctx.python), "-m", service.module),
                env=env,
                ports=(port,),
                main_port=port,
                ready=_http_ready(url),
                skip_reason=None if service.built() else "not built yet",
            )
        )
    for integration in integrations:
        specs.append(_local_worker(ctx, env, integration))
    return specs


def _http_ready(url: str) -> Callable[[], Health]:
    return lambda: http_health(url)


def _local_worker(ctx: LocalContext, env: Mapping[str, str], integration: Integration) -> ProcessSpec:
    # Alive (checked by the stack) and polling its task queue: the worker really serves the integration.
    name = worker_name(integration)
    # The worker's own Temporal settings, so the probe reaches Temporal the way the worker does.
    temporal = TemporalSettings.from_env(Env({"TEMPORAL_ADDRESS": ctx.temporal_address, **env}))

    def ready() -> Health:
        return task_queue_pollers(temporal, integration.task_queue)

    return ProcessSpec(
        name=name,
        kind="worker",
        argv=(str(ctx.python), "-m", WORKER_MODULE, integration.name),
        env=env,
        ports=(),
        main_port=None,
        ready=ready,
        skip_reason=None if worker_built() else "not built yet",
    )


# --- docker mode ---------------------------------------------------------------------------------------------


def compose_environment(enabled: Sequence[Middleware], disabled: Sequence[Middleware]) -> dict[str, str]:
    env: dict[str, str] = {}
    for m in disabled:
        # Not run by compose: take the address from the host environment.
        env.update({key: f"${{{key}}}" for key in m.compose_app_env()})
    for m in enabled:
        env.update(m.compose_app_env())
    env.update(
        {
            "MAIN_URL": "http://main:8000",
            "COMMUNICATION_URL": "http://communication:8001",
            "SIMULATOR_URL": "http://simulator:8002",
            # Development defaults: set real values for any deployment that is not your own machine.
            "INTERNAL_TOKEN": "${INTERNAL_TOKEN:-dev-internal-token}",
            "REALTIME_SECRET": "${REALTIME_SECRET:-dev-realtime-secret}",
            "API_KEYS": "${API_KEYS:-dev-api-key:dev}",
        }
    )
    for service in APP_SERVICES:
        env[f"{service.env_prefix}_HOST"] = "0.0.0.0"
        env[f"{service.env_prefix}_PORT"] = str(service.container_port)
    for key, base_url in PROVIDERS:
        env[key] = f"${{{key}:-}}"
        # `-` not `:-`: an empty base URL (set by `deploy-tool up` when a key is given) means the provider's own.
        env[base_url] = f"${{{base_url}-http://simulator:8002}}"
    return dict(sorted(env.items()))


def _public_urls() -> dict[str, str]:
    """The addresses main hands out, each for whoever uses it: the websocket URL goes to clients, so it is the
    port published on this machine; the callback base URL goes to providers, and the one a default stack calls
    back is the simulator, inside the compose network. Both are variables for deployments reached from elsewhere.
    """
    main = next(s for s in APP_SERVICES if s.name == "main")
    communication = next(s for s in APP_SERVICES if s.name == "communication")
    host_port = f"${{{communication.env_prefix}_HOST_PORT:-{communication.container_port}}}"
    return {
        "MAIN_PUBLIC_URL": f"${{MAIN_PUBLIC_URL:-http://{main.name}:{main.container_port}}}",
        "REALTIME_PUBLIC_URL": f"${{REALTIME_PUBLIC_URL:-ws://localhost:{host_port}/ws}}",
    }


def compose_app_services(
    ctx: ComposeContext, enabled: Sequence[Middleware], disabled: Sequence[Middleware]
) -> dict[str, ComposeService]:
    env = compose_environment(enabled, disabled)
    ready: dict[str, dict[str, str]] = {}
    for m in enabled:
        ready.update({svc: {"condition": cond} for svc, cond in m.compose_ready().items()})

    def app(command: list[str], test: list[str], interval: str, depends: dict[str, dict[str, str]]) -> ComposeService:
        service: ComposeService = {
            "image": APP_IMAGE,
            "init": True,
            "command": command,
            "environment": dict(env),
            "healthcheck": healthcheck(test, interval=interval),
            "restart": "unless-stopped",
        }
        if depends:
            service["depends_on"] = depends
        return service

    services: dict[str, ComposeService] = {}
    healthy = {"condition": "service_healthy"}
    for svc in APP_SERVICES:
        depends: dict[str, dict[str, str]] = {}
        if svc.name == "main":
            depends = {**ready, "communication": healthy}
        # The image's stdlib-only `healthcheck` script: a check runs every few seconds for as long as the stack
        # does, and it costs about half of what `python -m deploy.probe` (asyncio, the deploy package) does.
        service = app(
            ["python", "-m", svc.module],
            ["CMD", "healthcheck", f"http://127.0.0.1:{svc.container_port}/healthz"],
            "3s",
            depends,
        )
        if svc.name == "main":
            # One image for every app service; compose builds it once, for main, and the others reuse it.
            service = {"build": dict(APP_BUILD), **service}
            service["environment"]["DATABASE_URL"] = "sqlite+aiosqlite:////data/main.db"
            service["environment"]["INTEGRATIONS_BLACKLIST"] = ",".join(ctx.blacklist)
            service["environment"]["MAIN_WORKERS"] = "${MAIN_WORKERS:-1}"
            service["environment"].update(_public_urls())
            service["environment"] = dict(sorted(service["environment"].items()))
            service["volumes"] = ["task-store:/data"]
        if svc.published:
            service["ports"] = [published(f"{svc.env_prefix}_HOST_PORT", svc.container_port, svc.container_port)]
        services[svc.name] = service
    for integration in ctx.integrations:
        services[worker_name(integration)] = app(
            ["python", "-m", WORKER_MODULE, integration.name],
            ["CMD", "python", "-m", "deploy.probe", "task-queue", integration.task_queue],
            "5s",
            {**ready, "main": healthy, "simulator": healthy},
        )
    return services

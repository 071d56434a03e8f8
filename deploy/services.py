"""Our own services (main, communication, the provider simulator, one worker per integration) and, for each, its
contract: the settings and the secrets it reads. Both run modes start each service with exactly its contract; in
compose a secret reaches a container as a file in that service's own volume (``<VARIABLE>_FILE``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from services.shared.discovery import Discovery, DiscoveryError, Integration, discover, parse_blacklist
from services.shared.event_stream import PUBLISHER, READER
from services.shared.manifest import limit_settings, slug
from services.shared.settings import DEVELOPMENT_MODE, PROVIDER_SIMULATOR_URL, Env, TemporalSettings, password_variable

from . import front_door
from .catalog import (
    APP_IMAGE,
    APP_UID,
    CATALOG,
    RESULTS_BUCKET,
    TEMPORAL_SECRETS,
    TEMPORAL_TLS_SETTINGS,
    Middleware,
    MinIO,
    healthcheck,
    published,
    secrets_volume,
)
from .credentials import COMPOSE_STORE, SERVICE_SECRETS, secret_file
from .errors import DeployError
from .paths import REPO_ROOT
from .probe import http_health, task_queue_pollers
from .spec import ComposeContext, ComposeService, Health, LocalContext, ProcessSpec, Secrets

APP_BUILD = {"context": ".", "dockerfile": "docker/app.Dockerfile"}
# What a worker whose provider has a simulator stand-in also reads: the simulator's URL (explicitly given, it
# replaces a missing key) and the outbound rules that let it fetch the simulator's media links. Set by the local
# stack and the development override only; production compose leaves them unset (no simulator, nothing private).
SIMULATED_PROVIDER = (PROVIDER_SIMULATOR_URL, "OUTBOUND_ALLOW_HTTP", "OUTBOUND_ALLOWED_HOSTS")
TEMPORAL_CLIENT = ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", *TEMPORAL_TLS_SETTINGS)
S3_CLIENT = ("S3_ENDPOINT", "S3_BUCKET", "S3_SECURE")
S3_KEYS = ("S3_ACCESS_KEY", "S3_SECRET_KEY")
SECRETS_SERVICE = "secrets"


@dataclass(frozen=True)
class Contract:
    """What one service reads. ``secrets`` are names in the secret store (deploy.credentials), each read as the
    variable of the same name (or ``<NAME>_FILE`` in compose)."""

    settings: tuple[str, ...]
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class AppService:
    name: str
    module: str
    port_field: str
    container_port: int
    # Users reach it: directly in local mode, through the front door in compose.
    public: bool
    contract: Contract
    # The internal listener, never published: (Ports field, container port).
    internal: tuple[str, int] | None = None
    # Answers 200 once the service serves: local mode waits for it, compose's healthcheck asks it (the front door
    # starts once every replica answers it).
    ready_path: str = "/healthz"

    @property
    def env_prefix(self) -> str:
        return self.name.upper()

    def built(self) -> bool:
        return (REPO_ROOT / self.module.replace(".", "/") / "__main__.py").is_file()


# Start order: nothing depends on the simulator; communication is ready once it reads the event stream, which main
# creates.
APP_SERVICES = (
    AppService(
        "simulator",
        "services.simulator",
        "simulator",
        8002,
        public=False,
        contract=Contract(("SIMULATOR_HOST", "SIMULATOR_PORT", DEVELOPMENT_MODE)),
    ),
    AppService(
        "communication",
        "services.communication",
        "communication",
        8001,
        public=True,
        contract=Contract(
            ("COMMUNICATION_HOST", "COMMUNICATION_PORT", "COMMUNICATION_INTERNAL_PORT", "NATS_URL"),
            ("REALTIME_SECRET", password_variable(READER)),
        ),
        internal=("communication_internal", 8011),
        ready_path="/readyz",
    ),
    AppService(
        "main",
        "services.main",
        "main",
        8000,
        public=True,
        contract=Contract(
            (
                *TEMPORAL_CLIENT,
                "TEMPORAL_UI_URL",
                *S3_CLIENT,
                "S3_PUBLIC_ENDPOINT",
                "MAIN_HOST",
                "MAIN_PORT",
                "MAIN_INTERNAL_PORT",
                "MAIN_PUBLIC_URL",
                "REALTIME_PUBLIC_URL",
                "DATABASE_URL",
                "INTEGRATIONS_BLACKLIST",
                "MAIN_WORKERS",
                "MAIN_RETENTION_DAYS",
                "NATS_URL",
            ),
            (
                "API_KEYS",
                "REALTIME_SECRET",
                "REPORT_TOKEN",
                "REPORT_TOKEN_PREVIOUS",
                password_variable(PUBLISHER),
                "POSTGRES_PASSWORD",
                "CALLBACK_KEY",
                "CALLBACK_KEY_PREVIOUS",
                *S3_KEYS,
                *TEMPORAL_SECRETS,
            ),
        ),
        internal=("main_internal", 8010),
    ),
)
SERVICES = {s.name: s for s in APP_SERVICES}
WORKER_MODULE = "services.async_task"


def worker_name(integration: Integration) -> str:
    return f"worker-{slug(integration.name)}"


def provider_variables(integration: Integration) -> tuple[str, ...]:
    """The variables of the integration's provider, as its manifest declares them: key and base URL."""
    provider = integration.manifest.provider
    return () if provider is None else (provider.api_key_env, provider.base_url_env)


def worker_contract(integration: Integration) -> Contract:
    """A worker reads Temporal, object storage, main's internal address, its own provider's settings and its
    provider's limits only."""
    platform = Contract(
        (*TEMPORAL_CLIENT, *S3_CLIENT, "MAIN_INTERNAL_URL"), ("REPORT_TOKEN", *S3_KEYS, *TEMPORAL_SECRETS)
    )
    provider = provider_variables(integration)
    taken = sorted(set(provider) & {*platform.settings, *platform.secrets, *SIMULATED_PROVIDER})
    if taken:
        raise DeployError(f"integration {integration.name}: its provider variables {taken} are the platform's own")
    simulated = SIMULATED_PROVIDER if _simulator(integration) is not None else ()
    return Contract((*platform.settings, *provider, *simulated, *limit_settings(integration.name)), platform.secrets)


def _simulator(integration: Integration) -> str | None:
    provider = integration.manifest.provider
    return None if provider is None else provider.simulator


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


def _local_values(
    ctx: LocalContext, middleware: Sequence[Middleware], integrations: Sequence[Integration]
) -> dict[str, str]:
    """The value of every setting our local processes read, secrets included."""
    # SQLite unless a middleware (PostgreSQL) gives main another store.
    values: dict[str, str] = {"DATABASE_URL": f"sqlite+aiosqlite:///{ctx.state_dir / 'main.db'}"}
    for m in middleware:
        values.update(m.local_app_env(ctx))
    values.update(
        {
            "MAIN_INTERNAL_URL": ctx.url(ctx.ports.main_internal),
            "MAIN_PUBLIC_URL": ctx.url(ctx.ports.main),
            "REALTIME_PUBLIC_URL": f"ws://{ctx.host}:{ctx.ports.communication}/ws",
            # The local stack is a development machine: the simulator's keys and the tests' short ones are fine.
            DEVELOPMENT_MODE: "true",
        }
    )
    for service in APP_SERVICES:
        values[f"{service.env_prefix}_HOST"] = ctx.host
        values[f"{service.env_prefix}_PORT"] = str(getattr(ctx.ports, service.port_field))
        if service.internal is not None:
            values[f"{service.env_prefix}_INTERNAL_PORT"] = str(getattr(ctx.ports, service.internal[0]))
    for name in ("INTEGRATIONS_BLACKLIST", "MAIN_WORKERS"):
        if ctx.environ.get(name):
            values[name] = ctx.environ[name]
    # A provider key given by the caller is used (with its base URL, when given); without one, the simulator stands in.
    for name in {n for i in integrations for n in provider_variables(i)}:
        if ctx.environ.get(name):
            values[name] = ctx.environ[name]
    values[PROVIDER_SIMULATOR_URL] = ctx.url(ctx.ports.simulator)
    # The simulator's media links are plain http on this host.
    values["OUTBOUND_ALLOW_HTTP"] = "true"
    values["OUTBOUND_ALLOWED_HOSTS"] = f"{ctx.host}:{ctx.ports.simulator}"
    # Keys given by the caller (e.g. tests with several users) are served next to the dev key.
    secrets = Secrets(ctx.secrets.values, ctx.environ.get("API_KEYS", ""))
    # A middleware that is not used (PostgreSQL in the single shape) gives its secrets to nobody.
    unused = {name for m in unused_middleware(middleware) for name in m.compose_secrets()}
    for name in (*secrets.values, "API_KEYS"):
        value = secrets.get(name)
        if value is not None and name not in unused:
            values[name] = value
    return values


def unused_middleware(enabled: Sequence[Middleware]) -> list[Middleware]:
    """Catalog entries that are neither enabled nor expected elsewhere: their settings reach no service."""
    return [m for m in CATALOG.values() if m not in enabled and not m.external_when_disabled]


def local_env(contract: Contract, values: Mapping[str, str]) -> dict[str, str]:
    """A process's environment on top of the caller's: its contract, development mode, unbuffered output."""
    names = (*contract.settings, *contract.secrets, DEVELOPMENT_MODE)
    return {"PYTHONUNBUFFERED": "1", **{n: values[n] for n in names if n in values}}


def local_environment(ctx: LocalContext, middleware: Sequence[Middleware]) -> dict[str, str]:
    """The caller's environment plus every setting of every one of our services: what tests start extra service
    processes with (includes secrets: do not log it)."""
    discovery, _ = discover_integrations(ctx.environ)
    return {**ctx.environ, **_local_values(ctx, middleware, discovery.integrations), "PYTHONUNBUFFERED": "1"}


# In the scale shape, a second replica of each of these runs beside the first (``<name>-2``, ports ``<field>_2``
# and, for the internal listener, ``<field>_2_internal``).
REPLICATED = ("main", "communication")


def local_app_processes(
    ctx: LocalContext, middleware: Sequence[Middleware], integrations: Sequence[Integration]
) -> list[ProcessSpec]:
    values = _local_values(ctx, middleware, integrations)
    specs: list[ProcessSpec] = []
    for service in APP_SERVICES:
        replicas = 2 if ctx.shape == "scale" and service.name in REPLICATED else 1
        for replica in range(1, replicas + 1):
            suffix = "" if replica == 1 else f"_{replica}"
            port = int(getattr(ctx.ports, service.port_field + suffix))
            env = local_env(service.contract, values)
            ports: tuple[int, ...] = (port,)
            if service.internal is not None:
                internal = int(getattr(ctx.ports, f"{service.port_field}{suffix}_internal"))
                ports = (port, internal)
                env[f"{service.env_prefix}_INTERNAL_PORT"] = str(internal)
            if replica > 1:
                env[f"{service.env_prefix}_PORT"] = str(port)
                if service.name == "main":
                    # Clients of this replica are sent to the communication replica of the same number.
                    env["REALTIME_PUBLIC_URL"] = f"ws://{ctx.host}:{getattr(ctx.ports, 'communication' + suffix)}/ws"
            specs.append(
                ProcessSpec(
                    name=service.name if replica == 1 else f"{service.name}-{replica}",
                    kind="service",
                    argv=(str(ctx.python), "-m", service.module),
                    env=env,
                    ports=ports,
                    main_port=port,
                    ready=_http_ready(f"{ctx.url(port)}{service.ready_path}"),
                    skip_reason=None if service.built() else "not built yet",
                )
            )
    for integration in integrations:
        # A limit set in the caller's environment overrides the manifest's.
        limits = {name: ctx.environ[name] for name in limit_settings(integration.name) if ctx.environ.get(name)}
        env = local_env(worker_contract(integration), {**values, **limits})
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


def _compose_values(
    ctx: ComposeContext, enabled: Sequence[Middleware], disabled: Sequence[Middleware]
) -> dict[str, str]:
    """The value of every setting in compose.yaml, as compose interpolates it (secrets are files, not here)."""
    values: dict[str, str] = {}
    for m in disabled:
        # Not run by compose: the address, and the credentials, come from the host environment.
        values.update(m.compose_external_env())
    for m in enabled:
        values.update(m.compose_app_env())
    main = SERVICES["main"]
    entry = f"localhost:${{{front_door.HOST_PORT_VARIABLE}:-{front_door.PORT}}}"
    values.update(
        {
            "MAIN_INTERNAL_URL": f"http://main:{_internal_port(main)}",
            # The addresses main hands out all lead through the front door: to clients on this machine its
            # published port (the websocket, and presigned downloads when compose runs the object store), to
            # providers its name inside the network (the callback base URL). Variables for deployments reached
            # from elsewhere.
            "MAIN_PUBLIC_URL": f"${{MAIN_PUBLIC_URL:-http://{front_door.NAME}:{front_door.PORT}}}",
            "REALTIME_PUBLIC_URL": f"${{REALTIME_PUBLIC_URL:-ws://{entry}/ws}}",
            "INTEGRATIONS_BLACKLIST": ",".join(ctx.blacklist),
            "MAIN_WORKERS": "${MAIN_WORKERS:-1}",
            # Unset or empty: main's own default.
            "MAIN_RETENTION_DAYS": "${MAIN_RETENTION_DAYS:-}",
        }
    )
    if any(m.name == "minio" for m in enabled):
        # Presigned downloads are signed for the front door, which passes them on to the object store.
        values["S3_PUBLIC_ENDPOINT"] = f"${{S3_PUBLIC_ENDPOINT:-{entry}}}"
    for service in APP_SERVICES:
        values[f"{service.env_prefix}_HOST"] = "0.0.0.0"
        values[f"{service.env_prefix}_PORT"] = str(service.container_port)
        if service.internal is not None:
            values[f"{service.env_prefix}_INTERNAL_PORT"] = str(service.internal[1])
    for integration in ctx.integrations:
        # From the host's environment; an empty base URL is the provider's own (its manifest's).
        values.update({name: f"${{{name}:-}}" for name in provider_variables(integration)})
        # Empty: the manifest's limit.
        values.update({name: f"${{{name}:-}}" for name in limit_settings(integration.name)})
    return values


def _internal_port(service: AppService) -> int:
    assert service.internal is not None
    return service.internal[1]


def compose_env(contract: Contract, values: Mapping[str, str], generated: Sequence[str]) -> dict[str, str]:
    """A container's environment: its settings, and each of its generated secrets as the file that holds it.
    A secret the stack does not generate (a middleware run elsewhere) is a variable from the host, as settings."""
    env = {name: values[name] for name in contract.settings if name in values}
    for name in contract.secrets:
        if name in generated:
            env[f"{name}_FILE"] = secret_file(name)
        elif name in values:
            env[name] = values[name]
    return dict(sorted(env.items()))


@dataclass(frozen=True)
class ComposeApps:
    """Our services in compose.yaml: the one-shot ``secrets`` service first, then main, communication, the workers
    and the front door; the named volumes and the configs (files given to containers) they use."""

    services: dict[str, ComposeService]
    volumes: set[str]
    configs: dict[str, dict[str, str]]


def compose_app_services(
    ctx: ComposeContext, enabled: Sequence[Middleware], disabled: Sequence[Middleware]
) -> ComposeApps:
    """Our services, the one-shot ``secrets`` service that fills every service's secret volume, the front door,
    the volumes and the configs. Every public service is reached through the front door only, so compose can run
    several of each (``docker compose up --scale main=2``)."""
    values = _compose_values(ctx, enabled, disabled)
    not_generated = {name for m in (*disabled, *unused_middleware(enabled)) for name in m.compose_secrets()}
    generated = [name for name in SERVICE_SECRETS if name not in not_generated]
    ready: dict[str, dict[str, str]] = {SECRETS_SERVICE: {"condition": "service_completed_successfully"}}
    for m in enabled:
        ready.update({svc: {"condition": cond} for svc, cond in m.compose_ready().items()})
    # (compose service, reading user, secret names) of every container that gets a secrets volume.
    readers: list[tuple[str, int, tuple[str, ...]]] = []
    for m in enabled:
        readers += [(svc, uid, names) for svc, (uid, names) in m.compose_secret_readers().items()]

    def app(
        name: str,
        contract: Contract,
        command: list[str],
        test: list[str],
        interval: str,
        depends: dict[str, dict[str, str]],
    ) -> ComposeService:
        service: ComposeService = {
            "image": APP_IMAGE,
            "init": True,
            "command": command,
            "environment": compose_env(contract, values, generated),
            "healthcheck": healthcheck(test, interval=interval),
            "restart": "unless-stopped",
        }
        mine = tuple(n for n in contract.secrets if n in generated)
        if mine:
            readers.append((name, APP_UID, mine))
            service["volumes"] = [f"{secrets_volume(name)}:/run/secrets:ro"]
        if depends:
            service["depends_on"] = depends
        return service

    services: dict[str, ComposeService] = {}
    healthy = {"condition": "service_healthy"}
    for svc in APP_SERVICES:
        if svc.name == "simulator":
            continue  # a development stand-in: only in the development override (compose_dev_services)
        depends: dict[str, dict[str, str]] = {SECRETS_SERVICE: ready[SECRETS_SERVICE]}
        if svc.name == "main":
            depends = dict(ready)
        # The image's stdlib-only `healthcheck` script: a check runs every few seconds for as long as the stack
        # does, and it costs about half of what `python -m deploy.probe` (asyncio, the deploy package) does.
        service = app(
            svc.name,
            svc.contract,
            ["python", "-m", svc.module],
            ["CMD", "healthcheck", f"http://127.0.0.1:{svc.container_port}{svc.ready_path}"],
            "3s",
            depends,
        )
        if svc.name == "main":
            # One image for every app service; compose builds it once, for main, and the others reuse it.
            service = {"build": dict(APP_BUILD), **service}
        services[svc.name] = service
    for integration in ctx.integrations:
        services[worker_name(integration)] = app(
            worker_name(integration),
            worker_contract(integration),
            ["python", "-m", WORKER_MODULE, integration.name],
            ["CMD", "python", "-m", "deploy.probe", "task-queue", integration.task_queue],
            "5s",
            {**ready, "main": healthy},
        )
    readers.sort()
    command = ["python", "-m", "deploy.credentials", "init"]
    for reader, uid, names in readers:
        command += ["--service", f"/secrets/{reader}", str(uid), ",".join(names)]
    volumes = {"secrets", *(secrets_volume(reader) for reader, _, _ in readers)}
    secrets_service: ComposeService = {
        "image": APP_IMAGE,
        "init": True,
        # Writes each service's files with that service's user as owner.
        "user": "0:0",
        "command": command,
        "environment": {
            # API keys of further users (key:user,...), served next to the generated one.
            "API_KEYS": "${API_KEYS:-}",
            "SECRETS_STORE": COMPOSE_STORE,
        },
        "volumes": [
            f"secrets:{COMPOSE_STORE}",
            *(f"{secrets_volume(reader)}:/secrets/{reader}" for reader, _, _ in readers),
        ],
        "restart": "no",
    }
    objects = ("minio", MinIO.API) if any(m.name == "minio" for m in enabled) else None
    config = front_door.nginx_config(
        ("main", SERVICES["main"].container_port),
        ("communication", SERVICES["communication"].container_port),
        objects,
        RESULTS_BUCKET,
    )
    services[front_door.NAME] = front_door.compose_service(
        {"main": healthy, "communication": healthy},
        published(front_door.HOST_PORT_VARIABLE, front_door.PORT, front_door.PORT),
    )
    # compose interpolates a config's content: nginx's own variables keep their `$` as `$$`.
    configs = {front_door.NAME: {"content": config.replace("$", "$$")}}
    return ComposeApps({SECRETS_SERVICE: secrets_service, **services}, volumes, configs)


def compose_dev_services(ctx: ComposeContext) -> dict[str, ComposeService]:
    """The development override (compose.dev.yaml, used by `deploy-tool up`): the provider simulator, and the
    provider workers told where it is (used unless a provider key is set) and allowed to fetch its media links."""
    simulator = SERVICES["simulator"]
    values = {
        "SIMULATOR_HOST": "0.0.0.0",
        "SIMULATOR_PORT": str(simulator.container_port),
        # The simulator accepts its published development keys.
        DEVELOPMENT_MODE: "true",
    }
    services: dict[str, ComposeService] = {
        simulator.name: {
            "image": APP_IMAGE,
            "init": True,
            "command": ["python", "-m", simulator.module],
            "environment": compose_env(simulator.contract, values, ()),
            "healthcheck": healthcheck(
                ["CMD", "healthcheck", f"http://127.0.0.1:{simulator.container_port}/healthz"], interval="3s"
            ),
            "restart": "unless-stopped",
        }
    }
    simulator_host = f"{simulator.name}:{simulator.container_port}"
    for integration in ctx.integrations:
        if _simulator(integration) is None:
            continue
        services[worker_name(integration)] = {
            # A key from the host's environment wins; without one the worker talks to the simulator.
            "environment": {
                PROVIDER_SIMULATOR_URL: f"http://{simulator_host}",
                "OUTBOUND_ALLOW_HTTP": "true",
                "OUTBOUND_ALLOWED_HOSTS": simulator_host,
            },
            "depends_on": {simulator.name: {"condition": "service_healthy"}},
        }
    return services

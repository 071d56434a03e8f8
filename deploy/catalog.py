"""The middleware catalog: everything the stack can run besides our own services.

Each entry knows how to render itself into compose.yaml (docker mode) and how to run itself as a local
process (local mode), and what environment it hands to our services in each mode. Which entries are
enabled is kept in ``deploy/middleware.json`` (``deploy-tool middleware add|remove``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import ClassVar

from services.shared.settings import TemporalSettings

from .credentials import secret_file
from .errors import DeployError, UsageError
from .nats_auth import AUTH_FILE, PASSWORDS, authorization
from .ports import WEED_GRPC_OFFSET
from .probe import http_health, postgres_ready, s3_client, s3_health, temporal_health
from .spec import ComposeService, LocalContext, ProcessSpec, Shape

RESULTS_BUCKET = "task-results"
# Host address published container ports bind to; set PUBLISH_IP=0.0.0.0 to expose them beyond this machine.
PUBLISH_IP = "${PUBLISH_IP:-127.0.0.1}"
APP_IMAGE = "${APP_IMAGE:-async-task-platform:dev}"
# The user of the application image (docker/app.Dockerfile): owner of the secret files it reads.
APP_UID = 10001
S3_KEYS = ("S3_ACCESS_KEY", "S3_SECRET_KEY")
# How a client reaches a Temporal other than the dev server (services/shared/settings.py: TemporalSettings).
TEMPORAL_TLS_SETTINGS = ("TEMPORAL_TLS", "TEMPORAL_TLS_CA", "TEMPORAL_TLS_CERT", "TEMPORAL_TLS_SERVER_NAME")
TEMPORAL_SECRETS = ("TEMPORAL_TLS_KEY", "TEMPORAL_API_KEY")
SECRETS_READY = {"secrets": {"condition": "service_completed_successfully"}}


def published(host_port_variable: str, default: int, container_port: int) -> str:
    return f"{PUBLISH_IP}:${{{host_port_variable}:-{default}}}:{container_port}"


def healthcheck(test: list[str], interval: str = "2s", retries: int = 60) -> dict[str, object]:
    return {"test": test, "interval": interval, "timeout": "5s", "retries": retries, "start_period": "5s"}


def secrets_volume(service: str) -> str:
    """The volume that holds one compose service's secret files (mounted read-only at /run/secrets)."""
    return f"secrets-{service}"


class Middleware(ABC):
    """A catalog entry. Subclasses fill the class attributes and the six methods."""

    name: ClassVar[str]
    summary: ClassVar[str]
    # Not enabled, its services are expected elsewhere and our services take its variables from the host's
    # environment. False: not enabled means not used (PostgreSQL: main keeps its SQLite store).
    external_when_disabled: ClassVar[bool] = True

    # --- docker mode -------------------------------------------------------------------------------------
    @abstractmethod
    def compose_services(self) -> dict[str, ComposeService]:
        """The compose services this middleware adds, by service name."""

    @abstractmethod
    def compose_volumes(self) -> tuple[str, ...]:
        """Named volumes its services use."""

    @abstractmethod
    def compose_app_env(self) -> dict[str, str]:
        """Environment our services get in compose so they find this middleware."""

    @abstractmethod
    def compose_ready(self) -> dict[str, str]:
        """``depends_on`` entries of our services: compose service name -> condition."""

    def compose_secrets(self) -> tuple[str, ...]:
        """Secrets our services need for this middleware: generated when compose runs it, from the host when not."""
        return ()

    def compose_external_env(self) -> dict[str, str]:
        """Not run by compose (it runs elsewhere): what our services take from the host's environment instead."""
        return {key: f"${{{key}}}" for key in (*self.compose_app_env(), *self.compose_secrets())}

    def compose_secret_readers(self) -> dict[str, tuple[int, tuple[str, ...]]]:
        """This middleware's compose services that read generated secrets: service -> (user id, secret names)."""
        return {}

    # --- local mode --------------------------------------------------------------------------------------
    @abstractmethod
    def local_process(self, ctx: LocalContext) -> ProcessSpec:
        """The local process that runs this middleware."""

    @abstractmethod
    def local_app_env(self, ctx: LocalContext) -> dict[str, str]:
        """Environment our local services get so they find this middleware."""

    def local_urls(self, ctx: LocalContext) -> dict[str, str]:
        """User-facing URLs printed after ``up``."""
        return {}


class Temporal(Middleware):
    name = "temporal"
    summary = "Temporal all-in-one dev server (temporal server start-dev) with web UI, SQLite in WAL mode"

    # The official CLI image: FROM scratch, the binary at /temporal is the entrypoint (uid 1000).
    IMAGE = "${TEMPORAL_IMAGE:-temporalio/temporal:1.9.1}"
    # The default rollback-journal mode with full sync makes the dev server about 3x slower.
    SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")
    # Tasks carry a priority and their user as fairness key (services/shared/tasks.py): fairness dispatch is off
    # by default and needs the new matcher (which priority uses too). A task queue's backlog is ordered only
    # within each of its partitions, and pollers take from them in turn: one server gains nothing from
    # partitions, so with one partition the order is the order by priority and fair share (measured, see
    # prompt/output/flow-control.md).
    DYNAMIC_CONFIG: ClassVar[tuple[str, ...]] = (
        "matching.useNewMatcher=true",
        "matching.enableFairness=true",
        "matching.numTaskqueueReadPartitions=1",
        "matching.numTaskqueueWritePartitions=1",
    )
    GRPC, UI, HTTP, METRICS = 7233, 8233, 7243, 7244

    def _server_args(self) -> list[str]:
        pragmas = [arg for pragma in self.SQLITE_PRAGMAS for arg in ("--sqlite-pragma", pragma)]
        return [*pragmas, *(arg for value in self.DYNAMIC_CONFIG for arg in ("--dynamic-config-value", value))]

    def compose_services(self) -> dict[str, ComposeService]:
        return {
            "temporal": {
                "image": self.IMAGE,
                "init": True,
                # The official image has no /data; a fresh named volume is root-owned, so the server runs as root.
                "user": "0:0",
                # The official image keeps the binary at /temporal, local builds in /usr/local/bin: with "/" on
                # PATH the healthcheck finds it in either.
                "environment": {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/"},
                "command": [
                    "server",
                    "start-dev",
                    "--ip",
                    "0.0.0.0",
                    "--port",
                    str(self.GRPC),
                    "--ui-port",
                    str(self.UI),
                    "--http-port",
                    str(self.HTTP),
                    "--metrics-port",
                    str(self.METRICS),
                    "--db-filename",
                    "/data/temporal.db",
                    *self._server_args(),
                ],
                # The UI only: the frontend's gRPC port has no authentication, and only the stack's own services
                # (and `docker compose exec temporal temporal ...`) talk to it.
                "ports": [published("TEMPORAL_UI_HOST_PORT", self.UI, self.UI)],
                "volumes": ["temporal-data:/data"],
                "healthcheck": healthcheck(
                    ["CMD", "temporal", "operator", "cluster", "health", "--address", f"127.0.0.1:{self.GRPC}"]
                ),
                "restart": "unless-stopped",
            }
        }

    def compose_volumes(self) -> tuple[str, ...]:
        return ("temporal-data",)

    def compose_app_env(self) -> dict[str, str]:
        return {
            "TEMPORAL_ADDRESS": f"temporal:{self.GRPC}",
            "TEMPORAL_NAMESPACE": "default",
            "TEMPORAL_UI_URL": f"http://localhost:${{TEMPORAL_UI_HOST_PORT:-{self.UI}}}",
        }

    def compose_ready(self) -> dict[str, str]:
        return {"temporal": "service_healthy"}

    def compose_external_env(self) -> dict[str, str]:
        # A cluster of its own or Temporal Cloud: besides its address and namespace, TLS or an API key if it needs them.
        optional = {key: f"${{{key}:-}}" for key in (*TEMPORAL_TLS_SETTINGS, *TEMPORAL_SECRETS)}
        return {**super().compose_external_env(), **optional}

    def local_process(self, ctx: LocalContext) -> ProcessSpec:
        p = ctx.ports
        argv = (
            str(ctx.temporal_bin),
            "server",
            "start-dev",
            "--ip",
            ctx.host,
            "--port",
            str(p.temporal),
            "--ui-port",
            str(p.temporal_ui),
            "--http-port",
            str(p.temporal_http),
            "--metrics-port",
            str(p.temporal_metrics),
            "--db-filename",
            str(ctx.state_dir / "temporal.db"),
            *self._server_args(),
        )
        return ProcessSpec(
            name=self.name,
            kind="middleware",
            argv=argv,
            env={},
            ports=(p.temporal, p.temporal_ui, p.temporal_http, p.temporal_metrics),
            main_port=p.temporal,
            ready=lambda: temporal_health(TemporalSettings(address=ctx.temporal_address)),
            # The dev server picks free ports for its internal services itself and binds them later; when another
            # process took one meanwhile, it panics right after its frontend answers. Another start picks anew.
            start_attempts=3,
            settle_seconds=1.0,
        )

    def local_app_env(self, ctx: LocalContext) -> dict[str, str]:
        return {
            "TEMPORAL_ADDRESS": ctx.temporal_address,
            "TEMPORAL_NAMESPACE": "default",
            "TEMPORAL_UI_URL": ctx.url(ctx.ports.temporal_ui),
        }

    def local_urls(self, ctx: LocalContext) -> dict[str, str]:
        return {"Temporal UI": ctx.url(ctx.ports.temporal_ui), "Temporal gRPC": ctx.temporal_address}


class MinIO(Middleware):
    name = "minio"
    summary = "S3 object storage with the results bucket: MinIO in docker mode, SeaweedFS `weed mini` locally"

    IMAGE = "${MINIO_IMAGE:-minio/minio:RELEASE.2025-04-22T22-12-26Z}"
    API, CONSOLE = 9000, 9001
    # The image has neither curl nor wget; bash's /dev/tcp is enough for one HTTP request.
    LIVE_CHECK = (
        'exec 3<>/dev/tcp/127.0.0.1/9000 && printf "GET /minio/health/live HTTP/1.0\\r\\n\\r\\n" >&3'
        ' && read -r s <&3 && [[ $$s == *" 200 "* ]]'
    )

    def compose_services(self) -> dict[str, ComposeService]:
        return {
            "minio": {
                "image": self.IMAGE,
                "init": True,
                "command": ["server", "/data", "--console-address", f":{self.CONSOLE}"],
                # The root credentials are the stack's generated S3 keys, read from files as the image allows.
                "environment": {
                    "MINIO_ROOT_USER_FILE": secret_file("S3_ACCESS_KEY"),
                    "MINIO_ROOT_PASSWORD_FILE": secret_file("S3_SECRET_KEY"),
                },
                "ports": [
                    published("MINIO_HOST_PORT", self.API, self.API),
                    published("MINIO_CONSOLE_HOST_PORT", self.CONSOLE, self.CONSOLE),
                ],
                "volumes": ["minio-data:/data", f"{secrets_volume('minio')}:/run/secrets:ro"],
                "healthcheck": healthcheck(["CMD", "bash", "-c", self.LIVE_CHECK]),
                "depends_on": dict(SECRETS_READY),
                "restart": "unless-stopped",
            },
            # One-shot: creates the results bucket with the application image (no extra mc image needed).
            "create-bucket": {
                "image": APP_IMAGE,
                "init": True,
                "command": ["python", "-m", "deploy.create_bucket"],
                "environment": {
                    **{key: value for key, value in self.compose_app_env().items() if key != "S3_PUBLIC_ENDPOINT"},
                    **{f"{key}_FILE": secret_file(key) for key in S3_KEYS},
                },
                "volumes": [f"{secrets_volume('create-bucket')}:/run/secrets:ro"],
                "depends_on": {"minio": {"condition": "service_healthy"}},
                "restart": "no",
            },
        }

    def compose_volumes(self) -> tuple[str, ...]:
        return ("minio-data",)

    def compose_app_env(self) -> dict[str, str]:
        return {
            "S3_ENDPOINT": f"minio:{self.API}",
            "S3_BUCKET": RESULTS_BUCKET,
            "S3_SECURE": "false",
            # Presigned download URLs are signed for the address clients use, outside compose: by default the
            # published port on this machine. Set S3_PUBLIC_ENDPOINT when clients download from elsewhere.
            "S3_PUBLIC_ENDPOINT": f"${{S3_PUBLIC_ENDPOINT:-localhost:${{MINIO_HOST_PORT:-{self.API}}}}}",
        }

    def compose_ready(self) -> dict[str, str]:
        return {"create-bucket": "service_completed_successfully"}

    def compose_secrets(self) -> tuple[str, ...]:
        return S3_KEYS

    def compose_secret_readers(self) -> dict[str, tuple[int, tuple[str, ...]]]:
        # The MinIO image runs as root; the offline stand-in for it as uid 1000.
        return {"minio": (1000, S3_KEYS), "create-bucket": (APP_UID, S3_KEYS)}

    def local_process(self, ctx: LocalContext) -> ProcessSpec:
        p = ctx.ports
        s = ctx.secrets
        argv = (
            str(ctx.weed_bin),
            "mini",
            f"-dir={ctx.state_dir / 's3'}",
            f"-ip={ctx.host}",
            f"-ip.bind={ctx.host}",
            f"-master.port={p.weed_master}",
            f"-volume.port={p.weed_volume}",
            f"-filer.port={p.weed_filer}",
            f"-s3.port={p.s3}",
            "-admin.ui=false",
            f"-admin.port={p.weed_admin}",
            "-webdav=false",
            "-master.telemetry=false",
            # Behave like MinIO: no recursive bucket deletes, no buckets created by an upload.
            "-s3.allowDeleteBucketNotEmpty=false",
            "-s3.autoCreateBucket=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        )
        http_ports = (p.s3, p.weed_master, p.weed_volume, p.weed_filer, p.weed_admin)

        def create_bucket() -> None:
            client = s3_client(ctx.s3_endpoint, s.s3_access_key, s.s3_secret_key)
            if not client.bucket_exists(RESULTS_BUCKET):
                client.make_bucket(RESULTS_BUCKET)

        def cleanup() -> None:
            # weed removes its unix sockets on SIGTERM but not when it had to be killed.
            tmp = Path(tempfile.gettempdir())
            for port in (*http_ports, *(q + WEED_GRPC_OFFSET for q in http_ports)):
                for sock in tmp.glob(f"seaweedfs-*-{port}.sock"):
                    with contextlib.suppress(OSError):
                        if sock.is_socket():
                            sock.unlink()

        return ProcessSpec(
            name=self.name,
            kind="middleware",
            argv=argv,
            env={"AWS_ACCESS_KEY_ID": s.s3_access_key, "AWS_SECRET_ACCESS_KEY": s.s3_secret_key},
            ports=(*http_ports, *(q + WEED_GRPC_OFFSET for q in http_ports)),
            main_port=p.s3,
            ready=lambda: s3_health(
                ctx.s3_endpoint, s.s3_access_key, s.s3_secret_key, RESULTS_BUCKET, require_bucket=False
            ),
            health=lambda: s3_health(
                ctx.s3_endpoint, s.s3_access_key, s.s3_secret_key, RESULTS_BUCKET, require_bucket=True
            ),
            after_start=create_bucket,
            cleanup=cleanup,
        )

    def local_app_env(self, ctx: LocalContext) -> dict[str, str]:
        return {
            "S3_ENDPOINT": ctx.s3_endpoint,
            "S3_BUCKET": RESULTS_BUCKET,
            "S3_SECURE": "false",
            "S3_PUBLIC_ENDPOINT": ctx.s3_endpoint,
        }

    def local_urls(self, ctx: LocalContext) -> dict[str, str]:
        return {"S3 endpoint": ctx.url(ctx.ports.s3)}


class Nats(Middleware):
    name = "nats"
    summary = "NATS with JetStream: carries task events from main's outbox to every communication replica"

    IMAGE = "${NATS_IMAGE:-nats:2.15.1-alpine}"
    CLIENT, MONITOR = 4222, 8222
    # The official image runs as root, the offline stand-in as uid 1000.
    UID = 1000

    def compose_services(self) -> dict[str, ComposeService]:
        health = f"'http://127.0.0.1:{self.MONITOR}/healthz?js-enabled-only=true'"
        return {
            "nats": {
                "image": self.IMAGE,
                "init": True,
                "command": [
                    # The users of main and communication with their passwords (deploy/nats_auth.py), written by
                    # the `secrets` service.
                    "-c",
                    secret_file(AUTH_FILE),
                    "-js",
                    "-sd",
                    "/data",
                    "-p",
                    str(self.CLIENT),
                    "-m",
                    str(self.MONITOR),
                ],
                "volumes": ["nats-data:/data", f"{secrets_volume(self.name)}:/run/secrets:ro"],
                "depends_on": dict(SECRETS_READY),
                # The official Alpine image has wget; the offline stand-in has our stdlib `healthcheck` instead.
                "healthcheck": healthcheck(["CMD-SHELL", f"wget -q -O /dev/null {health} || healthcheck {health}"]),
                "restart": "unless-stopped",
            }
        }

    def compose_volumes(self) -> tuple[str, ...]:
        return ("nats-data",)

    def compose_app_env(self) -> dict[str, str]:
        return {"NATS_URL": f"nats://nats:{self.CLIENT}"}

    def compose_ready(self) -> dict[str, str]:
        return {"nats": "service_healthy"}

    def compose_secrets(self) -> tuple[str, ...]:
        return PASSWORDS

    def compose_secret_readers(self) -> dict[str, tuple[int, tuple[str, ...]]]:
        return {"nats": (self.UID, (AUTH_FILE,))}

    def local_process(self, ctx: LocalContext) -> ProcessSpec:
        p = ctx.ports
        # The passwords in a file only this user reads, not on the command line every local user can list.
        config = ctx.state_dir / "nats.conf"

        def write_config() -> None:
            fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(authorization(ctx.secrets.values))

        argv = (
            str(ctx.nats_bin),
            "-c",
            str(config),
            "-js",
            "-a",
            ctx.host,
            "-p",
            str(p.nats),
            "-m",
            str(p.nats_monitor),
            "-sd",
            str(ctx.state_dir / "nats"),
        )
        health = f"{ctx.url(p.nats_monitor)}/healthz?js-enabled-only=true"
        return ProcessSpec(
            name=self.name,
            kind="middleware",
            argv=argv,
            env={},
            ports=(p.nats, p.nats_monitor),
            main_port=p.nats,
            ready=lambda: http_health(health),
            prepare=write_config,
        )

    def local_app_env(self, ctx: LocalContext) -> dict[str, str]:
        return {"NATS_URL": f"nats://{ctx.host}:{ctx.ports.nats}"}

    def local_urls(self, ctx: LocalContext) -> dict[str, str]:
        return {"NATS": f"nats://{ctx.host}:{ctx.ports.nats}", "NATS monitoring": ctx.url(ctx.ports.nats_monitor)}


def postgres_bin_dir(environ: Mapping[str, str]) -> Path:
    """``POSTGRES_BIN_DIR``, else the newest server Debian installs (``/usr/lib/postgresql/<major>/bin``)."""
    if environ.get("POSTGRES_BIN_DIR"):
        return Path(environ["POSTGRES_BIN_DIR"])
    installed = [d for d in Path("/usr/lib/postgresql").glob("*/bin") if (d / "postgres").is_file()]
    if not installed:
        raise DeployError(
            "no PostgreSQL server found in /usr/lib/postgresql/*/bin: install Debian's postgresql package "
            "(apt-get install postgresql) or set POSTGRES_BIN_DIR to the directory holding initdb and postgres"
        )
    return max(installed, key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0)


class PostgreSQL(Middleware):
    name = "postgres"
    summary = "PostgreSQL for main's task store when main runs as several replicas (the scale shape)"
    external_when_disabled = False

    IMAGE = "${POSTGRES_IMAGE:-postgres:17.6}"
    PORT = 5432
    DATABASE = "main"
    SUPERUSER = "postgres"
    # The server refuses to run as root; a root deploy tool runs it as this user (Debian's package creates it).
    SERVICE_USER = "postgres"
    # The official image's postgres user, which reads the password file (the offline stand-in uses the same id).
    UID = 999
    PASSWORD = "POSTGRES_PASSWORD"  # noqa: S105 - the secret's name

    def compose_services(self) -> dict[str, ComposeService]:
        return {
            "postgres": {
                "image": self.IMAGE,
                "init": True,
                "environment": {
                    "POSTGRES_USER": self.SUPERUSER,
                    # The image reads the superuser's password from the file, as our services do.
                    "POSTGRES_PASSWORD_FILE": secret_file(self.PASSWORD),
                    "POSTGRES_DB": self.DATABASE,
                },
                "volumes": ["postgres-data:/var/lib/postgresql/data", f"{secrets_volume(self.name)}:/run/secrets:ro"],
                "depends_on": dict(SECRETS_READY),
                "healthcheck": healthcheck(["CMD", "pg_isready", "-U", self.SUPERUSER, "-d", self.DATABASE]),
                "restart": "unless-stopped",
            }
        }

    def compose_volumes(self) -> tuple[str, ...]:
        return ("postgres-data",)

    def compose_app_env(self) -> dict[str, str]:
        # main takes the password from its POSTGRES_PASSWORD file.
        return {"DATABASE_URL": f"postgresql+asyncpg://{self.SUPERUSER}@postgres:{self.PORT}/{self.DATABASE}"}

    def compose_ready(self) -> dict[str, str]:
        return {"postgres": "service_healthy"}

    def compose_secrets(self) -> tuple[str, ...]:
        return (self.PASSWORD,)

    def compose_secret_readers(self) -> dict[str, tuple[int, tuple[str, ...]]]:
        return {"postgres": (self.UID, (self.PASSWORD,))}

    def _user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(self.SERVICE_USER)
        except KeyError:
            raise DeployError(
                f"PostgreSQL refuses to run as root and there is no {self.SERVICE_USER!r} user to run it as: "
                f"create one (useradd --system {self.SERVICE_USER}) or run the deploy tool as another user"
            ) from None
        return self.SERVICE_USER

    def local_process(self, ctx: LocalContext) -> ProcessSpec:
        bin_dir = postgres_bin_dir(ctx.environ)
        data = ctx.state_dir / "postgres"
        user = self._user()
        password = ctx.secrets.postgres_password

        def run(argv: list[str], stdin: str) -> None:
            done = subprocess.run(
                argv, input=stdin, capture_output=True, text=True, user=user, cwd="/", check=False, timeout=120
            )
            if done.returncode != 0:
                raise DeployError(
                    f"{Path(argv[0]).name} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()}"
                    + (f"\nthe {user} user must be able to reach {data}" if user else "")
                )

        def init_cluster() -> None:
            # First start only: a cluster with a password for the superuser, and the database main uses.
            if (data / "PG_VERSION").exists():
                return
            data.mkdir(mode=0o700, parents=True, exist_ok=True)
            owner = None if user is None else pwd.getpwnam(user)
            if owner is not None:
                os.chown(data, owner.pw_uid, owner.pw_gid)
            initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", self.SUPERUSER, "--auth=scram-sha-256"]
            # initdb reads the password from a file that the server's user can open, removed right after.
            with tempfile.TemporaryDirectory() as tmp:
                pwfile = Path(tmp) / "password"
                pwfile.write_text(password)
                if owner is not None:
                    for path in (Path(tmp), pwfile):
                        os.chown(path, owner.pw_uid, owner.pw_gid)
                run([*initdb, f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C", "--no-instructions"], "")
            run(
                [str(bin_dir / "postgres"), "--single", "-D", str(data), "postgres"],
                f"CREATE DATABASE {self.DATABASE};\n",
            )

        argv = (
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(ctx.ports.postgres),
            "-c",
            f"listen_addresses={ctx.host}",
            # TCP only: no socket file in a directory another user would have to share.
            "-c",
            "unix_socket_directories=",
        )
        return ProcessSpec(
            name=self.name,
            kind="middleware",
            argv=argv,
            env={},
            ports=(ctx.ports.postgres,),
            main_port=ctx.ports.postgres,
            ready=lambda: postgres_ready(bin_dir / "pg_isready", ctx.host, ctx.ports.postgres, self.DATABASE),
            prepare=init_cluster,
            user=user,
            # Fast shutdown: SIGTERM would wait for every client (main's pooled connections) to disconnect.
            stop_signal=signal.SIGINT,
        )

    def local_app_env(self, ctx: LocalContext) -> dict[str, str]:
        # main takes the password from POSTGRES_PASSWORD.
        address = f"{ctx.host}:{ctx.ports.postgres}"
        return {"DATABASE_URL": f"postgresql+asyncpg://{self.SUPERUSER}@{address}/{self.DATABASE}"}

    def local_urls(self, ctx: LocalContext) -> dict[str, str]:
        return {"PostgreSQL": f"postgresql://{self.SUPERUSER}@{ctx.host}:{ctx.ports.postgres}/{self.DATABASE}"}


CATALOG: dict[str, Middleware] = {m.name: m for m in (Temporal(), MinIO(), Nats(), PostgreSQL())}


def get(name: str) -> Middleware:
    try:
        return CATALOG[name]
    except KeyError:
        raise UsageError(f"unknown middleware {name!r}; known: {', '.join(CATALOG)}") from None


# What a shape runs besides the enabled middleware: several main processes share one store, on PostgreSQL.
SHAPE_MIDDLEWARE: dict[Shape, tuple[str, ...]] = {"single": (), "scale": ("postgres",)}


def for_shape(names: Iterable[str], shape: Shape) -> list[str]:
    """The middleware a stack of ``shape`` runs, in catalog order: ``names`` and what the shape adds."""
    return in_catalog_order({*names, *SHAPE_MIDDLEWARE[shape]})


def in_catalog_order(names: list[str] | tuple[str, ...] | set[str]) -> list[str]:
    """Catalog order is start order and the order in every file we write."""
    wanted = set(names)
    return [name for name in CATALOG if name in wanted]

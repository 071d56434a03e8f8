"""Local mode: the whole stack as plain processes under a state dir.

    <state>/secrets.env        generated secrets (0600), reused
    <state>/stack.json         ports and components of the running stack (removed by down)
    <state>/run/<name>.json    pid file of each component
    <state>/logs/<name>.log    output of each component
    <state>/temporal.db, <state>/s3/, <state>/main.db     data

Also the Python API that integration tests use::

    with LocalStack(tmp_path / "state", Ports.free(), components=["middleware"]) as stack:
        client = await connect(TemporalSettings(address=stack.temporal_address))
        stack.stop("minio")    # one component down; the others keep running
        stack.start("minio")   # back on the same ports, with its data
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, TextIO

from . import catalog, config, credentials, paths
from .errors import DeployError, UsageError
from .ports import Ports, busy_ports, wait_ports_free
from .process import PidRecord, StateLock, is_running, spawn, start_ticks, stop_groups
from .services import (
    APP_SERVICES,
    REPLICATED,
    discover_integrations,
    local_app_processes,
    local_environment,
    worker_name,
)
from .spec import SHAPES, Kind, LocalContext, ProcessSpec, Secrets, Shape

GROUPS: dict[str, Kind] = {"middleware": "middleware", "services": "service", "workers": "worker"}
STACK_FILE = "stack.json"


class _ExitedWhileStartingError(DeployError):
    """A process exited before it was ready."""


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    kind: Kind
    state: Literal["running", "stopped", "skipped"]
    healthy: bool
    detail: str
    pid: int | None = None

    @property
    def ok(self) -> bool:
        """Skipped components (not built yet) do not make the stack unhealthy."""
        return self.state == "skipped" or self.healthy


class LocalStack:
    """The stack as local processes.

    ``components``: names (``temporal``, ``minio``, ``simulator``, ``communication``, ``main``,
    ``worker-<slug>``) or groups (``middleware``, ``services``, ``workers``); None means all of them for
    ``up``, and what the last ``up`` started for ``status``. ``middleware``: catalog names to run instead of
    the ones enabled in ``deploy/middleware.json``. ``replacing``: middleware to run instead of the catalog's
    entry of the same name (a benchmark's Temporal server with other dynamic config). ``ports``: None means the
    ports of the running stack (``stack.json``) or the defaults. ``environ``: the environment our services
    inherit (default os.environ). ``shape``: ``single`` (default), or ``scale``: PostgreSQL, and main and
    communication as two replicas each (``main-2``, ``communication-2``); None means the shape of the running
    stack.
    """

    def __init__(
        self,
        state_dir: str | Path | None = None,
        ports: Ports | None = None,
        components: Iterable[str] | None = None,
        *,
        middleware: Iterable[str] | None = None,
        replacing: Iterable[catalog.Middleware] = (),
        environ: Mapping[str, str] | None = None,
        out: TextIO | None = None,
        config_path: Path = paths.CONFIG_FILE,
        shape: Shape | None = None,
    ) -> None:
        self.environ: dict[str, str] = dict(os.environ if environ is None else environ)
        self.state_dir = paths.state_dir(state_dir, self.environ)
        self._recorded = self._read_stack_file()
        recorded_ports = self._recorded.get("ports")
        self._explicit_ports = ports is not None
        self.ports = ports or (Ports.from_dict(recorded_ports) if isinstance(recorded_ports, dict) else Ports())
        self._selection = None if components is None else list(components)
        recorded_shape = self._recorded.get("shape")
        self.shape: Shape = next((s for s in SHAPES if s == (shape or recorded_shape)), "single")
        chosen = config.load(config_path).enabled if middleware is None else [catalog.get(m).name for m in middleware]
        self.middleware_names = tuple(catalog.for_shape(chosen, self.shape))
        self._catalog = {**catalog.CATALOG, **{m.name: m for m in replacing}}
        self._out = out
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._secrets: Secrets | None = None

    # --- paths and addresses -----------------------------------------------------------------------------

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    def log_path(self, component: str) -> Path:
        return self.log_dir / f"{component}.log"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def temporal_address(self) -> str:
        return f"{self.host}:{self.ports.temporal}"

    @property
    def temporal_ui_url(self) -> str:
        return f"http://{self.host}:{self.ports.temporal_ui}"

    @property
    def s3_endpoint(self) -> str:
        return f"{self.host}:{self.ports.s3}"

    @property
    def main_url(self) -> str:
        return f"http://{self.host}:{self.ports.main}"

    @property
    def communication_url(self) -> str:
        return f"http://{self.host}:{self.ports.communication}"

    @property
    def main_urls(self) -> list[str]:
        """Every main replica's URL (two in the scale shape)."""
        second = [f"http://{self.host}:{self.ports.main_2}"] if self.shape == "scale" else []
        return [self.main_url, *second]

    @property
    def main_internal_urls(self) -> list[str]:
        """Every main replica's internal listener, in the order of ``main_urls``."""
        second = [f"http://{self.host}:{self.ports.main_2_internal}"] if self.shape == "scale" else []
        return [self.main_internal_url, *second]

    @property
    def communication_urls(self) -> list[str]:
        second = [f"http://{self.host}:{self.ports.communication_2}"] if self.shape == "scale" else []
        return [self.communication_url, *second]

    @property
    def main_internal_url(self) -> str:
        """main's internal listener: the report API (needs the report token)."""
        return f"http://{self.host}:{self.ports.main_internal}"

    @property
    def communication_internal_url(self) -> str:
        """communication's internal listener: /metrics."""
        return f"http://{self.host}:{self.ports.communication_internal}"

    @property
    def simulator_url(self) -> str:
        return f"http://{self.host}:{self.ports.simulator}"

    @property
    def secrets(self) -> Secrets:
        """The stack's secrets; created (``<state>/secrets.env``) on first use."""
        if self._secrets is None:
            self._secrets = credentials.load_or_create(self.state_dir)
        return self._secrets

    def api_key(self) -> str:
        """The first API key (user dev)."""
        return self.secrets.dev_api_key

    def context(self) -> LocalContext:
        return LocalContext(
            state_dir=self.state_dir, ports=self.ports, secrets=self.secrets, environ=self.environ, shape=self.shape
        )

    def service_env(self) -> dict[str, str]:
        """Every setting of every one of our services, on top of the caller's environment: what tests start extra
        service processes with (includes secrets: do not log it)."""
        ctx = self.context()
        return local_environment(ctx, [self._catalog[m] for m in self.middleware_names])

    # --- what runs ---------------------------------------------------------------------------------------

    def _all_specs(self, with_workers: bool) -> list[ProcessSpec]:
        ctx = self.context()
        middleware = [self._catalog[m] for m in self.middleware_names]
        specs = [m.local_process(ctx) for m in middleware]
        integrations = []
        if with_workers:
            discovery, _ = discover_integrations(self.environ)
            integrations = sorted(discovery.integrations, key=worker_name)
        specs += local_app_processes(ctx, middleware, integrations)
        return specs

    def specs(self, selection: Sequence[str] | None = None) -> list[ProcessSpec]:
        """The selected components, in start order."""
        static = set(self.middleware_names) | {s.name for s in APP_SERVICES} | {"middleware", "services"}
        static |= {f"{name}-2" for name in REPLICATED}
        needs_workers = selection is None or any(item not in static for item in selection)
        specs = self._all_specs(with_workers=needs_workers)
        if selection is None:
            return specs
        wanted: set[str] = set()
        names = {s.name for s in specs}
        for item in selection:
            if item in GROUPS:
                wanted |= {s.name for s in specs if s.kind == GROUPS[item]}
            elif item in names:
                wanted.add(item)
            else:
                known = [*GROUPS, *names]
                raise UsageError(f"unknown component {item!r}; known: {', '.join(known)}")
        return [s for s in specs if s.name in wanted]

    # --- state files -------------------------------------------------------------------------------------

    def _read_stack_file(self) -> dict[str, object]:
        try:
            data = json.loads((self.state_dir / STACK_FILE).read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_stack_file(self, components: list[str]) -> None:
        data = {"mode": "local", "shape": self.shape, "ports": self.ports.as_dict(), "components": components}
        (self.state_dir / STACK_FILE).write_text(json.dumps(data, indent=2) + "\n")

    def _pid_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def _record(self, name: str) -> PidRecord | None:
        try:
            return PidRecord.from_json(self._pid_path(name).read_text())
        except FileNotFoundError:
            return None
        except (ValueError, KeyError):
            # Unreadable pid file: treat as stale.
            return None

    def _records(self) -> list[PidRecord]:
        if not self.run_dir.is_dir():
            return []
        found = []
        for path in sorted(self.run_dir.glob("*.json")):
            record = self._record(path.stem)
            if record is not None:
                found.append(record)
            else:
                path.unlink(missing_ok=True)
        return found

    def _lock(self) -> StateLock:
        return StateLock(self.state_dir / "deploy.lock")

    # --- output ------------------------------------------------------------------------------------------

    def _write(self, text: str) -> None:
        out = self._out or sys.stdout
        out.write(text)
        out.flush()

    def _say(self, line: str) -> None:
        self._write(line + "\n")

    # --- up ----------------------------------------------------------------------------------------------

    def up(self) -> None:
        """Start the selected components (those already running are left alone) and wait until each is ready.
        On failure, everything this call started is stopped again and DeployError says why."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self._lock().held():
            self._check_ports_match_running_stack()
            specs = self.specs(self._selection)
            to_start = [spec for spec in specs if self._needs_start(spec)]
            # Check every port before starting anything, so a busy port never leaves half a stack running.
            self._check_ports_free(to_start)
            started: list[ProcessSpec] = []
            began = time.monotonic()
            try:
                phases = [
                    [s for s in to_start if s.kind == "middleware"],
                    [s for s in to_start if s.kind != "middleware"],
                ]
                for phase in phases:
                    for spec in phase:
                        self._spawn(spec)
                        started.append(spec)
                    for spec in phase:
                        self._wait_started(spec)
                        if spec.after_start is not None:
                            spec.after_start()
            except BaseException:
                self._say("start failed; stopping what this run started")
                self._stop([r for r in (self._record(s.name) for s in started) if r is not None], specs)
                raise
            recorded = self._recorded.get("components")
            previous = [str(c) for c in recorded] if isinstance(recorded, list) else []
            running = [s.name for s in specs if s.skip_reason is None]
            self._write_stack_file(sorted(set(previous) | set(running)))
            self._recorded = self._read_stack_file()
            self._say(f"stack up in {time.monotonic() - began:.1f}s (state: {self.state_dir})")

    def _check_ports_match_running_stack(self) -> None:
        recorded = self._recorded.get("ports")
        if not self._explicit_ports or not isinstance(recorded, dict) or recorded == self.ports.as_dict():
            return
        if any(is_running(r) for r in self._records()):
            raise DeployError(
                f"the stack in {self.state_dir} is running with other ports; run `deploy-tool down` first"
            )

    def _needs_start(self, spec: ProcessSpec) -> bool:
        """False (and says why) for components that are not built yet or already run."""
        if spec.skip_reason is not None:
            self._say(f"{spec.name}: skipped: {spec.skip_reason}")
            return False
        record = self._record(spec.name)
        if record is not None:
            if is_running(record):
                self._say(f"{spec.name}: already running (pid {record.pid})")
                return False
            self._pid_path(spec.name).unlink(missing_ok=True)
            self._say(f"{spec.name}: removed stale pid file (pid {record.pid} is gone)")
        return True

    def _check_ports_free(self, specs: Sequence[ProcessSpec]) -> None:
        problems = []
        for spec in specs:
            busy = busy_ports(spec.ports)
            if busy:
                problems.append(f"{spec.name}: port(s) {', '.join(map(str, busy))}")
            if not Path(spec.argv[0]).exists():
                problems.append(f"{spec.name}: {spec.argv[0]} does not exist (run `uv sync`)")
        if problems:
            raise DeployError(
                "cannot start, nothing was started:\n  "
                + "\n  ".join(problems)
                + "\nports in use belong to another process (find it with `ss -ltnp`); stop it or choose other ports"
                " with --port NAME=NUMBER (or --free-ports)"
            )

    def _spawn(self, spec: ProcessSpec) -> None:
        log = self.log_path(spec.name)
        if spec.prepare is not None:
            spec.prepare()
        proc = spawn(spec.argv, {**self.environ, **spec.env}, log, paths.REPO_ROOT, spec.user)
        self._procs[spec.name] = proc
        record = PidRecord(
            name=spec.name,
            kind=spec.kind,
            pid=proc.pid,
            pgid=proc.pid,
            start_ticks=start_ticks(proc.pid),
            ports=spec.ports,
            log=str(log),
        )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._pid_path(spec.name).write_text(record.to_json())

    def _wait_started(self, spec: ProcessSpec) -> None:
        """Wait until ``spec`` is ready; one that exits while starting is started again, up to its
        ``start_attempts``."""
        for attempt in range(1, spec.start_attempts + 1):
            try:
                self._wait_ready(spec)
                return
            except _ExitedWhileStartingError as exited:
                if attempt == spec.start_attempts:
                    raise DeployError(str(exited)) from None
                self._say(f"{spec.name}: {exited}; starting it again ({attempt + 1}/{spec.start_attempts})")
                self._pid_path(spec.name).unlink(missing_ok=True)
                self._spawn(spec)

    def _wait_ready(self, spec: ProcessSpec) -> None:
        label = f"{spec.name} ({spec.main_port})" if spec.main_port else spec.name
        self._write(f"waiting for {label}... ")
        began = time.monotonic()
        deadline = began + spec.ready_timeout
        delay = 0.05
        proc = self._procs.get(spec.name)
        while True:
            if proc is not None and proc.poll() is not None:
                self._write("exited\n")
                raise _ExitedWhileStartingError(
                    f"{spec.name} exited with code {proc.returncode} while starting; "
                    f"last lines of {self.log_path(spec.name)}:\n{self.tail(spec.name, 20)}"
                )
            health = spec.ready()
            if health.ok and self._settled(spec, proc):
                self._write(f"ready in {time.monotonic() - began:.1f}s\n")
                return
            if time.monotonic() >= deadline:
                self._write("timed out\n")
                raise DeployError(
                    f"{spec.name} not ready after {spec.ready_timeout:.0f}s: {health.detail}; "
                    f"last lines of {self.log_path(spec.name)}:\n{self.tail(spec.name, 20)}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    @staticmethod
    def _settled(spec: ProcessSpec, proc: subprocess.Popen[bytes] | None) -> bool:
        """True unless the process exits within ``settle_seconds`` of answering (then the loop reports it)."""
        if proc is None or spec.settle_seconds <= 0:
            return True
        try:
            proc.wait(timeout=spec.settle_seconds)
        except subprocess.TimeoutExpired:
            return True
        return False

    # --- status ------------------------------------------------------------------------------------------

    def status(self) -> list[ComponentStatus]:
        """Each selected component with its health (what the last ``up`` started, when nothing is selected)."""
        selection = self._selection
        recorded = self._recorded.get("components")
        if selection is None and isinstance(recorded, list):
            selection = [str(c) for c in recorded]
        self._use_existing_secrets()
        result = []
        for spec in self.specs(selection):
            if spec.skip_reason is not None:
                result.append(ComponentStatus(spec.name, spec.kind, "skipped", False, spec.skip_reason))
                continue
            record = self._record(spec.name)
            if record is None or not is_running(record):
                detail = "not running" if record is None else f"not running (stale pid file, pid {record.pid})"
                result.append(ComponentStatus(spec.name, spec.kind, "stopped", False, detail))
                continue
            health = spec.check_health()
            result.append(ComponentStatus(spec.name, spec.kind, "running", health.ok, health.detail, record.pid))
        return result

    def healthy(self) -> bool:
        return all(s.ok for s in self.status())

    # --- down --------------------------------------------------------------------------------------------

    def down(self) -> None:
        """Stop everything started from this state dir, wait until its ports are free, remove pid files,
        the stack file and the lock. Data (databases, objects, secrets, logs) stays."""
        if not self.state_dir.is_dir():
            self._say("nothing to stop")
            return
        with self._lock().held():
            records = self._records()
            if not records:
                self._say("nothing to stop")
            else:
                specs = self._specs_for_cleanup()
                self._stop(records, specs)
            (self.state_dir / STACK_FILE).unlink(missing_ok=True)
            self._recorded = {}

    # --- one component at a time --------------------------------------------------------------------------

    def stop(self, *components: str) -> list[str]:
        """Stop the named running components (names or groups) of this stack and wait until their ports are free;
        the rest keeps running and every component's data stays, so ``start`` brings them back on the same ports
        with the same state. Returns the names that were running."""
        with self._lock().held():
            specs = self.specs(list(components))
            records = [r for r in (self._record(s.name) for s in specs) if r is not None]
            running = [r for r in records if is_running(r)]
            for record in records:
                if record not in running:
                    self._pid_path(record.name).unlink(missing_ok=True)
            if not running:
                self._say(f"{', '.join(s.name for s in specs)}: not running")
                return []
            self._stop(running, specs)
            return [r.name for r in running]

    def kill(self, *components: str) -> list[str]:
        """SIGKILL the named running components, as a crash would, and wait until their ports are free; ``start``
        brings them back. Returns the names that were running."""
        with self._lock().held():
            specs = self.specs(list(components))
            running = [r for r in (self._record(s.name) for s in specs) if r is not None and is_running(r)]
            if running:
                self._stop(running, specs, kill=True)
            return [r.name for r in running]

    def start(self, *components: str) -> None:
        """Start the named components (names or groups) of this stack, as ``up`` would with that selection: those
        already running are left alone, and this waits until each started one is ready."""
        selection = self._selection
        self._selection = list(components)
        try:
            self.up()
        finally:
            self._selection = selection

    def _use_existing_secrets(self) -> None:
        # Reading commands never create secrets.env: when nothing was ever started here, throwaway values do.
        if self._secrets is None:
            self._secrets = credentials.load(self.state_dir) or credentials.generate()

    def _specs_for_cleanup(self) -> list[ProcessSpec]:
        self._use_existing_secrets()
        try:
            return self._all_specs(with_workers=False)
        except DeployError:
            return []

    def _stop(self, records: list[PidRecord], specs: Sequence[ProcessSpec], kill: bool = False) -> None:
        timeouts = {s.name: s.stop_timeout for s in specs}
        signals = {s.name: signal.SIGKILL if kill else s.stop_signal for s in specs}
        began = time.monotonic()
        # Our services first (workers finish their tasks while Temporal still answers), then middleware.
        for group in (
            [r for r in records if r.kind != "middleware"],
            [r for r in records if r.kind == "middleware"],
        ):
            if not group:
                continue
            self._write(f"stopping {', '.join(r.name for r in group)}... ")
            killed = stop_groups(group, timeout=max(timeouts.get(r.name, 15.0) for r in group), signals=signals)
            for record in group:
                proc = self._procs.pop(record.name, None)
                if proc is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=1)
            self._write(f"stopped{' (killed: ' + ', '.join(killed) + ')' if killed else ''}\n")
        for spec in specs:
            if spec.cleanup is not None and any(r.name == spec.name for r in records):
                spec.cleanup()
        ports = [p for r in records for p in r.ports]
        self._write(f"waiting for ports {', '.join(map(str, sorted(ports)))} to be free... " if ports else "")
        busy = wait_ports_free(ports, timeout=15.0)
        if busy:
            self._write("still in use\n")
            raise DeployError(
                f"port(s) {', '.join(map(str, busy))} still in use after stopping; find the owner with `ss -ltnp`"
            )
        if ports:
            self._write("free\n")
        for record in records:
            self._pid_path(record.name).unlink(missing_ok=True)
        self._say(f"stopped in {time.monotonic() - began:.1f}s")

    # --- logs and summary --------------------------------------------------------------------------------

    def tail(self, component: str, lines: int = 50) -> str:
        path = self.log_path(component)
        try:
            with path.open("rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 256 * 1024))
                data = f.read().decode(errors="replace")
        except FileNotFoundError:
            return f"(no log at {path})"
        return "\n".join(data.splitlines()[-lines:])

    def log_components(self) -> list[str]:
        return sorted(p.stem for p in self.log_dir.glob("*.log")) if self.log_dir.is_dir() else []

    def summary(self) -> list[str]:
        """What ``up`` prints at the end: where things are and the dev API key (no other secret)."""
        ctx = self.context()
        running = {s.name for s in self.status() if s.state == "running"}
        lines = []
        for service in APP_SERVICES:
            for name, field in ((service.name, service.port_field), (f"{service.name}-2", f"{service.port_field}_2")):
                if name in running and service.public:
                    lines.append(f"  {name}: {ctx.url(getattr(self.ports, field))}")
        for name in self.middleware_names:
            if name in running:
                lines += [f"  {label}: {url}" for label, url in self._catalog[name].local_urls(ctx).items()]
        lines.append(f"  dev API key (user dev): {self.secrets.dev_api_key}")
        lines.append(f"  secrets: {self.state_dir / credentials.FILE_NAME}; logs: {self.log_dir}")
        return lines

    # --- context manager ---------------------------------------------------------------------------------

    def __enter__(self) -> LocalStack:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.down()

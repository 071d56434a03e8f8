"""Debian packages for an image, fetched on the host: exactly what they need beyond the packages the base image
already has, from the archives the host's apt knows (the ones the base image itself came from), so the image's
build installs them with `dpkg -i` and no network.

The host's apt plans the installation against the base image's package list (`Dir::State::status` pointing at a
copy of its `/var/lib/dpkg/status`), not against the host's own, and downloads into a directory of our own.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .engine import docker_command, docker_env
from .host import HostError, Progress, Stopwatch, run


def base_status(base_image: str, target: Path) -> Path:
    """The base image's dpkg status file, copied to ``target``."""
    result = run(
        docker_command("run", "--rm", "--entrypoint", "cat", base_image, "/var/lib/dpkg/status"),
        timeout=120,
        env=docker_env(),
    )
    if result.returncode != 0:
        raise HostError(f"cannot read the package list of {base_image}:\n{result.stderr[-2000:]}")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(result.stdout)
    return target


def _apt_get(status: Path, archives: Path, *args: str) -> list[str]:
    return [
        "apt-get",
        "-o",
        f"Dir::State::status={status}",
        "-o",
        f"Dir::Cache::archives={archives}",
        "-o",
        "Debug::NoLocking=1",
        "install",
        "--no-install-recommends",
        "--yes",
        *args,
    ]


def _apt_env() -> dict[str, str]:
    return {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def planned(packages: Sequence[str], status: Path, progress: Progress) -> list[str]:
    """``file sha256`` of every package apt would fetch, sorted: what an image built from them depends on."""
    archives = status.parent / "archives-plan"
    (archives / "partial").mkdir(parents=True, exist_ok=True)
    argv = _apt_get(status, archives, "--print-uris", "-qq", *packages)
    result = run(argv, timeout=300, env=_apt_env())
    if result.returncode != 0:
        # A fresh host may have no package lists yet.
        progress("apt-get update (for the Debian packages of the stand-in images) ...")
        if run(["apt-get", "update"], timeout=600, env=_apt_env()).returncode == 0:
            result = run(argv, timeout=300, env=_apt_env())
    if result.returncode != 0:
        raise HostError(f"apt cannot plan {' '.join(packages)}:\n{result.stderr[-2000:]}")
    found = []
    for line in result.stdout.splitlines():
        # 'URI' file size SHA256:hash
        parts = line.split()
        if len(parts) >= 4 and parts[0].startswith("'"):
            found.append(f"{parts[1]} {parts[3]}")
    if not found:
        raise HostError(f"apt planned nothing to fetch for {' '.join(packages)}")
    return sorted(found)


def download(packages: Sequence[str], status: Path, target: Path, progress: Progress) -> list[Path]:
    """Fetch the packages into ``target`` (emptied first); the .deb files."""
    if os.geteuid() != 0:
        raise HostError(f"downloading {' '.join(packages)} with the host's apt needs root")
    clock = Stopwatch()
    progress(f"downloading {' '.join(packages)} and what they need beyond the base image ...")
    if target.exists():
        for old in target.glob("*.deb"):
            old.unlink()
    (target / "partial").mkdir(parents=True, exist_ok=True)
    result = run(_apt_get(status, target, "--download-only", *packages), timeout=1200, env=_apt_env())
    if result.returncode != 0:
        raise HostError(f"apt-get could not download {' '.join(packages)}:\n{result.stderr[-2000:]}")
    (target / "partial").rmdir()
    debs = sorted(target.glob("*.deb"))
    for leftover in target.iterdir():
        if leftover.is_file() and leftover.suffix != ".deb":
            leftover.unlink()
    progress(f"downloaded {len(debs)} packages in {clock}")
    return debs

"""The Python base image without a registry: `debootstrap --variant=minbase bookworm` with Debian's python3,
brought up to date and slimmed, then `docker import`.

debootstrap fetches from the Debian archives this host's apt is configured with (`apt_sources`), so it works
wherever `apt-get` works; the image keeps those sources.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .apt_sources import AptSource, archive_for, read_sources, source_files
from .engine import docker_command, docker_env
from .host import HostError, Progress, Stopwatch, apt_install, hash_parts, run_logged, unmount_under

# Bump RECIPE_VERSION when the steps below change: it is part of the image's inputs.
RECIPE_VERSION = "2"
DEBIAN_SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates", "tzdata")
# Applied after debootstrap when the host's apt knows them, as Debian's own images are kept up to date.
UPDATE_SUITES = (f"{DEBIAN_SUITE}-updates", f"{DEBIAN_SUITE}-security")


def debian_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def recipe_inputs() -> str:
    return hash_parts([RECIPE_VERSION, DEBIAN_SUITE, debian_arch(), *PACKAGES])


def archives(sources: list[AptSource]) -> list[AptSource]:
    """The suite debootstrap installs and the update suites the host's apt has, in that order."""
    release = archive_for(sources, DEBIAN_SUITE)
    if release is None:
        raise HostError(
            f"the host's apt configuration has no Debian {DEBIAN_SUITE} archive with `main` "
            f"(read: {', '.join(map(str, source_files())) or 'no sources files'}); debootstrap needs one"
        )
    updates = [archive for suite in UPDATE_SUITES if (archive := archive_for(sources, suite)) is not None]
    return [release, *updates]


def build_python_base(tag: str, labels: Mapping[str, str], work: Path, progress: Progress) -> None:
    if os.geteuid() != 0:
        raise HostError("building the Python base image with debootstrap needs root")
    used = archives(read_sources())
    if shutil.which("debootstrap") is None:
        apt_install(["debootstrap"], progress)
    logs = work / "logs"
    # On disk, not tmpfs: the root filesystem is about 150 MB.
    work.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="python-base-", dir=work))
    rootfs = scratch / "rootfs"
    try:
        clock = Stopwatch()
        progress(f"debootstrap --variant=minbase {DEBIAN_SUITE} from {used[0].uri} (about a minute) ...")
        run_logged(
            [
                "debootstrap",
                "--variant=minbase",
                f"--arch={debian_arch()}",
                f"--include={','.join(PACKAGES)}",
                DEBIAN_SUITE,
                str(rootfs),
                used[0].uri,
            ],
            logs / "debootstrap.log",
            what="debootstrap",
            timeout=1200,
        )
        progress(f"debootstrap done in {clock}")
        clock = Stopwatch()
        progress(f"applying {', '.join(a.suite for a in used[1:]) or 'no update suites'} to the root filesystem ...")
        _apply_updates(rootfs, used, logs / "base-updates.log")
        _slim_rootfs(rootfs)
        progress(f"root filesystem updated and slimmed in {clock}")
        clock = Stopwatch()
        progress(f"docker import {tag} ...")
        changes = [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            *(f"LABEL {key}={value}" for key, value in labels.items()),
            f'LABEL org.opencontainers.image.description="Debian {DEBIAN_SUITE} minbase with Debian python3"',
            'CMD ["python3"]',
        ]
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        argv = docker_command("import")
        for change in changes:
            argv += ["--change", change]
        try:
            run_logged(
                [*argv, "-", tag],
                logs / "base-import.log",
                what="docker import",
                timeout=600,
                env=docker_env(),
                stdin=tar.stdout.fileno(),
            )
        finally:
            tar.stdout.close()
            tar.wait()
        if tar.returncode != 0:
            raise HostError(f"tar of the root filesystem failed with status {tar.returncode}")
        progress(f"imported {tag} in {clock}")
    finally:
        unmount_under(scratch, progress)
        shutil.rmtree(scratch, ignore_errors=True)


def _apply_updates(rootfs: Path, used: list[AptSource], log: Path) -> None:
    """Bring the point-release packages debootstrap installed up to date. The image keeps these sources, but not
    the downloaded lists (as Debian's images do)."""
    (rootfs / "etc/apt/sources.list").write_text("".join(f"deb {a.uri} {a.suite} main\n" for a in used))
    script = (
        "set -e; export DEBIAN_FRONTEND=noninteractive; "
        "apt-get update -qq; apt-get -y -qq -o Dpkg::Options::=--force-confold upgrade; apt-get clean"
    )
    run_logged(["chroot", str(rootfs), "/bin/sh", "-c", script], log, what="apt-get upgrade in the rootfs", timeout=900)


def _slim_rootfs(rootfs: Path) -> None:
    """Drop what a container never needs, and anything host-specific debootstrap copied in."""
    for pattern in (
        "var/lib/apt/lists/*",
        "var/cache/apt/*.bin",
        "var/cache/apt/archives/*.deb",
        "var/cache/debconf/*-old",
        "var/log/*.log",
        "var/log/apt/*",
        "usr/share/doc/*",
        "usr/share/man/*",
        "usr/share/info/*",
        "usr/share/locale/*",
        "dev/*",
        "tmp/*",
        "var/tmp/*",
    ):
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    # Docker provides these at run time; do not ship the build host's.
    for name in ("etc/resolv.conf", "etc/hostname", "etc/hosts"):
        target = rootfs / name
        if target.exists() or target.is_symlink():
            target.unlink()
        target.write_text("")

"""The wheelhouse the application image installs from: the project's runtime dependencies as locked in
`uv.lock`, downloaded on the host for the image's platform (Linux, CPython 3.11, glibc 2.36), each wheel's sha256
checked against the lock.

`docker/app.Dockerfile` installs from it with `pip --no-index --require-hashes`, so nothing is downloaded inside
`docker build`, which on these hosts would not trust the host's CA certificates.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .host import REPO_ROOT, WORK_DIR, HostError, Progress, Stopwatch, hash_parts, pip_command, sha256_file

DEBIAN_GLIBC_MINOR = 36  # bookworm's glibc 2.36
WHEELHOUSE = REPO_ROOT / "build" / "wheelhouse"  # docker/app.Dockerfile copies it
REQUIREMENTS = "requirements.txt"


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class LockedPackage:
    name: str
    version: str
    wheel_hashes: Mapping[str, str]  # wheel file name -> sha256 hex


def read_lock(repo_root: Path) -> dict[str, LockedPackage]:
    """Registry packages pinned in uv.lock, by normalized name, with the sha256 of each of their wheels."""
    lock = tomllib.loads((repo_root / "uv.lock").read_text())
    packages: dict[str, LockedPackage] = {}
    for entry in lock.get("package", []):
        if "registry" not in entry.get("source", {}):
            continue  # the project itself (editable) or a path / git source
        hashes = {}
        for wheel in entry.get("wheels", []):
            filename = wheel["url"].rsplit("/", 1)[-1]
            hashes[filename] = wheel["hash"].removeprefix("sha256:")
        packages[_normalize(entry["name"])] = LockedPackage(entry["name"], entry["version"], hashes)
    return packages


def runtime_closure(repo_root: Path) -> set[str]:
    """Normalized names of every locked package the project's runtime dependencies can pull in (extras followed,
    markers ignored, so a superset of what one platform installs; dev groups left out)."""
    lock = tomllib.loads((repo_root / "uv.lock").read_text())
    entries = {_normalize(entry["name"]): entry for entry in lock.get("package", [])}
    project = next((e for e in entries.values() if "editable" in e.get("source", {})), None)
    if project is None:
        raise HostError("uv.lock has no editable entry for the project itself")
    seen: set[str] = set()
    pending: list[dict[str, object]] = list(project.get("dependencies", []))
    while pending:
        dependency = pending.pop()
        name = _normalize(str(dependency["name"]))
        extras = dependency.get("extra", [])
        entry = entries.get(name)
        if entry is None:
            raise HostError(f"uv.lock names {name} as a dependency but has no entry for it")
        if name not in seen:
            seen.add(name)
            pending.extend(entry.get("dependencies", []))
        for extra in extras if isinstance(extras, list) else []:
            pending.extend(entry.get("optional-dependencies", {}).get(extra, []))
    return seen


def runtime_requirements(repo_root: Path) -> list[str]:
    """The project's runtime dependencies as declared in pyproject.toml (no dev group)."""
    pyproject = tomllib.loads((repo_root / "pyproject.toml").read_text())
    return list(pyproject["project"]["dependencies"])


def _wheel_name_version(filename: str) -> tuple[str, str]:
    name, version = filename.split("-")[:2]
    return _normalize(name), version


def _platform_flags() -> tuple[str, list[str]]:
    """pip --platform flags for Debian bookworm (glibc 2.36): pip does not widen an explicit manylinux tag to the
    older ones a wheel may carry, so list them all (and the legacy aliases)."""
    machine = platform.machine()
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(DEBIAN_GLIBC_MINOR, 4, -1)]
    tags += [f"{legacy}_{machine}" for legacy in ("manylinux2014", "manylinux2010", "manylinux1")]
    return tags[0], [f"--platform={tag}" for tag in tags]


def build_wheelhouse(progress: Progress, *, rebuild: bool = False) -> Path:
    """Download the locked runtime wheels for the image's platform (Linux, CPython 3.11, glibc 2.36).

    Writes `requirements.txt` there (the whole closure, `name==version --hash=sha256:...`). Reused while
    pyproject.toml's dependencies and uv.lock are unchanged.
    """
    wheelhouse = WHEELHOUSE
    requirements = runtime_requirements(REPO_ROOT)
    lock = read_lock(REPO_ROOT)
    closure = runtime_closure(REPO_ROOT)
    platform_tag, platform_flags = _platform_flags()
    constraints = sorted(f"{lock[name].name}=={lock[name].version}" for name in closure)
    inputs = hash_parts(["wheelhouse-3", platform_tag, *requirements, "--", *constraints])
    # Kept outside the wheelhouse: the image build copies the wheelhouse, and only its wheels and requirement
    # files should decide whether that layer is still cached.
    marker = WORK_DIR / "cache" / "wheelhouse.inputs"
    if not rebuild and marker.is_file() and marker.read_text().strip() == inputs and wheelhouse.is_dir():
        progress(f"reusing wheelhouse {wheelhouse.relative_to(REPO_ROOT)}")
        return wheelhouse
    clock = Stopwatch()
    progress(f"downloading the locked runtime wheels for {platform_tag} into {wheelhouse.relative_to(REPO_ROOT)} ...")
    if wheelhouse.exists():
        shutil.rmtree(wheelhouse)
    wheelhouse.mkdir(parents=True)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    # Only PyPI (or an index the environment names): a host's local find-links may hold wheels built there,
    # which would not match the lock's hashes.
    env = {k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"}
    env["PIP_CONFIG_FILE"] = os.devnull
    log = WORK_DIR / "logs" / "wheelhouse.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wheelhouse-") as tmp:
        (Path(tmp) / "requirements.in").write_text("\n".join(requirements) + "\n")
        (Path(tmp) / "constraints.txt").write_text("\n".join(constraints) + "\n")
        argv = [
            *pip_command(progress),
            "download",
            "--only-binary=:all:",
            *platform_flags,
            "--python-version=3.11",
            "--implementation=cp",
            "--abi=cp311",
            "--dest", str(wheelhouse),
            "-r", str(Path(tmp) / "requirements.in"),
            "-c", str(Path(tmp) / "constraints.txt"),
        ]  # fmt: skip
        with log.open("w") as out:
            result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=1800, check=False)
    if result.returncode != 0:
        raise HostError(f"pip download failed; log: {log}\n{log.read_text(errors='replace')[-4000:]}")
    lines = _verify_wheels(wheelhouse, lock)
    header = "# Locked runtime closure from uv.lock; every wheel's sha256 was checked against the lock.\n"
    (wheelhouse / REQUIREMENTS).write_text(header + "\n".join(lines) + "\n")
    marker.write_text(inputs + "\n")
    size = sum(p.stat().st_size for p in wheelhouse.glob("*.whl")) / 1e6
    progress(f"wheelhouse ready in {clock}: {len(lines)} wheels, {size:.0f} MB")
    return wheelhouse


def _verify_wheels(wheelhouse: Path, lock: Mapping[str, LockedPackage]) -> list[str]:
    lines = []
    for wheel in sorted(wheelhouse.glob("*.whl")):
        name, version = _wheel_name_version(wheel.name)
        locked = lock.get(name)
        if locked is None or locked.version != version:
            raise HostError(f"{wheel.name} is not the version uv.lock pins")
        expected = locked.wheel_hashes.get(wheel.name)
        actual = sha256_file(wheel)
        if expected != actual:
            raise HostError(f"{wheel.name}: sha256 {actual} does not match uv.lock ({expected})")
        lines.append(f"{locked.name}=={version} --hash=sha256:{actual}")
    return lines

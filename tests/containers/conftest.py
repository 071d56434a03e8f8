"""The whole stack from the project's images, as `docker compose up` runs it, driven from the host.

Testcontainers' `DockerCompose` starts the committed compose.yaml under a project name of its own, with two env
files: `.deploy/images.env` (the local images `./dev images` built, so nothing is pulled) and one of this
run's (free host ports, generated secrets, two API keys). Nothing here depends on the documented default ports,
so a developer's own stack and a second test run never collide. The project and its volumes are removed at the
end (`down -v`).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest
import yaml
from minio import Minio
from temporalio.client import Client
from testcontainers.compose import DockerCompose

from deploy.docker import HOST_PORT_VARIABLES
from deploy.paths import COMPOSE_FILE, IMAGES_ENV_NAME, REPO_ROOT
from deploy.ports import Ports
from offline_docker.compose_plugin import find_compose
from offline_docker.host import HostError
from offline_docker.images import IMAGE_VARIABLES
from services.shared.settings import TemporalSettings
from services.shared.temporal import connect
from tests.docker_fixtures import DockerImages
from tests.stack import USERS, Api

RESULTS_BUCKET = "task-results"
# Variables compose.yaml reads from the environment. A shell that sets any of them would win over the env files
# (compose's rule), e.g. a developer's real provider key would make the stack call the real provider.
_COMPOSE_VARIABLES = (
    *IMAGE_VARIABLES,
    *HOST_PORT_VARIABLES.values(),
    "PUBLISH_IP",
    "INTERNAL_TOKEN",
    "REALTIME_SECRET",
    "API_KEYS",
    "S3_ACCESS_KEY",
    "S3_SECRET_KEY",
    "S3_PUBLIC_ENDPOINT",
    "MAIN_PUBLIC_URL",
    "REALTIME_PUBLIC_URL",
    "GEMINI_API_KEY",
    "GEMINI_BASE_URL",
    "ARK_API_KEY",
    "ARK_BASE_URL",
    "COMPOSE_PROJECT_NAME",
    "COMPOSE_FILE",
    "COMPOSE_PROFILES",
)


@dataclass
class ProjectCompose(DockerCompose):
    """`DockerCompose` under an explicit project name: compose.yaml names its own project (the one `docker compose
    up` gives a user), and a test run must never touch that one or another run's."""

    project_name: str = ""
    # argv of Compose v2 (`docker compose`, or the binary offline_docker.compose_plugin installed).
    compose_argv: list[str] = field(default_factory=lambda: ["docker", "compose"])

    @cached_property
    def compose_command_property(self) -> list[str]:
        command = [*self.compose_argv, "--project-name", self.project_name]
        for name in self.compose_file_name or []:
            command += ["-f", str(name)]
        for env_file in self.env_file or []:
            command += ["--env-file", str(env_file)]
        return command


@dataclass
class ComposeStack:
    compose: ProjectCompose
    # What the run's env file holds (ports, secrets), and the local images.
    env: dict[str, str]
    images: dict[str, str]
    # Host ports by deploy.ports.Ports field name: main, communication, temporal, temporal_ui, s3, s3_console.
    ports: dict[str, int]

    @property
    def project(self) -> str:
        return self.compose.project_name

    @property
    def main_url(self) -> str:
        return f"http://localhost:{self.ports['main']}"

    @property
    def websocket_url(self) -> str:
        return f"ws://localhost:{self.ports['communication']}/ws"

    @property
    def s3_endpoint(self) -> str:
        return f"localhost:{self.ports['s3']}"

    @property
    def temporal_address(self) -> str:
        return f"localhost:{self.ports['temporal']}"

    def services(self) -> dict[str, Any]:
        document = yaml.safe_load(COMPOSE_FILE.read_text())
        services: dict[str, Any] = document["services"]
        return services

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`docker compose ARGS` for this project."""
        result = subprocess.run(
            [*self.compose.compose_command_property, *args],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker compose {' '.join(args)} failed ({result.returncode}):\n{result.stderr}\n{self.diagnose()}"
            )
        return result

    def up(self) -> None:
        """`docker compose up --wait`: returns when every service is healthy (create-bucket: exited 0)."""
        try:
            self.compose.start()
        except subprocess.CalledProcessError as exc:
            stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else str(exc.stderr)
            raise AssertionError(f"docker compose up --wait failed:\n{stderr}\n{self.diagnose()}") from exc

    def ps(self) -> list[dict[str, Any]]:
        text = self.run("ps", "--all", "--format", "json").stdout.strip()
        if text.startswith("["):
            rows: list[dict[str, Any]] = json.loads(text)
            return rows
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def diagnose(self, lines: int = 40) -> str:
        """State of every container and the end of their logs, for failure messages."""
        ps = subprocess.run(
            [*self.compose.compose_command_property, "ps", "--all"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        logs = subprocess.run(
            [*self.compose.compose_command_property, "logs", "--no-color", "--tail", str(lines)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return f"--- docker compose ps ---\n{ps.stdout}{ps.stderr}\n--- logs ---\n{logs.stdout}{logs.stderr}"

    def s3(self) -> Minio:
        """A client on the host, through the published MinIO port."""
        return Minio(self.s3_endpoint, self.env["S3_ACCESS_KEY"], self.env["S3_SECRET_KEY"], secure=False)

    def object_keys(self, prefix: str) -> list[str]:
        return sorted(str(o.object_name) for o in self.s3().list_objects(RESULTS_BUCKET, prefix, recursive=True))

    def read_object(self, key: str) -> bytes:
        response = self.s3().get_object(RESULTS_BUCKET, key)
        try:
            data: bytes = response.read()
            return data
        finally:
            response.close()
            response.release_conn()


def _run_env_file(directory: Path, ports: dict[str, int]) -> tuple[Path, dict[str, str]]:
    env = {HOST_PORT_VARIABLES[name]: str(port) for name, port in ports.items()}
    env.update(
        {
            "INTERNAL_TOKEN": secrets.token_urlsafe(24),
            "REALTIME_SECRET": secrets.token_urlsafe(24),
            "API_KEYS": ",".join(f"{key}:{user}" for user, key in USERS.items()),
            "S3_ACCESS_KEY": f"test-{secrets.token_hex(4)}",
            "S3_SECRET_KEY": secrets.token_urlsafe(24),
        }
    )
    path = directory / "run.env"
    path.write_text("".join(f"{key}={value}\n" for key, value in env.items()))
    return path, env


# Package scope: the stack goes down right after the last test here, not at the end of the whole session.
@pytest.fixture(scope="package")
def compose_stack(docker_images: DockerImages, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    try:
        compose_argv = find_compose()
    except HostError as exc:
        pytest.fail(f"an engine answers but docker compose v2 cannot be had: {exc}")
    free = Ports.free()
    ports = {name: getattr(free, name) for name in HOST_PORT_VARIABLES}
    env_file, env = _run_env_file(tmp_path_factory.mktemp("compose"), ports)
    images_env = REPO_ROOT / IMAGES_ENV_NAME
    assert images_env.is_file(), f"{IMAGES_ENV_NAME} was not written by the image bootstrap"
    compose = ProjectCompose(
        context=REPO_ROOT,
        compose_file_name=[COMPOSE_FILE.name],
        env_file=[str(images_env), str(env_file)],
        wait=True,
        project_name=f"atp-test-{uuid.uuid4().hex[:10]}",
        compose_argv=compose_argv,
    )
    stack = ComposeStack(compose=compose, env=env, images=docker_images.images, ports=ports)
    with pytest.MonkeyPatch.context() as patch:
        for name in _COMPOSE_VARIABLES:
            patch.delenv(name, raising=False)
        for key, value in docker_images.engine.env.items():
            patch.setenv(key, value)
        # DockerCompose needs neither, but any other Testcontainers use in this process must work offline.
        patch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
        patch.setenv("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
        try:
            stack.up()
            yield stack
        finally:
            # `down --volumes`: containers, network and the named volumes of this project.
            compose.stop(down=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    setattr(item, f"report_{call.when}", report)
    return report


@pytest.fixture(autouse=True)
def _stack_state_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """A failed test prints the containers' state and logs (shown under "Captured stdout teardown")."""
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed and "compose_stack" in request.fixturenames:
        print(request.getfixturevalue("compose_stack").diagnose())


@pytest.fixture
async def alice(compose_stack: ComposeStack) -> AsyncIterator[Api]:
    api = Api(compose_stack.main_url, "alice")
    yield api
    await api.close()


@pytest.fixture(scope="package")
async def temporal(compose_stack: ComposeStack) -> Client:
    return await connect(TemporalSettings(address=compose_stack.temporal_address))


def integration_present(folder: str) -> bool:
    return (REPO_ROOT / "integrations" / folder / "manifest.json").is_file()

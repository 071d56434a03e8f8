"""The compose stack as `docker compose up` runs it: every service healthy, only the front door, the Temporal UI
and MinIO published (on this run's host ports), init everywhere, data on named volumes, and URLs handed to clients
that work from the host, all through the front door. Also: once `./dev images` has run, the deploy tool finds the
local images by itself."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from deploy.docker import DockerStack, choose_mode
from deploy.paths import COMPOSE_FILE
from services.shared.discovery import discover, parse_blacklist
from services.shared.manifest import slug
from tests.docker_fixtures import DockerImages
from tests.stack import Api

from .conftest import ComposeStack

# The first test may have to start the engine and build every image (minutes on a fresh machine).
pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

# Temporal's 7233 only through the tests' own override (temporal-port.yaml).
PUBLISHED = {"front-door": {8000}, "temporal": {7233, 8233}, "minio": {9000, 9001}}


def test_every_service_runs_healthy_with_a_worker_per_integration(compose_stack: ComposeStack) -> None:
    services = compose_stack.services()
    rows = {row["Service"]: row for row in compose_stack.ps()}
    assert set(rows) == set(services)
    for name, row in rows.items():
        if "healthcheck" in services[name]:
            assert (row["State"], row["Health"]) == ("running", "healthy"), row
        else:
            assert (row["State"], row["ExitCode"]) == ("exited", 0), row  # create-bucket, one-shot
    integrations = discover(blacklist=parse_blacklist(None)).integrations
    assert {f"worker-{slug(i.name)}" for i in integrations} == {n for n in services if n.startswith("worker-")}
    expected = {"main", "communication", "front-door", "temporal", "nats", "postgres", "minio", "create-bucket"}
    assert {*expected, "simulator"} <= set(services)


def test_only_user_facing_ports_are_published_on_the_chosen_host_ports(compose_stack: ComposeStack) -> None:
    published: dict[str, set[int]] = {}
    for row in compose_stack.ps():
        for publisher in row.get("Publishers") or []:
            if publisher.get("PublishedPort"):
                assert publisher["URL"] == "127.0.0.1", publisher
                published.setdefault(row["Service"], set()).add(publisher["TargetPort"])
                host_port = compose_stack.compose.get_service_port(row["Service"], publisher["TargetPort"])
                assert host_port == publisher["PublishedPort"]
    assert published == PUBLISHED
    assert compose_stack.compose.get_service_port("front-door", 8000) == compose_stack.ports["main"]
    assert compose_stack.compose.get_service_port("minio", 9000) == compose_stack.ports["s3"]


def test_init_everywhere_and_state_on_named_volumes(compose_stack: ComposeStack) -> None:
    ids = compose_stack.run("ps", "--all", "--quiet").stdout.split()
    inspected = json.loads(
        subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True, timeout=60).stdout
    )
    data: dict[str, set[str]] = {}
    secrets: dict[str, set[str]] = {}
    project = compose_stack.project
    for container in inspected:
        service = container["Config"]["Labels"]["com.docker.compose.service"]
        assert container["HostConfig"]["Init"] is True, service
        for mount in container["Mounts"]:
            if mount["Type"] == "volume":
                name = mount["Name"].removeprefix(f"{project}_")
                (secrets if name.startswith("secrets") else data).setdefault(service, set()).add(name)
                # A service reads its secrets; only the secrets service writes them.
                if name.startswith("secrets-") and service != "secrets":
                    assert (mount["Destination"], mount["RW"]) == ("/run/secrets", False), (service, mount)
    assert data == {
        "temporal": {"temporal-data"},
        "minio": {"minio-data"},
        "nats": {"nats-data"},
        "postgres": {"postgres-data"},
    }
    readers = {
        name for name in compose_stack.services() if name not in ("secrets", "temporal", "simulator", "front-door")
    }
    assert {service: names for service, names in secrets.items() if service != "secrets"} == {
        name: {f"secrets-{name}"} for name in readers
    }
    assert secrets["secrets"] == {"secrets", *(f"secrets-{name}" for name in readers)}


async def test_urls_handed_to_clients_work_from_the_host(compose_stack: ComposeStack, alice: Api) -> None:
    token = await alice.http.post("/api/realtime/token")
    assert token.status_code == 201, token.text
    assert token.json()["url"] == compose_stack.websocket_url
    events = await alice.socket()  # connects to that URL and reads the greeting
    await events.close()
    async with httpx.AsyncClient(base_url=compose_stack.main_url) as client:
        # The front door's own health; main's console and API docs behind it.
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/console")).status_code == 200
        assert (await client.get("/docs/openapi.json")).status_code == 200
    # The Temporal UI link of a task points at this run's published UI port.
    created = await alice.create("echo", {"message": "links"})
    assert created.status_code == 202, created.text
    ui = urlsplit(created.json()["links"]["temporal_ui"])
    assert ui.netloc == f"localhost:{compose_stack.ports['temporal_ui']}"
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"http://{ui.netloc}/")).status_code == 200


def test_deploy_tool_finds_the_bootstrapped_images(docker_images: DockerImages, tmp_path: Path) -> None:
    # .deploy/images.env, written by the bootstrap, is what `deploy-tool up --mode auto|docker` reads.
    mode, reason = choose_mode("auto", COMPOSE_FILE, {})
    assert mode == "docker", reason
    env = DockerStack(tmp_path, environ={}).compose_env()
    for variable in ("APP_IMAGE", "TEMPORAL_IMAGE", "MINIO_IMAGE", "NATS_IMAGE", "NGINX_IMAGE", "POSTGRES_IMAGE"):
        assert env[variable] == docker_images.images[variable]
    # The environment still wins over the file, as with `docker compose --env-file`.
    assert DockerStack(tmp_path, environ={"APP_IMAGE": "mine:1"}).compose_env()["APP_IMAGE"] == "mine:1"

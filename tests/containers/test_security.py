"""A fresh `docker compose up` as an outsider meets it: the secrets that shipped as defaults open nothing, the
internal listeners cannot be reached from the host (and inside the stack's network they want their own token), and
each container's environment holds exactly the variables of its service's contract, with no secret value in it."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import uuid
from typing import Any

import httpx
import pytest
from minio import Minio
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from deploy import compose
from deploy.catalog import S3_KEYS, TEMPORAL_SECRETS, TEMPORAL_TLS_SETTINGS
from deploy.services import SERVICES, unused_middleware, worker_contract, worker_name
from services.shared import realtime_token
from services.shared.discovery import discover, parse_blacklist

from .conftest import RESULTS_BUCKET, ComposeStack

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

# POST a JSON body from inside a container; prints the HTTP status (the app image has no curl).
POST = """
import sys, urllib.request, urllib.error
request = urllib.request.Request(sys.argv[1], data=sys.argv[3].encode(), method="POST", headers={
    "Authorization": "Bearer " + sys.argv[2], "Content-Type": "application/json"})
try:
    print(urllib.request.urlopen(request, timeout=10).status)
except urllib.error.HTTPError as error:
    print(error.code)
"""
OTHERS = {
    "minio": {"MINIO_ROOT_USER_FILE", "MINIO_ROOT_PASSWORD_FILE"},
    "create-bucket": {"S3_ENDPOINT", "S3_BUCKET", "S3_SECURE", *(f"{key}_FILE" for key in S3_KEYS)},
    "secrets": {"API_KEYS", "SECRETS_STORE"},
    "temporal": {"PATH"},
    # Its users come from the file the secrets service writes (-c /run/secrets/nats_auth), nothing from the environment.
    "nats": set(),
    # Its configuration is a compose config (a file), nothing from the environment.
    "front-door": set(),
    "postgres": {"POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD_FILE"},
}
# From inside the communication container: what its NATS user may do (prints one line per attempt).
NATS_PROBE = """
import asyncio, sys
import nats

async def attempt(user, password, publish):
    try:
        client = await nats.connect(sys.argv[1], user=user, password=password, allow_reconnect=False,
                                    connect_timeout=5, max_reconnect_attempts=0)
    except Exception as error:
        return "refused: " + type(error).__name__
    try:
        js = client.jetstream(timeout=3)
        await js.stream_info("TASK_EVENTS")
        if not publish:
            return "read"
        await js.publish("tasks.events.dev", b'{"forged": true}')
        return "published"
    except Exception as error:
        return "not published: " + type(error).__name__
    finally:
        await client.close()

async def main():
    own = open("/run/secrets/nats_communication_password").read().strip()
    for user, password, publish in ((None, None, False), ("main", own, False), ("communication", own, False),
                                    ("communication", own, True)):
        print(await attempt(user, password, publish))

asyncio.run(main())
"""


def inside(stack: ComposeStack, service: str, url: str, token: str, body: str = '{"status": "running"}') -> int:
    """The status a POST from ``service``'s container gets."""
    return int(stack.run("exec", "-T", service, "python", "-c", POST, url, token, body).stdout.strip())


def inspected(stack: ComposeStack) -> dict[str, dict[str, Any]]:
    ids = stack.run("ps", "--all", "--quiet").stdout.split()
    done = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True, timeout=60)
    return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in json.loads(done.stdout)}


def image_variables(image: str) -> set[str]:
    done = subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True, check=True, timeout=60)
    return {item.split("=", 1)[0] for item in json.loads(done.stdout)[0]["Config"]["Env"] or []}


def contract_variables(service: str) -> set[str]:
    if service in OTHERS:
        return OTHERS[service]
    integrations = {worker_name(i): i for i in discover(blacklist=parse_blacklist(None)).integrations}
    contract = worker_contract(integrations[service]) if service in integrations else SERVICES[service].contract
    # A middleware compose does not run and nobody expects elsewhere gives no secret.
    running = compose.middleware()
    unused = {name for m in unused_middleware(running) for name in m.compose_secrets()}
    # Temporal's dev server, run by compose, is reached in plain gRPC: no TLS setting or API key is passed.
    if any(m.name == "temporal" for m in running):
        unused |= {*TEMPORAL_TLS_SETTINGS, *TEMPORAL_SECRETS}
    settings = {name for name in contract.settings if name not in unused}
    return {*settings, *(f"{name}_FILE" for name in contract.secrets if name not in unused)}


def test_each_container_holds_exactly_its_contract(compose_stack: ComposeStack) -> None:
    containers = inspected(compose_stack)
    assert set(containers) == set(compose_stack.services())
    secret_values = [
        compose_stack.secret(name)
        for name in (
            "REALTIME_SECRET",
            "REPORT_TOKEN",
            "NATS_MAIN_PASSWORD",
            "CALLBACK_KEY",
            "S3_ACCESS_KEY",
            "S3_SECRET_KEY",
        )
    ]
    secret_values.append(compose_stack.secret("NATS_COMMUNICATION_PASSWORD", service="communication"))
    dev_key = compose_stack.secret("API_KEYS").split(",")[0].split(":")[0]
    for service, container in containers.items():
        env = dict(item.split("=", 1) for item in container["Config"]["Env"])
        from_image = image_variables(container["Image"])
        expected = contract_variables(service)
        assert set(env) - from_image == expected - from_image, service
        assert expected <= set(env), service
        for value in env.values():
            assert not any(secret in value for secret in (*secret_values, dev_key)), service
    worker_envs = {s: set(c["Config"]["Env"]) for s, c in containers.items() if s.startswith("worker-")}
    assert not any(v.startswith(("GEMINI_", "ARK_")) for v in worker_envs["worker-echo"])
    assert not any(v.startswith("ARK_") for v in worker_envs["worker-nanobanana2-image"])
    communication = {item.split("=", 1)[0] for item in containers["communication"]["Config"]["Env"]}
    assert not {v for v in communication if v.startswith(("S3_", "GEMINI_", "ARK_", "REPORT_", "API_KEYS"))}


def test_the_internal_listeners_are_not_reachable_from_the_host(compose_stack: ComposeStack) -> None:
    containers = inspected(compose_stack)
    # main and communication publish nothing: the front door is the way in, and it has no route to 8010 or 8011.
    for service, internal in (("main", 8010), ("communication", 8011)):
        ports = containers[service]["NetworkSettings"]["Ports"] or {}
        assert not any(hosts for hosts in ports.values()), (service, ports)
        assert compose_stack.run("port", service, str(internal), check=False).returncode != 0
    for service, container in containers.items():
        bound = {port for port, hosts in (container["NetworkSettings"]["Ports"] or {}).items() if hosts}
        assert not bound & {"8010/tcp", "8011/tcp", "8002/tcp", "4222/tcp", "5432/tcp"}, service


async def test_the_secrets_that_shipped_as_defaults_open_nothing(compose_stack: ComposeStack) -> None:
    dev = {"Authorization": "Bearer dev-api-key"}
    async with httpx.AsyncClient(base_url=compose_stack.main_url, timeout=30) as http:
        # Every route of main's public API, from its own schema.
        schema = (await http.get("/docs/openapi.json")).json()
        for path, operations in schema["paths"].items():
            concrete = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
            for method in operations:
                if path in ("/healthz", "/readyz"):
                    continue
                response = await http.request(method, concrete, headers=dev, json={})
                assert response.status_code == 401, (method, path, response.text)
        # The report API is not behind the front door, with the old shared token or any other.
        for token in ("dev-internal-token", compose_stack.secret("REPORT_TOKEN")):
            report = await http.post(
                f"/internal/tasks/{uuid.uuid4()}/report",
                json={"status": "running"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert report.status_code == 404, report.text
    # Inside the stack's network the report API answers, and wants the workers' token.
    report_url = f"http://main:8010/internal/tasks/{uuid.uuid4()}/report"
    report_token, nats_password = compose_stack.secret("REPORT_TOKEN"), compose_stack.secret("NATS_MAIN_PASSWORD")
    assert await asyncio.to_thread(inside, compose_stack, "worker-echo", report_url, "dev-internal-token") == 401
    assert await asyncio.to_thread(inside, compose_stack, "worker-echo", report_url, nats_password) == 401
    assert await asyncio.to_thread(inside, compose_stack, "worker-echo", report_url, report_token) == 404
    # Events reach communication only through NATS: no publish route on either of its listeners.
    forged = json.dumps({"channel": "user:dev", "event": {"forged": True}})
    for url in ("http://communication:8011/internal/publish", "http://communication:8001/internal/publish"):
        assert await asyncio.to_thread(inside, compose_stack, "main", url, "dev-internal-token", forged) == 404
    # NATS wants a user; communication's may read the stream but not publish an event.
    probe = await asyncio.to_thread(
        compose_stack.run, "exec", "-T", "communication", "python", "-c", NATS_PROBE, "nats://nats:4222"
    )
    anonymous, as_main, reads, publishes = probe.stdout.splitlines()[-4:]
    assert anonymous.startswith("refused") and as_main.startswith("refused"), probe.stdout
    assert (reads, publishes) == ("read", "not published: TimeoutError"), probe.stdout

    # A websocket token signed with the old default secret.
    token, _ = realtime_token.issue("dev-realtime-secret", "dev", ttl_seconds=60)
    async with connect(f"{compose_stack.websocket_url}?token={token}") as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4401, "invalid token signature")

    # MinIO's documented root credentials.
    minio = Minio(compose_stack.s3_endpoint, "minioadmin", "minioadmin", secure=False)
    with pytest.raises(Exception, match=r"InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied"):
        await asyncio.to_thread(minio.bucket_exists, RESULTS_BUCKET)


async def test_the_first_api_key_is_one_command_away(compose_stack: ComposeStack) -> None:
    printed = compose_stack.run(
        "run", "--rm", "--no-deps", "-T", "secrets", "python", "-m", "deploy.credentials", "api-key"
    )
    key = printed.stdout.strip().splitlines()[-1]
    assert len(key) >= 32
    async with httpx.AsyncClient(base_url=compose_stack.main_url, headers={"Authorization": f"Bearer {key}"}) as http:
        assert (await http.get("/api/tasks")).status_code == 200

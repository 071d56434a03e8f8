"""The compose stack scaled out: `docker compose up --scale main=2 --scale communication=2 --scale worker-echo=2`
runs two of each behind the one front door. Every request, websocket and presigned download of a client goes
through the front door; tasks created and run across the replicas reach every socket of their user once each, in
version order; a main replica and a communication replica stopped mid-run cost the clients nothing. Scaled back to
one of each at the end, as the other tests expect the stack."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.faults.harness import EventLog, every_event_once
from tests.stack import Api, wait_for

from .conftest import ComposeStack

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

REPLICATED = ("main", "communication", "worker-echo")
SCALED = [arg for name in REPLICATED for arg in ("--scale", f"{name}=2")]
SINGLE = [arg for name in REPLICATED for arg in ("--scale", f"{name}=1")]


def containers(stack: ComposeStack) -> dict[str, list[dict[str, Any]]]:
    """Running containers by compose service, with their `docker inspect` record."""
    ids = stack.run("ps", "--quiet").stdout.split()
    inspected = json.loads(
        subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True, timeout=60).stdout
    )
    found: dict[str, list[dict[str, Any]]] = {}
    for container in inspected:
        found.setdefault(container["Config"]["Labels"]["com.docker.compose.service"], []).append(container)
    return found


def stop_one(stack: ComposeStack, service: str) -> None:
    """Stops the replica compose removes first when it scales down (the highest number)."""
    replicas = sorted(c["Name"].lstrip("/") for c in containers(stack)[service])
    subprocess.run(["docker", "stop", "--time", "10", replicas[-1]], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def scaled(compose_stack: ComposeStack) -> Iterator[ComposeStack]:
    compose_stack.run("up", "--detach", "--wait", "--no-recreate", *SCALED, timeout=600)
    try:
        yield compose_stack
    finally:
        compose_stack.run("up", "--detach", "--wait", *SINGLE, timeout=600)


def test_two_of_each_run_behind_the_one_front_door(scaled: ComposeStack) -> None:
    running = containers(scaled)
    for service in REPLICATED:
        assert len(running[service]) == 2, service
        assert all(c["State"]["Health"]["Status"] == "healthy" for c in running[service]), service
    published = {
        service: {port for c in found for port, hosts in (c["NetworkSettings"]["Ports"] or {}).items() if hosts}
        for service, found in running.items()
    }
    # Temporal's 7233 is the tests' own override (temporal-port.yaml).
    assert {s: ports for s, ports in published.items() if ports} == {
        "front-door": {"8000/tcp"},
        "temporal": {"7233/tcp", "8233/tcp"},
        "minio": {"9000/tcp", "9001/tcp"},
    }


async def test_tasks_across_the_replicas_reach_every_socket_once_through_the_front_door(scaled: ComposeStack) -> None:
    alice = Api(scaled.main_url, "alice")
    logs = [EventLog(Api(scaled.main_url, "alice")) for _ in range(4)]
    try:
        token = (await alice.http.post("/api/realtime/token")).json()
        assert token["url"] == scaled.websocket_url
        for log in logs:
            await log.start()
        created = await asyncio.gather(
            *(alice.create("echo", {"message": f"scaled {i}", "delay_seconds": 0.2}) for i in range(12))
        )
        assert all(c.status_code == 202 for c in created), [c.text for c in created]
        finals = [await alice.wait_status(c.json()["id"], {"succeeded"}, timeout=120) for c in created]

        async def everywhere() -> bool:
            return all(log.versions(t["id"])[-1:] == [t["version"]] for log in logs for t in finals)

        await wait_for(everywhere, 60, "every socket to receive every task's last event", interval=0.1)
        problems = [p for log in logs for t in finals if (p := every_event_once(log, t["id"], t["version"]))]
        assert not problems, "\n".join(problems)
        # The results download through the front door too.
        async with httpx.AsyncClient(timeout=30) as anonymous:
            for task in finals[:3]:
                url = task["output"]["objects"]["text"]["url"]
                assert urlsplit(url).netloc == f"localhost:{scaled.ports['main']}", url
                download = await anonymous.get(url)
                assert download.status_code == 200, download.text
                assert download.text.startswith("scaled "), download.text
    finally:
        for log in logs:
            await log.close()
            await log.api.close()
        await alice.close()


async def test_a_stopped_main_and_a_stopped_communication_cost_the_clients_nothing(scaled: ComposeStack) -> None:
    alice = Api(scaled.main_url, "alice")
    logs = [EventLog(Api(scaled.main_url, "alice")) for _ in range(4)]
    try:
        for log in logs:
            await log.start()
        first = [await alice.create("echo", {"message": f"before {i}", "delay_seconds": 1}) for i in range(4)]
        # Scaling back down at the end removes these two.
        await asyncio.to_thread(stop_one, scaled, "communication")
        await asyncio.to_thread(stop_one, scaled, "main")
        # Right after: the front door takes every request to the replicas still up.
        later = [await alice.create("echo", {"message": f"after {i}", "delay_seconds": 0.2}) for i in range(8)]
        assert all(c.status_code == 202 for c in [*first, *later]), [c.text for c in [*first, *later]]
        finals = [await alice.wait_status(c.json()["id"], {"succeeded"}, timeout=120) for c in [*first, *later]]

        async def everywhere() -> bool:
            return all(log.versions(t["id"])[-1:] == [t["version"]] for log in logs for t in finals)

        await wait_for(everywhere, 90, "every socket to receive every task's last event", interval=0.1)
        problems = [p for log in logs for t in finals if (p := every_event_once(log, t["id"], t["version"]))]
        assert not problems, "\n".join(problems)
        # The sockets of the stopped communication resumed on the other one with since: nothing had to be re-read.
        assert all(log.resyncs == 0 for log in logs)
        assert sum(log.connections for log in logs) > len(logs)
    finally:
        for log in logs:
            await log.close()
            await log.api.close()
        await alice.close()

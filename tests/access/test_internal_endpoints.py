"""Every internal endpoint, found in the apps' own route tables (so a new one is covered the day it is added), exists
only on its service's internal listener, and there refuses callers without its trust edge's token (the workers'
report token for main) with a structured 401; on the public listener it does not exist (404), whatever the
credential. A refused report changes nothing. communication has no internal endpoint, only its counters: events
reach it only through the event stream."""

from __future__ import annotations

import asyncio
import re
import uuid

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from deploy.local import LocalStack
from services.communication.app import create_app as create_communication
from services.communication.settings import CommunicationSettings
from services.main.app import create_app as create_main
from services.main.settings import MainSettings
from services.shared.event_stream import PUBLISHER
from tests.stack import USERS, Api, Launcher

pytestmark = pytest.mark.integration

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def internal_routes(paths_and_methods: list[tuple[str, set[str]]]) -> list[tuple[str, str]]:
    """(method, concrete path) of every route under /internal, path parameters filled in."""
    found = []
    for path, methods in paths_and_methods:
        if path.startswith("/internal"):
            concrete = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
            found += [(method, concrete) for method in sorted(methods & METHODS)]
    return found


def main_internal_routes(stack: LocalStack) -> list[tuple[str, str]]:
    app = create_main(MainSettings.from_env(stack.service_env()))
    return internal_routes([(route.path, set(route.methods)) for route in app.routes if hasattr(route, "methods")])


def communication_internal_routes(stack: LocalStack) -> list[tuple[str, str]]:
    app = create_communication(CommunicationSettings.from_env(stack.service_env()))
    return internal_routes([(route.path, set(route.methods)) for route in app.routes if hasattr(route, "methods")])


def wrong_credentials(stack: LocalStack, token: str, other: str) -> dict[str, httpx.Headers]:
    """Everything but ``token``: ``other`` is the credential of another trust edge."""
    cases = {
        "none": {},
        "another edge's credential": {"Authorization": f"Bearer {other}"},
        "another edge's credential as the header": {"X-Internal-Token": other},
        "wrong bearer": {"Authorization": "Bearer wrong"},
        "wrong header": {"X-Internal-Token": "wrong"},
        "a user's API key": {"Authorization": f"Bearer {USERS['alice']}"},
        "a user's API key as the header": {"X-Internal-Token": USERS["alice"]},
        "the token with another scheme": {"Authorization": f"Basic {token}"},
        "a prefix of the token": {"Authorization": f"Bearer {token[:-1]}"},
        "the token and more": {"X-Internal-Token": f"{token}x"},
        "a scheme without a token": {"Authorization": "Bearer"},
        "not ASCII": {"X-Internal-Token": "wr\u00f6ng"},
        "not ASCII, as bearer": {"Authorization": "Bearer wr\u00f6ng"},
    }
    # Sent as UTF-8, as some clients do (HTTP itself only promises ASCII).
    return {what: httpx.Headers(headers, encoding="utf-8") for what, headers in cases.items()}


async def test_the_route_tables_have_internal_routes(stack: LocalStack) -> None:
    assert ("POST", "/internal/tasks/{task_id}/report") in {
        (m, re.sub(r"/tasks/[^/]+/", "/tasks/{task_id}/", p)) for m, p in main_internal_routes(stack)
    }
    assert communication_internal_routes(stack) == []


async def test_every_internal_route_of_main_needs_the_report_token(stack: LocalStack) -> None:
    routes = main_internal_routes(stack)
    secrets = stack.secrets
    async with httpx.AsyncClient(base_url=stack.main_internal_url) as http:
        for method, path in routes:
            for what, headers in wrong_credentials(
                stack, secrets.report_token, secrets.nats_password(PUBLISHER)
            ).items():
                response = await http.request(method, path, json={"status": "running"}, headers=headers)
                assert response.status_code == 401, (method, path, what, response.text)
                body = response.json()
                assert (body["code"], body["retryable"]) == ("unauthorized", False), (what, body)
                assert "internal token" in body["message"], (what, body)
            # With the token the guard lets the request through (here: to a task that does not exist).
            ok = await http.request(
                method, path, json={"status": "running"}, headers={"X-Internal-Token": secrets.report_token}
            )
            assert ok.status_code == 404, (method, path, ok.text)
            assert ok.json()["message"].startswith("task "), ok.text


async def test_internal_routes_do_not_exist_on_the_public_listeners(stack: LocalStack) -> None:
    secrets = stack.secrets
    not_found = {"code": "not_found", "message": "Not Found", "retryable": False}
    cases = [(stack.main_url, method, path, secrets.report_token) for method, path in main_internal_routes(stack)]
    async with httpx.AsyncClient() as http:
        for base, method, path, token in cases:
            for variant in (path, path.replace("/internal", "//internal", 1), path + "/"):
                response = await http.request(
                    method, base + variant, json={}, headers={"Authorization": f"Bearer {token}"}
                )
                assert (response.status_code, response.json()) == (404, not_found), (base, method, variant)
        # communication's counters are for the stack's own network only, too.
        assert (await http.get(f"{stack.communication_url}/metrics")).status_code == 404
        assert (await http.get(f"{stack.communication_internal_url}/metrics")).status_code == 200


async def test_public_routes_do_not_exist_on_the_internal_listeners(stack: LocalStack, alice: Api) -> None:
    headers = {"Authorization": f"Bearer {USERS['alice']}"}
    async with httpx.AsyncClient(headers=headers) as http:
        for path in ("/api/tasks", "/healthz", "/docs/openapi.json", "/console"):
            assert (await http.get(f"{stack.main_internal_url}{path}")).status_code == 404, path
            assert (await http.get(f"{stack.main_url}{path}")).status_code == 200, path
        assert (await http.get(f"{stack.communication_internal_url}/healthz")).status_code == 404
    # The websocket is served on the public listener only.
    token = (await alice.http.post("/api/realtime/token")).json()["token"]
    internal_ws = stack.communication_internal_url.replace("http", "ws", 1) + f"/ws?token={token}"
    with pytest.raises((InvalidStatus, ConnectionClosed)):
        async with connect(internal_ws) as ws:
            await asyncio.wait_for(ws.recv(), 10)


async def test_refused_reports_change_nothing(stack: LocalStack, echo_worker: Launcher, alice: Api) -> None:
    events = await alice.socket()
    task = (await alice.create("echo", {"message": "not yours to finish", "delay_seconds": 3})).json()
    await events.until(task["id"], "running")
    forged_report = {"status": "failed", "error": {"code": "forged", "message": "forged"}}
    secrets = stack.secrets
    async with httpx.AsyncClient() as http:
        for headers in wrong_credentials(stack, secrets.report_token, secrets.nats_password(PUBLISHER)).values():
            report = await http.post(
                f"{stack.main_internal_url}/internal/tasks/{task['id']}/report", json=forged_report, headers=headers
            )
            assert report.status_code == 401
        # The right credential on the public listener reaches nothing either.
        report = await http.post(
            f"{stack.main_url}/internal/tasks/{task['id']}/report",
            json=forged_report,
            headers={"Authorization": f"Bearer {secrets.report_token}"},
        )
        assert report.status_code == 404
    # The task's next event on alice's socket is its own success: nothing forged was stored or delivered. (Events
    # of alice's other tasks, from tests run earlier, may come in between.)
    following = await events.next(timeout=60)
    while following.get("task_id") != task["id"]:
        following = await events.next(timeout=60)
    assert following["status"] == "succeeded", following
    assert (await alice.task(task["id"]))["status"] == "succeeded"
    await events.close()

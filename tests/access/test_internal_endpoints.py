"""Every internal endpoint, found in the apps' own route tables (so a new one is covered the day it is added), refuses
callers without the internal token with a structured 401; a refused report changes nothing. communication has no
internal endpoint: events reach it only through the event stream."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from deploy.local import LocalStack
from services.communication.app import create_app as create_communication
from services.communication.settings import CommunicationSettings
from services.main.app import create_app as create_main
from services.main.settings import MainSettings
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


def wrong_credentials(stack: LocalStack) -> dict[str, httpx.Headers]:
    token = stack.secrets.internal_token
    cases = {
        "none": {},
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


async def test_every_internal_route_of_main_needs_the_internal_token(stack: LocalStack) -> None:
    routes = main_internal_routes(stack)
    async with httpx.AsyncClient(base_url=stack.main_url) as http:
        for method, path in routes:
            for what, headers in wrong_credentials(stack).items():
                response = await http.request(method, path, json={"status": "running"}, headers=headers)
                assert response.status_code == 401, (method, path, what, response.text)
                body = response.json()
                assert (body["code"], body["retryable"]) == ("unauthorized", False), (what, body)
                assert "internal token" in body["message"], (what, body)
            # With the token the guard lets the request through (here: to a task that does not exist).
            ok = await http.request(
                method, path, json={"status": "running"}, headers={"X-Internal-Token": stack.secrets.internal_token}
            )
            assert ok.status_code == 404, (method, path, ok.text)


async def test_refused_reports_change_nothing(stack: LocalStack, echo_worker: Launcher, alice: Api) -> None:
    events = await alice.socket()
    task = (await alice.create("echo", {"message": "not yours to finish", "delay_seconds": 3})).json()
    await events.until(task["id"], "running")
    forged_report = {"status": "failed", "error": {"code": "forged", "message": "forged"}}
    async with httpx.AsyncClient() as http:
        for headers in wrong_credentials(stack).values():
            report = await http.post(
                f"{stack.main_url}/internal/tasks/{task['id']}/report", json=forged_report, headers=headers
            )
            assert report.status_code == 401
    # The task's next event on alice's socket is its own success: nothing forged was stored or delivered. (Events
    # of alice's other tasks, from tests run earlier, may come in between.)
    following = await events.next(timeout=60)
    while following.get("task_id") != task["id"]:
        following = await events.next(timeout=60)
    assert following["status"] == "succeeded", following
    assert (await alice.task(task["id"]))["status"] == "succeeded"
    await events.close()

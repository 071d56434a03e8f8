"""``GET /api/integrations``: what main mounts, as the manifests declare it; and every manifest's console hints name
fields that its create route really takes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from deploy.local import LocalStack
from services.main.app import create_app
from services.main.settings import MainSettings
from services.shared.discovery import discover
from tests.stack import Api


def openapi(blacklist: tuple[str, ...]) -> dict[str, Any]:
    settings = MainSettings.from_env(
        {
            "DEVELOPMENT_MODE": "true",
            "API_KEYS": "k:alice",
            "REPORT_TOKEN": "r",
            "NATS_MAIN_PASSWORD": "n",
            "CALLBACK_KEY": "c",
            "REALTIME_SECRET": "s",
            "S3_ACCESS_KEY": "a",
            "S3_SECRET_KEY": "s",
        }
    )
    doc: dict[str, Any] = create_app(settings, discover(blacklist=blacklist)).openapi_schema.to_schema()
    return doc


def test_console_hints_name_fields_of_the_create_request() -> None:
    doc = openapi(blacklist=())
    schemas = doc["components"]["schemas"]
    integrations = discover(blacklist=()).integrations
    assert [i for i in integrations if i.manifest.console is not None], "no integration declares console hints"
    for integration in integrations:
        hints = integration.manifest.console
        if hints is None:
            continue
        body = doc["paths"][f"/api/integrations/{integration.name}/tasks"]["post"]["requestBody"]
        ref = body["content"]["application/json"]["schema"]["$ref"]
        properties = schemas[ref.rsplit("/", 1)[1]]["properties"]
        unknown = [f.name for f in hints.fields if f.name not in properties]
        assert unknown == [], f"{integration.name}: console hints name fields its request lacks: {unknown}"


def test_the_endpoint_is_in_the_openapi_document() -> None:
    operation = openapi(blacklist=())["paths"]["/api/integrations"]["get"]
    assert operation["operationId"] == "list_integrations"
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("IntegrationList")


@pytest.mark.integration
async def test_main_lists_the_integrations_it_mounts(stack: LocalStack, alice: Api) -> None:
    async with httpx.AsyncClient(base_url=stack.main_url) as anonymous:
        refused = await anonymous.get("/api/integrations")
    assert refused.status_code == 401
    assert refused.json()["code"] == "unauthorized"

    response = await alice.http.get("/api/integrations")
    assert response.status_code == 200
    items = {item["name"]: item for item in response.json()["items"]}
    assert set(items) == {i.name for i in discover().integrations}
    assert "example" not in items
    video = items["fangzhouVideoGeneration"]
    assert video["pattern"] == "submit-poll"
    assert video["description"].startswith("Volcengine Ark")
    assert video["console"]["label"] == "Video"
    assert video["console"]["fields"][0] == {
        "name": "prompt",
        "label": None,
        "widget": "textarea",
        "example": "waves rolling onto a beach at sunset",
    }
    assert items["nanobanana2-image"]["pattern"] == "sync-call"

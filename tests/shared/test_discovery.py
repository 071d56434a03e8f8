from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deploy.ports import free_port
from services.shared.discovery import (
    DEFAULT_BLACKLIST,
    DiscoveryError,
    IntegrationImportError,
    discover,
    parse_blacklist,
)
from services.simulator.providers import stand_ins as simulator_stand_ins
from tests.broken_examples import BROKEN_EXAMPLES, add_broken_examples, copy_with_broken_examples
from tests.stack import Launcher


def make_integration(root: Path, folder: str, name: str | None = None, queue: str | None = None) -> Path:
    path = root / folder
    (path / "workflows").mkdir(parents=True)
    (path / "__init__.py").write_text("")
    (path / "workflows" / "__init__.py").write_text("")
    (path / "workflows" / "worker.py").write_text("def worker_spec(ctx):\n    raise NotImplementedError\n")
    (path / "api.py").write_text("")
    manifest = {
        "name": name or folder.replace("_", "-"),
        "task_queue": queue or folder,
        "description": f"{folder} integration",
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    # A unique package name so each test's integrations import independently.
    package = tmp_path / f"integrations_{uuid.uuid4().hex[:8]}"
    package.mkdir()
    (package / "__init__.py").write_text("")
    sys.path.insert(0, str(tmp_path))
    yield package
    sys.path.remove(str(tmp_path))


def test_repository_integrations_default_blacklist_excludes_examples() -> None:
    found = discover()
    names = {i.name for i in found.integrations}
    assert "echo" in names
    assert "example" not in names
    assert any(e.folder == "example" and "example*" in e.reason for e in found.excluded)


def test_blacklist_parsing() -> None:
    assert parse_blacklist(None) == DEFAULT_BLACKLIST
    assert parse_blacklist("") == ()
    assert parse_blacklist(" a , b* ") == ("a", "b*")


def test_blacklist_matches_folder_or_manifest_name(root: Path) -> None:
    make_integration(root, "alpha", name="alpha-image")
    make_integration(root, "beta")
    make_integration(root, "example_two")
    found = discover(root, blacklist=("alpha-*", "example*"))
    assert [i.name for i in found.integrations] == ["beta"]
    assert {e.folder for e in found.excluded} == {"alpha", "example_two"}
    everything = discover(root, blacklist=())
    assert {i.name for i in everything.integrations} == {"alpha-image", "beta", "example-two"}


def test_blacklist_matches_without_regard_to_case(root: Path) -> None:
    make_integration(root, "alpha", name="AlphaImage")
    make_integration(root, "Beta_two", name="beta-two")
    found = discover(root, blacklist=("alphaimage", "BETA_*"))
    assert found.integrations == []
    assert {(e.folder, e.name) for e in found.excluded} == {("alpha", "AlphaImage"), ("Beta_two", "beta-two")}


def test_blacklisted_folders_are_excluded_before_they_are_validated(root: Path) -> None:
    make_integration(root, "good")
    add_broken_examples(root)
    found = discover(root)
    assert [i.name for i in found.integrations] == ["good"]
    assert sorted((e.folder, e.name) for e in found.excluded) == [
        ("Example-Copy", None),
        ("example_draft", None),
        ("sketch", "exampleSketch"),
    ]
    assert all("blacklisted by pattern 'example*'" in e.reason for e in found.excluded)
    # Served, the same folders are problems, each reported.
    with pytest.raises(DiscoveryError) as raised:
        discover(root, blacklist=())
    assert len(raised.value.problems) == len(BROKEN_EXAMPLES)


@pytest.fixture(scope="module")
def broken_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_with_broken_examples(tmp_path_factory.mktemp("broken-examples"))


async def test_broken_examples_do_not_break_main(broken_copy: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "MAIN_PORT": str(port),
        "MAIN_INTERNAL_PORT": str(free_port()),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'main.db'}",
        "DEVELOPMENT_MODE": "true",
        "API_KEYS": "discovery-key:alice",
        "REPORT_TOKEN": "discovery-report-token",
        "NATS_MAIN_PASSWORD": "discovery-nats-password",
        "CALLBACK_KEY": "discovery-callback-key",
        "REALTIME_SECRET": "discovery-realtime-secret",
        "S3_ACCESS_KEY": "discovery",
        "S3_SECRET_KEY": "discovery-secret",
    }
    main = Launcher(env, [], tmp_path / "main.log", module="services.main", cwd=broken_copy)
    url = f"http://127.0.0.1:{port}"
    try:
        await main.wait_answering(f"{url}/healthz")
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            paths = (await http.get("/docs/openapi.json")).json()["paths"]
        assert "/api/integrations/echo/tasks" in paths
        assert not [p for p in paths if "example" in p.lower()]
    finally:
        main.kill()


def test_broken_examples_do_not_break_the_deploy_tool(broken_copy: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "deploy", "render", "--check"],
        cwd=broken_copy,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_disabled_manifest_is_excluded_with_its_reason(root: Path) -> None:
    path = make_integration(root, "gamma")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["disabled_reason"] = "provider retired"
    (path / "manifest.json").write_text(json.dumps(manifest))
    found = discover(root)
    assert found.integrations == []
    assert "provider retired" in found.excluded[0].reason


def test_broken_layouts_are_all_reported_by_name(root: Path) -> None:
    make_integration(root, "good")
    (root / "no_manifest").mkdir()
    bad_json = make_integration(root, "bad_json")
    (bad_json / "manifest.json").write_text("{nope")
    bad_field = make_integration(root, "bad_field")
    (bad_field / "manifest.json").write_text(json.dumps({"name": "x y", "task_queue": "q", "description": "d"}))
    no_worker = make_integration(root, "no_worker")
    (no_worker / "workflows" / "worker.py").unlink()
    (root / "not-an-identifier").mkdir()
    with pytest.raises(DiscoveryError) as raised:
        discover(root)
    text = str(raised.value)
    assert "no_manifest" in text and "manifest.json is missing" in text
    assert "bad_json" in text and "not valid JSON" in text
    assert "bad_field" in text and "name" in text
    assert "no_worker" in text and "worker.py is missing" in text
    assert "not-an-identifier" in text
    assert len(raised.value.problems) == 5


PROVIDER = {"api_key_env": "ACME_API_KEY", "base_url_env": "ACME_BASE_URL", "base_url": "https://api.acme.example"}


@pytest.mark.parametrize(
    ("section", "value", "problem"),
    [
        ("console", {"fields": []}, "label"),
        ("console", {"label": "X", "fields": [{"name": "prompt", "widget": "slider"}]}, "widget"),
        ("console", {"label": "X", "fields": [{"name": "Prompt"}]}, "name"),
        ("console", {"label": "X", "fields": [{"name": "a"}, {"name": "a"}]}, "more than once: ['a']"),
        ("console", {"label": "X", "colour": "red"}, "colour"),
        ("provider", {"base_url_env": "ACME_BASE_URL"}, "api_key_env"),
        ("provider", {**PROVIDER, "api_key_env": "acme_key"}, "api_key_env"),
        ("provider", {**PROVIDER, "base_url_env": "ACME_API_KEY"}, "must differ"),
        ("provider", {**PROVIDER, "base_url": "http://api.acme.example"}, "https"),
        ("provider", {**PROVIDER, "base_url": "https://api.acme.example/"}, "trailing slash"),
        ("provider", {**PROVIDER, "simulator": "Acme Sim"}, "simulator"),
        ("provider", {**PROVIDER, "key": "sk-1"}, "key"),
    ],
)
def test_console_hints_and_provider_declarations_are_validated(
    root: Path, section: str, value: dict[str, object], problem: str
) -> None:
    path = make_integration(root, "hinted")
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, section: value}))
    with pytest.raises(DiscoveryError) as raised:
        discover(root)
    assert "hinted" in str(raised.value) and section in str(raised.value) and problem in str(raised.value)


def test_each_declared_simulator_is_a_stand_in_of_the_simulator() -> None:
    declared = {i.name: i.manifest.provider for i in discover(blacklist=()).integrations}
    stand_ins = {s.name for s in simulator_stand_ins()}
    for name, provider in declared.items():
        if provider is not None and provider.simulator is not None:
            assert provider.simulator in stand_ins, name
    assert {p.simulator for p in declared.values() if p is not None} >= {"gemini", "ark"}


def test_duplicate_task_queues_and_names_are_errors(root: Path) -> None:
    make_integration(root, "one", queue="shared")
    make_integration(root, "two", queue="shared")
    make_integration(root, "three", name="same")
    make_integration(root, "four", name="same")
    with pytest.raises(DiscoveryError) as raised:
        discover(root)
    assert "task queue 'shared' is claimed by more than one integration: one, two" in str(raised.value)
    assert "name 'same' is claimed by more than one integration: four, three" in str(raised.value)


def test_import_failure_names_the_integration(root: Path) -> None:
    path = make_integration(root, "broken")
    (path / "workflows" / "worker.py").write_text("import does_not_exist_anywhere\n")
    integration = discover(root).get("broken")
    with pytest.raises(IntegrationImportError, match=r"integration 'broken': cannot import .*does_not_exist_anywhere"):
        integration.import_worker_module()


def test_unknown_integration_lists_the_served_ones(root: Path) -> None:
    make_integration(root, "one")
    with pytest.raises(KeyError, match="unknown integration 'two'; served integrations: one"):
        discover(root).get("two")

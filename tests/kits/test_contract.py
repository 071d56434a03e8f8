"""The integration contract on main's side: an integration's api.py imports main's kit and nothing else of main,
and loads no provider client, no activities, no HTTP client and no object storage."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from services.shared.discovery import discover
from tests.stack import REPO

# Every integration folder, the blacklisted example included.
INTEGRATIONS = discover(blacklist=()).integrations
FORBIDDEN = (
    "httpx",
    "minio",
    "sqlalchemy",
    "litestar",
    "services.shared.storage",
    "services.main.store",
    "services.main.service",
    "services.main.auth",
    "services.main.errors",
)


@pytest.mark.parametrize("package", [i.package for i in INTEGRATIONS])
def test_an_api_module_loads_only_the_kit(package: str) -> None:
    code = f"import json, sys, {package}.api\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout))
    assert "services.main.kit" in loaded
    assert sorted(m for m in loaded if m.split(".")[0] in FORBIDDEN or m in FORBIDDEN) == []
    assert {f"{package}.workflows.provider", f"{package}.workflows.activities"}.isdisjoint(loaded)

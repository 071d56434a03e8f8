"""What the scaffold generates really works: in a temporary copy of the repository, one integration per pattern
is scaffolded with ``python -m deploy scaffold``; their generated tests (time-skipping workflow tests, activity
tests, and the end-to-end test on the local stack) pass there, the code is lint- and type-clean, discovery finds
them and ``deploy render`` gives each its worker service."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from deploy import paths

pytestmark = pytest.mark.integration

# Not copied: the environment, history, run state, build output and caches.
SKIP = (".venv", ".git", ".deploy", "build", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis")
SKIP_ALSO = ("test-artifacts", "__pycache__", "node_modules")


@dataclass(frozen=True)
class Generated:
    name: str
    folder: str
    queue: str
    pattern: str
    argv: tuple[str, ...]

    @property
    def paths(self) -> list[str]:
        return [f"integrations/{self.folder}", f"tests/integrations/{self.folder}", f"tests/e2e/test_{self.folder}.py"]


GENERATED = (
    Generated("scaffold-image", "scaffold_image", "scaffold-image", "sync-call", ()),
    Generated(
        "scaffoldVideo",
        "scaffold_video",
        "scaffold-video-queue",
        "submit-poll",
        ("--queue", "scaffold-video-queue", "--description", "A scaffolded video integration."),
    ),
)


def run(copy: Path, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python argv`` in the copy, with this interpreter: ``-m`` puts the copy first on sys.path."""
    env = {k: v for k, v in os.environ.items() if k not in ("INTEGRATIONS_BLACKLIST", "PYTHONPATH")}
    return subprocess.run(
        [sys.executable, *argv], cwd=copy, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("scaffold") / "repo"
    shutil.copytree(paths.REPO_ROOT, target, ignore=shutil.ignore_patterns(*SKIP, *SKIP_ALSO), symlinks=True)
    # mypy's cache of the unchanged code keeps the type check of the new files short.
    if (paths.REPO_ROOT / ".mypy_cache").is_dir():
        shutil.copytree(paths.REPO_ROOT / ".mypy_cache", target / ".mypy_cache")
    for generated in GENERATED:
        done = run(target, "-m", "deploy", "scaffold", generated.name, "--pattern", generated.pattern, *generated.argv)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"created integrations/{generated.folder}/workflows/workflows.py" in done.stdout
    return target


def test_the_generated_code_is_lint_and_type_clean(copy: Path) -> None:
    files = [path for generated in GENERATED for path in generated.paths]
    for argv in (["ruff", "check"], ["ruff", "format", "--check"], ["mypy"]):
        done = run(copy, "-m", *argv, *files)
        assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stdout}{done.stderr}"


@pytest.mark.timeout(1800)
def test_the_generated_tests_pass(copy: Path) -> None:
    files = [path for generated in GENERATED for path in generated.paths[1:]]
    done = run(copy, "-m", "pytest", *files, "-q", "-rA", "-p", "no:cacheprovider", timeout=1700)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    # The short summary (-rA) names every test with its outcome: each generated module ran, and nothing skipped.
    outcomes: dict[str, set[str]] = {}
    for line in done.stdout.splitlines():
        outcome, _, test = line.partition(" ")
        if outcome in ("PASSED", "FAILED", "ERROR", "SKIPPED", "XFAIL", "XPASS"):
            outcomes.setdefault(test.split("::")[0], set()).add(outcome)
    for generated in GENERATED:
        for module in ("test_workflows", "test_activities"):
            results = outcomes.get(f"tests/integrations/{generated.folder}/{module}.py")
            assert results == {"PASSED"}, (generated.folder, module, results)
        assert outcomes.get(f"tests/e2e/test_{generated.folder}.py") == {"PASSED"}, (generated.folder, outcomes)


def test_discovery_finds_them(copy: Path) -> None:
    script = (
        "import json; from services.shared.discovery import discover; "
        "print(json.dumps({i.folder: [i.name, i.task_queue, i.manifest.pattern] for i in discover().integrations}))"
    )
    done = run(copy, "-c", script)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    for generated in GENERATED:
        assert found[generated.folder] == [generated.name, generated.queue, generated.pattern]
    manifest = json.loads((copy / "integrations/scaffold_video/manifest.json").read_text())
    assert manifest["description"] == "A scaffolded video integration."


def test_render_gives_each_its_worker(copy: Path) -> None:
    stale = run(copy, "-m", "deploy", "render", "--check")
    assert stale.returncode == 1, stale.stdout
    assert "+  worker-scaffold-image:" in stale.stdout and "+  worker-scaffold-video:" in stale.stdout
    assert run(copy, "-m", "deploy", "render").returncode == 0
    assert run(copy, "-m", "deploy", "render", "--check").returncode == 0
    services = yaml.safe_load((copy / "compose.yaml").read_text())["services"]
    for generated, worker in zip(GENERATED, ("worker-scaffold-image", "worker-scaffold-video"), strict=True):
        assert services[worker]["command"] == ["python", "-m", "services.async_task", generated.name]
        assert services[worker]["healthcheck"]["test"][-1] == generated.queue
        # Its provider's variables, from its manifest: nothing in deploy/ names them.
        prefix = generated.folder.upper()
        assert {f"{prefix}_API_KEY", f"{prefix}_BASE_URL"} <= set(services[worker]["environment"])


def test_scaffolding_again_overwrites_nothing(copy: Path) -> None:
    api = copy / "integrations/scaffold_image/api.py"
    before = api.read_text()
    done = run(copy, "-m", "deploy", "scaffold", "scaffold-image", "--pattern", "submit-poll")
    assert done.returncode == 2
    assert "integrations/scaffold_image already exists" in done.stderr
    assert api.read_text() == before

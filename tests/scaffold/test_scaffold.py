"""deploy-tool scaffold without running anything it creates: names, defaults, validation, the files it writes,
and that it never overwrites."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import paths, scaffold
from deploy.cli import main
from deploy.scaffold import Names, ScaffoldError, folder_for, names_for

EXPECTED = {
    "integrations/{f}/__init__.py",
    "integrations/{f}/manifest.json",
    "integrations/{f}/schemas.py",
    "integrations/{f}/api.py",
    "integrations/{f}/workflows/__init__.py",
    "integrations/{f}/workflows/workflows.py",
    "integrations/{f}/workflows/activities.py",
    "integrations/{f}/workflows/provider.py",
    "integrations/{f}/workflows/worker.py",
    "tests/integrations/{f}/__init__.py",
    "tests/integrations/{f}/fake_provider.py",
    "tests/integrations/{f}/test_workflows.py",
    "tests/integrations/{f}/test_activities.py",
    "tests/e2e/test_{f}.py",
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An empty repository layout with the project's lint settings."""
    (tmp_path / "integrations").mkdir()
    shutil.copyfile(paths.REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        ("fangzhouVideoGeneration", "fangzhou_video_generation"),
        ("nanobanana2-image", "nanobanana2_image"),
        ("ABCVideo", "abc_video"),
        ("acme--speech-", "acme_speech"),
        ("echo", "echo"),
    ],
)
def test_folder_defaults_to_snake_case_of_the_name(name: str, folder: str) -> None:
    assert folder_for(name) == folder


def test_defaults_and_derived_names() -> None:
    names = names_for("acmeVideo", "submit-poll")
    assert (names.folder, names.queue, names.pascal, names.env_prefix) == (
        "acme_video",
        "acmeVideo",
        "AcmeVideo",
        "ACME_VIDEO",
    )
    assert "acmeVideo" in names.description and "polls" in names.description
    explicit = names_for("acme-image", "sync-call", folder="acme", queue="acme.images", description="Acme images")
    assert (explicit.folder, explicit.queue, explicit.description) == ("acme", "acme.images", "Acme images")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("acme", "poll-only"), "unknown pattern"),
        (("1acme", "sync-call"), "invalid integration name"),
        (("acme_image", "sync-call"), "invalid integration name"),
        (("a" * 64, "sync-call"), "invalid integration name"),
        (("acme", "sync-call", "Acme"), "invalid folder"),
        (("acme", "sync-call", "acme-image"), "invalid folder"),
        (("import", "sync-call"), "invalid folder 'import'"),
        (("acme", "sync-call", None, "bad queue!"), "invalid task queue"),
        (("example-two", "sync-call"), "blacklist"),
        (("acme", "sync-call", "example_acme"), "blacklist"),
    ],
)
def test_invalid_names_are_refused_naming_the_problem(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(ScaffoldError, match=message):
        names_for(*args)


@pytest.mark.parametrize("pattern", scaffold.PATTERNS)
def test_render_wires_every_file_and_leaves_no_placeholder(pattern: str) -> None:
    names = names_for("acme-thing", pattern)
    files = scaffold.render(names)
    assert {p.as_posix() for p in files} == {path.format(f="acme_thing") for path in EXPECTED}
    for path, text in files.items():
        for placeholder in ("NEW_FOLDER", "NEW_NAME", "NEW_QUEUE", "NEW_ENV", "NewIntegration"):
            assert placeholder not in text, (path, placeholder)
    manifest = json.loads(files[Path("integrations/acme_thing/manifest.json")])
    assert manifest == {
        "name": "acme-thing",
        "task_queue": "acme-thing",
        "description": names.description,
        "pattern": pattern,
        # The platform's default deadlines, to be tuned.
        "deadline": {"default_seconds": 3600.0, "max_seconds": 7200.0},
        # Its variables; the provider's own base URL is the one the agent adds with the real contract.
        "provider": {"api_key_env": "ACME_THING_API_KEY", "base_url_env": "ACME_THING_BASE_URL"},
    }
    worker = files[Path("integrations/acme_thing/workflows/worker.py")]
    assert "class" not in worker and "AcmeThingWorkflow" in worker
    assert "ACME_THING_BASE_URL" in files[Path("integrations/acme_thing/workflows/provider.py")]


def test_scaffold_writes_the_files_then_refuses_to_overwrite_them(root: Path) -> None:
    names = names_for("acme-image", "sync-call")
    created = scaffold.scaffold(names, root)
    assert {p.relative_to(root).as_posix() for p in created} == {path.format(f="acme_image") for path in EXPECTED}
    api = root / "integrations/acme_image/api.py"
    api.write_text("# edited by hand\n")

    with pytest.raises(ScaffoldError, match="nothing was created") as caught:
        scaffold.scaffold(names, root)
    assert "name 'acme-image' is used by integrations/acme_image" in str(caught.value)
    assert "integrations/acme_image already exists" in str(caught.value)
    assert api.read_text() == "# edited by hand\n"

    # Another folder, but the name (or queue) already served elsewhere: refused before anything is written.
    with pytest.raises(ScaffoldError, match="task queue 'acme-image' is used by integrations/acme_image"):
        scaffold.scaffold(names_for("acme-image2", "submit-poll", queue="acme-image"), root)
    assert not (root / "integrations/acme_image2").exists()
    # A leftover test file of the same folder is not overwritten either.
    (root / "tests/e2e/test_acme_video.py").write_text("# mine\n")
    with pytest.raises(ScaffoldError, match=re.escape("tests/e2e/test_acme_video.py already exists")):
        scaffold.scaffold(names_for("acmeVideo", "submit-poll"), root)
    assert not (root / "integrations/acme_video").exists()


@pytest.mark.parametrize("pattern", scaffold.PATTERNS)
def test_the_longest_names_still_give_lint_clean_code(root: Path, pattern: str) -> None:
    name = "a" + "b" * 61 + "Z"
    created = scaffold.scaffold(names_for(name, pattern), root)
    files = [str(p) for p in created if p.suffix == ".py"]
    for argv in (["check"], ["format", "--check"]):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *argv, *files], cwd=root, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_command_line_refuses_a_bad_name_and_writes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted(p.name for p in (paths.REPO_ROOT / "integrations").iterdir())
    assert main(["scaffold", "bad_name", "--pattern", "sync-call"]) == 2
    assert "invalid integration name 'bad_name'" in capsys.readouterr().err
    assert main(["scaffold", "echo", "--pattern", "submit-poll"]) == 2
    assert "name 'echo' is used by integrations/echo" in capsys.readouterr().err
    assert sorted(p.name for p in (paths.REPO_ROOT / "integrations").iterdir()) == before


def test_every_placeholder_is_replaced() -> None:
    names: Names = names_for("acme", "sync-call")
    assert names.replace("NEW_FOLDER/NEW_NAME/NEW_QUEUE/NEW_ENV/NewIntegration") == "acme/acme/acme/ACME/Acme"
    tricky = names_for("acme", "sync-call", queue="NEW_ENV")
    assert tricky.replace("NEW_QUEUE NEW_ENV") == "NEW_ENV ACME"


def test_the_example_is_exactly_what_the_scaffold_generates() -> None:
    # integrations/example is generated output, like compose.yaml: users cannot take the name, maintainers
    # rewrite it with `python -m deploy.scaffold`.
    with pytest.raises(ScaffoldError, match="blacklist"):
        names_for("example", "sync-call")
    folder = paths.REPO_ROOT / "integrations" / "example"
    current = {
        p.relative_to(folder): p.read_text()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert current == scaffold.example_files(), "integrations/example is stale: run python -m deploy.scaffold"

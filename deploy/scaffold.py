"""``deploy-tool scaffold NAME --pattern sync-call|submit-poll``: a new integration, wired and tested.

Home Assistant style: copy a template, replace the names, create the test files, never overwrite anything.
The templates are in ``deploy/scaffold_templates/<pattern>/``, a tree that mirrors the repository
(``integrations/NEW_FOLDER/...``, ``tests/integrations/NEW_FOLDER/...``, ``tests/e2e/test_NEW_FOLDER.py``), with
``.tmpl`` added to every file name so linters and type checkers leave the placeholders alone. The generated code
is thin: the patterns themselves are the kits in ``services/shared/`` and main's ``services/main/kit.py``.

``integrations/example`` is generated too, like compose.yaml: it is exactly what the sync-call template gives for
the name ``example`` (the integration folder; its tests are the scaffold's own, run by tests/scaffold). Users may
not take the name (it is blacklisted, so never served); after changing the sync-call templates, maintainers
rewrite it with ``python -m deploy.scaffold``, and tests/scaffold fails while it is stale.
"""

from __future__ import annotations

import contextlib
import json
import keyword
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import msgspec

from services.shared.discovery import DEFAULT_BLACKLIST, blacklisted
from services.shared.manifest import NAME_PATTERN, QUEUE_PATTERN, Deadlines

from .errors import DeployError
from .paths import REPO_ROOT

PATTERNS = ("sync-call", "submit-poll")
TEMPLATES = Path(__file__).resolve().parent / "scaffold_templates"
SUFFIX = ".tmpl"
FOLDER_PATTERN = r"^[a-z][a-z0-9_]*$"
_PLACEHOLDERS = re.compile("NEW_FOLDER|NEW_NAME|NEW_QUEUE|NEW_ENV|NewIntegration")
DESCRIPTIONS = {
    "sync-call": "one slow provider call per task, run by a Temporal activity that stores the result",
    "submit-poll": "a workflow submits the provider job, polls it with backoff and stores the result",
}


class ScaffoldError(DeployError):
    """The name, folder or queue is invalid or taken, or a file to create already exists."""

    exit_code = 2


@dataclass(frozen=True)
class Names:
    name: str
    folder: str
    queue: str
    pattern: str
    description: str

    @property
    def pascal(self) -> str:
        """Class name prefix: ``acme_image`` -> ``AcmeImage``."""
        return "".join(part[:1].upper() + part[1:] for part in self.folder.split("_"))

    @property
    def env_prefix(self) -> str:
        """Prefix of the worker's provider settings: ``acme_image`` -> ``ACME_IMAGE`` (``ACME_IMAGE_BASE_URL``)."""
        return self.folder.upper()

    def provider(self) -> dict[str, str]:
        """The manifest's provider section: its variables. The provider's own ``base_url`` (and a ``simulator``
        stand-in, if one is written) are added when the real provider replaces the placeholder."""
        return {"api_key_env": f"{self.env_prefix}_API_KEY", "base_url_env": f"{self.env_prefix}_BASE_URL"}

    def replace(self, text: str) -> str:
        # One pass, so a value that happens to contain a placeholder (a queue named NEW_ENV) stays as given.
        values = {
            "NEW_FOLDER": self.folder,
            "NEW_NAME": self.name,
            "NEW_QUEUE": self.queue,
            "NEW_ENV": self.env_prefix,
            "NewIntegration": self.pascal,
        }
        return _PLACEHOLDERS.sub(lambda match: values[match.group(0)], text)


def folder_for(name: str) -> str:
    """snake_case of a manifest name: ``fangzhouVideoGeneration`` -> ``fangzhou_video_generation``,
    ``nanobanana2-image`` -> ``nanobanana2_image``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    return re.sub(r"_+", "_", spaced.replace("-", "_")).strip("_").lower()


def names_for(
    name: str,
    pattern: str,
    folder: str | None = None,
    queue: str | None = None,
    description: str | None = None,
) -> Names:
    """Validate the names (defaults: folder = snake_case of the name, queue = the name)."""
    if pattern not in PATTERNS:
        raise ScaffoldError(f"unknown pattern {pattern!r}; choose one of {', '.join(PATTERNS)}")
    if not re.fullmatch(NAME_PATTERN, name):
        raise ScaffoldError(
            f"invalid integration name {name!r}: a letter, then letters, digits or '-', 2 to 63 characters "
            f"(manifest pattern {NAME_PATTERN})"
        )
    folder = folder if folder is not None else folder_for(name)
    if not re.fullmatch(FOLDER_PATTERN, folder) or keyword.iskeyword(folder):
        raise ScaffoldError(
            f"invalid folder {folder!r}: a lower-case Python identifier (letters, digits, '_'), not a keyword"
        )
    queue = queue if queue is not None else name
    if not re.fullmatch(QUEUE_PATTERN, queue):
        raise ScaffoldError(f"invalid task queue {queue!r}: must match {QUEUE_PATTERN}")
    blocked = blacklisted(DEFAULT_BLACKLIST, name, folder)
    if blocked is not None:
        raise ScaffoldError(
            f"{name!r} (folder {folder!r}) matches the default blacklist {blocked!r}: it would never be served"
        )
    description = description or f"{name}: {DESCRIPTIONS[pattern]}."
    if len(description) > 500:
        raise ScaffoldError("the description is longer than 500 characters (the manifest's limit)")
    return Names(name=name, folder=folder, queue=queue, pattern=pattern, description=description)


def render(names: Names) -> dict[Path, str]:
    """Every file to create, relative to the repository root, with its content."""
    files: dict[Path, str] = {}
    base = TEMPLATES / names.pattern
    for template in sorted(p for p in base.rglob(f"*{SUFFIX}") if p.is_file()):
        relative = template.relative_to(base).as_posix().removesuffix(SUFFIX)
        files[Path(names.replace(relative))] = names.replace(template.read_text())
    manifest = {
        "name": names.name,
        "task_queue": names.queue,
        "description": names.description,
        "pattern": names.pattern,
        # The platform's defaults, written out so that the new integration's author sees what to tune.
        "deadline": msgspec.to_builtins(Deadlines()),
        "provider": names.provider(),
    }
    files[Path("integrations", names.folder, "manifest.json")] = (
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    )
    return files


def _claimed(root: Path) -> dict[str, str]:
    """Names and task queues of the integrations already there -> the folder that holds them."""
    claimed: dict[str, str] = {}
    for manifest in sorted((root / "integrations").glob("*/manifest.json")):
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            for key in ("name", "task_queue"):
                if isinstance(data.get(key), str):
                    claimed.setdefault(data[key], manifest.parent.name)
    return claimed


def scaffold(names: Names, root: Path = REPO_ROOT) -> list[Path]:
    """Create the integration's files under ``root``; the paths created. Nothing is written when any target
    exists or the name or queue is taken."""
    claimed = _claimed(root)
    taken = [
        f"{what} {value!r} is used by integrations/{claimed[value]}"
        for what, value in (("name", names.name), ("task queue", names.queue))
        if value in claimed
    ]
    files = render(names)
    targets = [root / "integrations" / names.folder, *(root / relative for relative in files)]
    existing = sorted({str(p.relative_to(root)) for p in targets if p.exists()})
    if existing or taken:
        problems = [*taken, *(f"{path} already exists" for path in existing)]
        raise ScaffoldError("nothing was created:\n" + "\n".join(f"  - {p}" for p in problems))
    created: list[Path] = []
    try:
        for relative, content in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("x", encoding="utf-8") as handle:
                handle.write(content)
            created.append(path)
    except OSError as exc:
        for path in reversed(created):
            path.unlink(missing_ok=True)
        raise ScaffoldError(f"could not write {exc.filename}: {exc.strerror}") from exc
    _format([p for p in created if p.suffix == ".py"], root)
    return created


EXAMPLE = Names(
    name="example",
    folder="example",
    queue="example",
    pattern="sync-call",
    description=(
        "The scaffold's minimal sync-call integration, generated from deploy/scaffold_templates/sync-call "
        "(python -m deploy.scaffold rewrites it). Blacklisted by default: never served."
    ),
)


def example_files() -> dict[Path, str]:
    """``integrations/example`` as the scaffold generates it: each file's path inside the folder and its text."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # The project's lint settings, so the generated files are formatted as in the repository.
        shutil.copyfile(REPO_ROOT / "pyproject.toml", root / "pyproject.toml")
        (root / "integrations").mkdir()
        scaffold(EXAMPLE, root)
        folder = root / "integrations" / EXAMPLE.folder
        return {p.relative_to(folder): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def regenerate_example(root: Path = REPO_ROOT) -> list[Path]:
    """Rewrite ``integrations/example`` from the sync-call templates; the paths written."""
    folder = root / "integrations" / EXAMPLE.folder
    shutil.rmtree(folder, ignore_errors=True)
    written: list[Path] = []
    for relative, text in example_files().items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def _format(paths: list[Path], root: Path) -> None:
    """Names change the order of imports and long names push lines past the limit: let ruff sort and wrap the
    new files, when ruff is installed (it is a development dependency)."""
    files = [str(p) for p in paths]
    for argv in (["check", "--fix", "--select", "I"], ["format"]):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(
                [sys.executable, "-m", "ruff", *argv, "--quiet", *files],
                cwd=root,
                check=False,
                capture_output=True,
                timeout=60,
            )


def next_steps(names: Names) -> list[str]:
    return [
        f"created integration {names.name!r} (pattern {names.pattern}) in integrations/{names.folder}/",
        "next:",
        f"  .venv/bin/pytest tests/integrations/{names.folder} tests/e2e/test_{names.folder}.py",
        "  .venv/bin/deploy-tool render     # adds its worker to compose.yaml; commit it with the integration",
        "  then follow .claude/agents/integration-generation-handler.md to put the real provider in",
    ]


if __name__ == "__main__":
    for written in regenerate_example():
        print(f"wrote {written.relative_to(REPO_ROOT)}")

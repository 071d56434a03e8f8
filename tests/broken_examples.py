"""A copy of the product packages with broken example integrations beside the real ones. A folder that the
blacklist excludes is never validated, so half-written examples must break neither main, the workers nor the
deploy tool (each runs from the copy: ``python -m`` puts the working directory first on sys.path)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.stack import REPO

# Folders that the default blacklist (example*) excludes, each broken in another way (see below).
BROKEN_EXAMPLES = ("Example-Copy", "example_draft", "sketch")


def copy_with_broken_examples(target: Path) -> Path:
    for package in ("services", "integrations", "deploy"):
        shutil.copytree(REPO / package, target / package, ignore=shutil.ignore_patterns("__pycache__"))
    for rendered in ("compose.yaml", "compose.dev.yaml"):
        shutil.copyfile(REPO / rendered, target / rendered)
    add_broken_examples(target / "integrations")
    return target


def add_broken_examples(integrations: Path) -> None:
    # Not a Python identifier and upper-case, no manifest: the pattern matches without regard to case.
    (integrations / "Example-Copy" / "workflows").mkdir(parents=True)
    # Half-written: a manifest cut off in the middle, nothing else.
    (integrations / "example_draft").mkdir()
    (integrations / "example_draft" / "manifest.json").write_text('{"name": "example-draft", "task_qu')
    # The folder's name does not match, its manifest's name does; the manifest is invalid, there is no code.
    (integrations / "sketch").mkdir()
    (integrations / "sketch" / "manifest.json").write_text(json.dumps({"name": "exampleSketch"}))

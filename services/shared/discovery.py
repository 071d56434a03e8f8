"""Find the integrations under ``integrations/``: the one discovery that main, the workers and the deploy
tool all use, so they can never disagree about what exists."""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from .manifest import Manifest, ManifestError, declared_name, load_manifest

INTEGRATIONS_ROOT = Path(__file__).resolve().parents[2] / "integrations"
# Every example integration is a template, never served.
DEFAULT_BLACKLIST: tuple[str, ...] = ("example*",)


class DiscoveryError(Exception):
    """The integrations folder has problems; each is listed, naming the integration."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("integration discovery failed:\n" + "\n".join(f"  - {p}" for p in self.problems))


@dataclass(frozen=True)
class Integration:
    folder: str
    path: Path
    manifest: Manifest
    package: str

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def task_queue(self) -> str:
        return self.manifest.task_queue

    def import_worker_module(self) -> ModuleType:
        """``<integration>/workflows/worker.py``; an import failure names the integration."""
        return _import(f"{self.package}.workflows.worker", self.name)

    def import_api_module(self) -> ModuleType:
        return _import(f"{self.package}.api", self.name)


@dataclass(frozen=True)
class Excluded:
    folder: str
    reason: str
    # The name its manifest declares, when it could be read: users ask for integrations by this name.
    name: str | None = None

    def known_as(self, name: str) -> bool:
        return name in (self.folder, self.name)


@dataclass(frozen=True)
class Discovery:
    integrations: list[Integration] = field(default_factory=list[Integration])
    excluded: list[Excluded] = field(default_factory=list[Excluded])

    def get(self, name: str) -> Integration:
        for integration in self.integrations:
            if integration.name == name:
                return integration
        known = ", ".join(i.name for i in self.integrations) or "none"
        raise KeyError(f"unknown integration {name!r}; served integrations: {known}")


class IntegrationImportError(Exception):
    pass


def _import(module: str, name: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except Exception as exc:
        raise IntegrationImportError(f"integration {name!r}: cannot import {module}: {exc!r}") from exc


def parse_blacklist(value: str | None) -> tuple[str, ...]:
    """``INTEGRATIONS_BLACKLIST``: comma-separated glob patterns over folder or manifest names, matched without
    regard to case. Unset means the default (every example); an empty string means nothing is excluded."""
    if value is None:
        return DEFAULT_BLACKLIST
    return tuple(p.strip() for p in value.split(",") if p.strip())


def blacklisted(blacklist: Sequence[str], *names: str | None) -> str | None:
    """The first pattern that matches any of ``names`` (folder, manifest name), without regard to case."""
    for pattern in blacklist:
        if any(name and fnmatch.fnmatchcase(name.casefold(), pattern.casefold()) for name in names):
            return pattern
    return None


def discover(root: Path = INTEGRATIONS_ROOT, blacklist: Sequence[str] = DEFAULT_BLACKLIST) -> Discovery:
    """Drop the blacklisted folders, validate every other one under ``root`` and split them into served and
    excluded (disabled in their manifest).

    Problems are collected across all folders and raised together, so one run shows all of them.
    """
    problems: list[str] = []
    found: list[Integration] = []
    excluded: list[Excluded] = []
    for path in sorted(p for p in root.iterdir() if p.is_dir()):
        folder = path.name
        if folder.startswith((".", "_")):
            continue
        # Before any validation: an excluded folder (an example half-way through editing) breaks nothing.
        declared = declared_name(path / "manifest.json")
        pattern = blacklisted(blacklist, folder, declared)
        if pattern is not None:
            excluded.append(Excluded(folder, f"blacklisted by pattern {pattern!r}", declared))
            continue
        if not folder.isidentifier():
            problems.append(f"{folder}: folder name must be a Python identifier (use the manifest for the public name)")
            continue
        try:
            manifest = load_manifest(path / "manifest.json")
        except ManifestError as exc:
            problems.append(str(exc))
            continue
        if not (path / "workflows" / "worker.py").is_file():
            problems.append(f"{folder}: {path / 'workflows' / 'worker.py'} is missing")
            continue
        if not (path / "api.py").is_file():
            problems.append(f"{folder}: {path / 'api.py'} is missing")
            continue
        if manifest.disabled_reason:
            excluded.append(Excluded(folder, f"disabled in manifest: {manifest.disabled_reason}", manifest.name))
            continue
        found.append(Integration(folder, path, manifest, f"{root.name}.{folder}"))

    for attr, label in (("name", "name"), ("task_queue", "task queue")):
        owners: dict[str, list[str]] = {}
        for integration in found:
            owners.setdefault(getattr(integration.manifest, attr), []).append(integration.folder)
        for value, folders in owners.items():
            if len(folders) > 1:
                problems.append(f"{label} {value!r} is claimed by more than one integration: {', '.join(folders)}")
    if problems:
        raise DiscoveryError(problems)
    return Discovery(found, excluded)

"""The integration manifest: ``integrations/<folder>/manifest.json``, validated on load."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import msgspec

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9-]{1,62}$"
QUEUE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"


class ManifestError(Exception):
    """A manifest is missing or invalid; the message names the file and the problem."""


class Manifest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    # The name users see in URLs (/api/integrations/<name>/...) and in compose service names.
    name: Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
    task_queue: Annotated[str, msgspec.Meta(pattern=QUEUE_PATTERN)]
    description: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    # "sync-call": one slow provider call; "submit-poll": separate submit and query APIs.
    pattern: Literal["sync-call", "submit-poll", "internal"] = "internal"
    # A disabled integration is discovered but never served; `disabled_reason` says why.
    disabled_reason: str | None = None


def load_manifest(path: Path) -> Manifest:
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ManifestError(f"{path}: manifest.json is missing") from exc
    try:
        return msgspec.json.decode(raw, type=Manifest)
    except msgspec.ValidationError as exc:
        raise ManifestError(f"{path}: invalid manifest: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise ManifestError(f"{path}: manifest is not valid JSON: {exc}") from exc


def declared_name(path: Path) -> str | None:
    """The ``name`` a manifest declares, read without validating anything else; None when it cannot be read."""
    try:
        raw = msgspec.json.decode(path.read_bytes())
    except (OSError, msgspec.DecodeError):
        return None
    name = raw.get("name") if isinstance(raw, dict) else None
    return name if isinstance(name, str) else None


def slug(name: str) -> str:
    """A lower-case form of the integration name usable as a compose service or process name."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()

"""The integration manifest: ``integrations/<folder>/manifest.json``, validated on load."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from .settings import Env, SettingsError

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9-]{1,62}$"
QUEUE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"


class ManifestError(Exception):
    """A manifest is missing or invalid; the message names the file and the problem."""


FIELD_PATTERN = r"^[a-z_][a-z0-9_]*$"
# "sync-call": one slow provider call; "submit-poll": separate submit and query APIs.
Pattern = Literal["sync-call", "submit-poll", "internal"]


class ConsoleField(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """How the console shows one field of the create request; its type, limits and allowed values come from the
    request's OpenAPI schema."""

    # A property of the integration's request type.
    name: Annotated[str, msgspec.Meta(pattern=FIELD_PATTERN)]
    # The field's label; default: its name in words ("aspect_ratio" -> "Aspect ratio").
    label: Annotated[str, msgspec.Meta(min_length=1, max_length=60)] | None = None
    # For a text field: a one-line input (default) or a textarea.
    widget: Literal["input", "textarea"] = "input"
    # Shown as the placeholder of an empty field.
    example: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class ConsoleHints(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """How main's web console presents the integration. Without hints it still gets a form: every field of the
    request, labelled by name."""

    # The form's title and the name on the integration's task cards, e.g. "Image".
    label: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    # Shown first, in this order; the request's other fields follow under "More options".
    fields: tuple[ConsoleField, ...] = ()

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if len(set(names)) < len(names):
            raise ValueError(
                f"console fields are listed more than once: {sorted({n for n in names if names.count(n) > 1})}"
            )


class ProviderLimits(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What the integration's provider allows the platform as a whole: one API key is shared by every worker and
    replica, so these hold across all of them. The manifest's values are defaults; ``<PREFIX>_REQUESTS_PER_SECOND``
    and ``<PREFIX>_MAX_CONCURRENT_JOBS`` override them (``<PREFIX>``: see ``settings_prefix``)."""

    # Provider calls per second over all workers: the Temporal server's rate limit on the integration's provider
    # task queue. None: not limited.
    requests_per_second: Annotated[float, msgspec.Meta(gt=0)] | None = None
    # Jobs in flight at the provider at once, from submit until the provider's job is final (submit-poll only).
    # None: no cap.
    max_concurrent_jobs: Annotated[int, msgspec.Meta(ge=1)] | None = None

    def from_env(self, env: Env, prefix: str) -> ProviderLimits:
        """These limits with the environment's overrides, each checked like the manifest's value."""
        rate_name, jobs_name = f"{prefix}_REQUESTS_PER_SECOND", f"{prefix}_MAX_CONCURRENT_JOBS"
        rate = env.get_float(rate_name, 0.0) if env.optional(rate_name) else self.requests_per_second
        jobs = env.get_int(jobs_name, 0, minimum=1) if env.optional(jobs_name) else self.max_concurrent_jobs
        if rate is not None and rate <= 0:
            raise SettingsError(f"environment variable {rate_name} must be positive, got {rate}")
        return ProviderLimits(rate, jobs)


class Manifest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    # The name users see in URLs (/api/integrations/<name>/...) and in compose service names.
    name: Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
    task_queue: Annotated[str, msgspec.Meta(pattern=QUEUE_PATTERN)]
    description: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    pattern: Pattern = "internal"
    # A disabled integration is discovered but never served; `disabled_reason` says why.
    disabled_reason: str | None = None
    console: ConsoleHints | None = None
    limits: ProviderLimits = ProviderLimits()

    def __post_init__(self) -> None:
        if self.limits.max_concurrent_jobs is not None and self.pattern != "submit-poll":
            raise ValueError("limits.max_concurrent_jobs caps provider jobs, which only submit-poll integrations have")


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


def settings_prefix(name: str) -> str:
    """The prefix of an integration's platform settings, from its name: ``fangzhouVideoGeneration`` ->
    ``FANGZHOU_VIDEO_GENERATION``."""
    return slug(name).upper().replace("-", "_")

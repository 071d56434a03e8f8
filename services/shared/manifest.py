"""The integration manifest: ``integrations/<folder>/manifest.json``, validated on load."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import msgspec

from .tasks import MAX_DEADLINE_SECONDS

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9-]{1,62}$"
QUEUE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"


class ManifestError(Exception):
    """A manifest is missing or invalid; the message names the file and the problem."""


FIELD_PATTERN = r"^[a-z_][a-z0-9_]*$"
VARIABLE_PATTERN = r"^[A-Z][A-Z0-9_]{1,127}$"
STAND_IN_PATTERN = r"^[a-z][a-z0-9_]{0,30}$"
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
    and ``<PREFIX>_MAX_CONCURRENT_JOBS`` override them (``<PREFIX>``: see ``settings_prefix``; read by the launcher,
    ``provider_limits``)."""

    # Provider calls per second over all workers: the Temporal server's rate limit on the integration's provider
    # task queue. None: not limited.
    requests_per_second: Annotated[float, msgspec.Meta(gt=0)] | None = None
    # Jobs in flight at the provider at once, from submit until the provider's job is final (submit-poll only).
    # None: no cap.
    max_concurrent_jobs: Annotated[int, msgspec.Meta(ge=1)] | None = None


class Deadlines(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The deadlines of the integration's tasks: a create's ``deadline_seconds`` is at most ``max_seconds``, and a
    create without one gets ``default_seconds``. Counted from the create; past it the task fails
    ``deadline_exceeded`` (see ``workflow_kit.time_left``)."""

    default_seconds: Annotated[float, msgspec.Meta(gt=0)] = 3600.0
    max_seconds: Annotated[float, msgspec.Meta(gt=0, le=MAX_DEADLINE_SECONDS)] = MAX_DEADLINE_SECONDS

    def __post_init__(self) -> None:
        if self.default_seconds > self.max_seconds:
            raise ValueError(
                f"deadline.default_seconds ({self.default_seconds:g}) exceeds max_seconds ({self.max_seconds:g})"
            )


class ProviderDeclaration(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The provider an integration's worker calls: the variables that configure it (the deploy tool gives them to
    that worker only), where the provider is, and the simulator stand-in that speaks its API. The worker reads them
    through ``services.shared.settings.ProviderEndpoint``."""

    # Holds the provider's API key (or ``<NAME>_FILE`` a file with it). Without a key the worker does not start,
    # unless PROVIDER_SIMULATOR_URL names the simulator and ``simulator`` is set.
    api_key_env: Annotated[str, msgspec.Meta(pattern=VARIABLE_PATTERN)]
    # Overrides ``base_url`` (a proxy, a regional endpoint).
    base_url_env: Annotated[str, msgspec.Meta(pattern=VARIABLE_PATTERN)]
    # The provider's own https base URL; without one, the variable ``base_url_env`` must be set.
    base_url: str | None = None
    # The stand-in of services/simulator/providers/ that serves this provider's API (its ``name``).
    simulator: Annotated[str, msgspec.Meta(pattern=STAND_IN_PATTERN)] | None = None

    def __post_init__(self) -> None:
        if self.api_key_env == self.base_url_env:
            raise ValueError(f"api_key_env and base_url_env must differ, both are {self.api_key_env}")
        if self.base_url is not None:
            parts = urlsplit(self.base_url)
            if parts.scheme != "https" or not parts.hostname or self.base_url.endswith("/"):
                raise ValueError(f"base_url must be https://host[/path], no trailing slash, got {self.base_url!r}")


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
    deadline: Deadlines = Deadlines()

    def __post_init__(self) -> None:
        if self.limits.max_concurrent_jobs is not None and self.pattern != "submit-poll":
            raise ValueError("limits.max_concurrent_jobs caps provider jobs, which only submit-poll integrations have")

    # Set for an integration that calls an outside provider.
    provider: ProviderDeclaration | None = None


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


def limit_settings(name: str) -> tuple[str, str]:
    """The variables overriding the integration's ``ProviderLimits``: its requests per second and its jobs at once."""
    prefix = settings_prefix(name)
    return f"{prefix}_REQUESTS_PER_SECOND", f"{prefix}_MAX_CONCURRENT_JOBS"

"""Render compose.yaml from the enabled middleware and our services. The output is deterministic: the same
config, catalog and integrations always give the same bytes, so CI can check the committed file."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from . import catalog, config
from .errors import DeployError
from .paths import COMPOSE_FILE, CONFIG_FILE
from .services import (
    compose_app_services,
    compose_dev_services,
    discover_integrations,
    provider_variables,
    worker_name,
)
from .spec import ComposeContext, ComposeService

PROJECT_NAME = "async-task-platform"
# The development override next to compose.yaml: `docker compose -f compose.yaml -f compose.dev.yaml up`.
DEV_FILE_NAME = "compose.dev.yaml"
_WIDTH = 140


class _Dumper(yaml.SafeDumper):
    # Every service gets its own copy of shared values; never emit YAML anchors and aliases.
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    # Lists of short scalars (commands, healthchecks, ports) read best as one (wrapped) line.
    flow = all(isinstance(x, int | bool) or (isinstance(x, str) and len(x) <= 80) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    # A file's content (a config) as a block, as it is; anything else with a colon or a variable quoted, so no
    # YAML reader takes "0:0" or "8000:8000" for a number.
    style = "|" if "\n" in data else "'" if (":" in data or "$" in data) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(str, _represent_str)


def _context(environ: Mapping[str, str] | None) -> ComposeContext:
    discovery, blacklist = discover_integrations(environ)
    return ComposeContext(integrations=tuple(sorted(discovery.integrations, key=worker_name)), blacklist=blacklist)


def middleware(config_path: Path = CONFIG_FILE) -> list[catalog.Middleware]:
    """What compose runs: the enabled middleware and what the scale shape adds (PostgreSQL), in catalog order."""
    return [catalog.CATALOG[name] for name in catalog.for_shape(config.load(config_path).enabled, "scale")]


def build(config_path: Path = CONFIG_FILE, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The compose document as data: the stack as it runs in production, with generated secrets. It is the scale
    shape (PostgreSQL, main and communication behind the front door), so the same file runs one replica of each or,
    with `docker compose up --scale main=N ...`, several."""
    enabled = middleware(config_path)
    disabled = [m for m in catalog.CATALOG.values() if m not in enabled and m.external_when_disabled]
    apps = compose_app_services(_context(environ), enabled, disabled)
    services: dict[str, ComposeService] = {"secrets": apps.services.pop("secrets")}
    volumes = set(apps.volumes)
    for m in enabled:
        services.update(m.compose_services())
        volumes.update(m.compose_volumes())
    services.update(apps.services)
    return {
        "name": PROJECT_NAME,
        "services": services,
        "volumes": {name: {} for name in sorted(volumes)},
        "configs": apps.configs,
    }


def build_dev(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The development override: the provider simulator, and keyless provider workers pointed at it."""
    return {"services": compose_dev_services(_context(environ))}


def _header(document: Mapping[str, Any], ctx: ComposeContext) -> str:
    images = sorted(
        {m.group(1) for svc in document["services"].values() for m in re.finditer(r"\$\{(\w+):-", svc["image"])}
    )
    host_ports = sorted(
        {
            m.group(1)
            for svc in document["services"].values()
            for port in svc.get("ports", [])
            for m in re.finditer(r"\$\{(\w+_HOST_PORT):-", port)
        }
    )
    keys = sorted({provider_variables(i)[0] for i in ctx.integrations if provider_variables(i)})
    blacklist = ",".join(ctx.blacklist)
    lines = [
        "# GENERATED FILE - do not edit. Regenerate with `deploy-tool render` (CI runs `deploy-tool render --check`).",
        "# Sources: deploy/middleware.json (enabled middleware), deploy/catalog.py, deploy/services.py and the",
        f"# integrations discovered under integrations/ (blacklist: {blacklist or 'none'}).",
        "#",
        f"# Image variables (offline hosts point them at local builds): {', '.join(images)}.",
        "# Offline: `./dev images` builds local images and writes their names to .deploy/images.env, which",
        "# `deploy-tool up --mode docker` reads; plain compose: `docker compose --env-file .deploy/images.env up -d`.",
        "# Secrets are generated on the first start by the one-shot `secrets` service into the `secrets` volume; each",
        "# service gets only its own as files in its own volume. First API key:",
        "#   docker compose run --rm secrets python -m deploy.credentials api-key",
        f"# API_KEYS (key:user,...) adds users. Provider keys: {', '.join(keys)} (a worker without its key exits).",
        "# The provider simulator is in the development override compose.dev.yaml (what `deploy-tool up` uses).",
        "# The scale shape: PostgreSQL, NATS, and nginx as the front door of every main and communication replica",
        "# (/api, /console, /docs -> main; /ws -> communication; presigned downloads -> MinIO). One replica of each by",
        "# default; more with `docker compose up -d --scale main=2 --scale communication=2 --scale worker-echo=2`.",
        "# Published ports bind to PUBLISH_IP (default 127.0.0.1): the front door, the Temporal UI and MinIO; host",
        f"# ports are set with {', '.join(host_ports)}.",
        "# URLs main hands out go through the front door: S3_PUBLIC_ENDPOINT (presigned downloads) and",
        "# REALTIME_PUBLIC_URL (websocket) default to localhost and its published port, MAIN_PUBLIC_URL (provider",
        "# callbacks) to http://front-door:8000.",
    ]
    return "\n".join(lines) + "\n"


def _dump(document: Mapping[str, Any]) -> str:
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=_WIDTH)
    # A blank line between services makes the file easier to scan.
    return re.sub(r"\n(  [a-z0-9-]+:\n)", r"\n\n\1", body)


def render(config_path: Path = CONFIG_FILE, environ: Mapping[str, str] | None = None) -> str:
    document = build(config_path, environ)
    return _header(document, _context(environ)) + "\n" + _dump(document)


def render_dev(environ: Mapping[str, str] | None = None) -> str:
    header = (
        "# GENERATED FILE - do not edit. Regenerate with `deploy-tool render`.\n"
        "# The development override of compose.yaml, which `deploy-tool up` (./dev up) uses:\n"
        f"#   docker compose -f compose.yaml -f {DEV_FILE_NAME} up -d\n"
        "# It adds the provider simulator, tells each provider worker where it is (used when no key is set) and lets\n"
        "# the worker fetch the simulator's media links.\n"
    )
    return header + "\n" + _dump(build_dev(environ))


def dev_file(compose_path: Path) -> Path:
    return compose_path.with_name(DEV_FILE_NAME)


def _rendered(compose_path: Path, config_path: Path, environ: Mapping[str, str] | None) -> dict[Path, str]:
    return {compose_path: render(config_path, environ), dev_file(compose_path): render_dev(environ)}


def write(
    compose_path: Path = COMPOSE_FILE, config_path: Path = CONFIG_FILE, environ: Mapping[str, str] | None = None
) -> bool:
    """Write compose.yaml and its development override; returns False when both were already current."""
    changed = False
    for path, text in _rendered(compose_path, config_path, environ).items():
        if path.is_file() and path.read_text() == text:
            continue
        path.write_text(text)
        changed = True
    return changed


def check(
    compose_path: Path = COMPOSE_FILE, config_path: Path = CONFIG_FILE, environ: Mapping[str, str] | None = None
) -> str | None:
    """None when compose.yaml and its override are current, else a unified diff from the files to what render
    would write."""
    problems: list[str] = []
    for path, expected in _rendered(compose_path, config_path, environ).items():
        try:
            actual = path.read_text()
        except FileNotFoundError:
            problems.append(f"{path} does not exist\n")
            continue
        if actual != expected:
            diff = difflib.unified_diff(
                actual.splitlines(keepends=True),
                expected.splitlines(keepends=True),
                fromfile=f"{path.name} (on disk)",
                tofile=f"{path.name} (rendered)",
            )
            problems.append("".join(diff))
    return "".join(problems) or None


def images(document: Mapping[str, Any], environ: Mapping[str, str]) -> list[str]:
    """The image references in a compose document, with ``${VAR:-default}`` resolved against ``environ``."""
    return sorted({interpolate(svc["image"], environ) for svc in document["services"].values() if "image" in svc})


def interpolate(value: str, environ: Mapping[str, str]) -> str:
    """The subset of compose interpolation this tool writes: ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    defaults that hold variables themselves (``${A:-localhost:${B:-9000}}``), and ``$$`` for a literal ``$``."""
    expanded, _ = _expand(value, 0, environ, nested=False)
    return expanded


_VARIABLE = re.compile(r"\$\{(\w+)(:-|-)?")


def _expand(text: str, pos: int, environ: Mapping[str, str], *, nested: bool) -> tuple[str, int]:
    """Expand ``text`` from ``pos``; inside a default (``nested``) stop before its closing brace."""
    out: list[str] = []
    while pos < len(text):
        if nested and text[pos] == "}":
            return "".join(out), pos
        if text.startswith("$$", pos):
            out.append("$")
            pos += 2
            continue
        match = _VARIABLE.match(text, pos)
        if match is None:
            out.append(text[pos])
            pos += 1
            continue
        name, op = match.group(1), match.group(2)
        default, pos = _expand(text, match.end(), environ, nested=True) if op else ("", match.end())
        if not text.startswith("}", pos):
            raise DeployError(f"unterminated variable in {text!r}")
        pos += 1
        current = environ.get(name)
        if op == ":-":
            out.append(current if current else default)
        elif op == "-":
            out.append(current if current is not None else default)
        else:
            out.append(current or "")
    if nested:
        raise DeployError(f"unterminated variable in {text!r}")
    return "".join(out), pos

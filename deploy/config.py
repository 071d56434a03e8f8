"""``deploy/middleware.json``: which catalog entries are enabled. Written in catalog order, so it is stable."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import msgspec

from . import catalog
from .errors import DeployError
from .paths import CONFIG_FILE

COMMENT = "Enabled middleware. Change with `deploy-tool middleware add|remove NAME`, then `deploy-tool render`."


class _ConfigFile(msgspec.Struct, forbid_unknown_fields=True):
    enabled: list[str]
    comment: str = msgspec.field(name="$comment", default=COMMENT)


@dataclass(frozen=True)
class MiddlewareConfig:
    enabled: tuple[str, ...]

    def middleware(self) -> list[catalog.Middleware]:
        return [catalog.CATALOG[name] for name in self.enabled]


def load(path: Path = CONFIG_FILE) -> MiddlewareConfig:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return MiddlewareConfig(enabled=())
    try:
        parsed = msgspec.json.decode(raw, type=_ConfigFile)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise DeployError(f"{path}: invalid middleware config: {exc}") from exc
    unknown = [name for name in parsed.enabled if name not in catalog.CATALOG]
    if unknown:
        raise DeployError(
            f"{path}: unknown middleware {', '.join(map(repr, unknown))}; known: {', '.join(catalog.CATALOG)}"
        )
    return MiddlewareConfig(enabled=tuple(catalog.in_catalog_order(parsed.enabled)))


def dumps(config: MiddlewareConfig) -> str:
    return json.dumps({"$comment": COMMENT, "enabled": list(config.enabled)}, indent=2) + "\n"


def save(config: MiddlewareConfig, path: Path = CONFIG_FILE) -> None:
    text = dumps(config)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def add(name: str, path: Path = CONFIG_FILE) -> bool:
    """Enable ``name``; returns False when it already was (adding is idempotent)."""
    catalog.get(name)
    current = load(path)
    if name in current.enabled:
        return False
    save(MiddlewareConfig(tuple(catalog.in_catalog_order([*current.enabled, name]))), path)
    return True


def remove(name: str, path: Path = CONFIG_FILE) -> bool:
    """Disable ``name``; returns False when it was not enabled."""
    catalog.get(name)
    current = load(path)
    if name not in current.enabled:
        return False
    save(MiddlewareConfig(tuple(n for n in current.enabled if n != name)), path)
    return True

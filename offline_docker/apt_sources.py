"""The Debian archives this host's apt is configured with, so debootstrap uses whatever mirror apt uses here.

apt reads `/etc/apt/sources.list` and, in `/etc/apt/sources.list.d/`, `*.list` files (one-line format,
`deb [options] URI SUITE [COMPONENT...]`) and `*.sources` files (deb822 stanzas with `Types`, `URIs`, `Suites`,
`Components` and optionally `Enabled`); other files there are ignored, as apt ignores them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

APT_DIR = Path("/etc/apt")


@dataclass(frozen=True)
class AptSource:
    """One binary archive: packages of `suite` at `uri`."""

    uri: str
    suite: str
    components: tuple[str, ...]


def _one_line(text: str) -> Iterator[AptSource]:
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if len(words) < 3 or words[0] != "deb":
            continue
        rest = words[1:]
        if rest[0].startswith("["):
            # Options: `[arch=amd64 signed-by=...]`, possibly spread over several words.
            while rest and not rest[0].endswith("]"):
                rest = rest[1:]
            rest = rest[1:]
        if len(rest) >= 2:
            yield AptSource(rest[0].rstrip("/"), rest[1], tuple(rest[2:]))


def _stanzas(text: str) -> Iterator[dict[str, str]]:
    fields: dict[str, str] = {}
    name = ""
    for raw in [*text.splitlines(), ""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if fields:
                yield fields
            fields, name = {}, ""
        elif raw[0] in " \t" and name:
            fields[name] += " " + raw.strip()
        elif ":" in raw:
            key, _, value = raw.partition(":")
            name = key.strip().lower()
            fields[name] = value.strip()


def _deb822(text: str) -> Iterator[AptSource]:
    for fields in _stanzas(text):
        if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
            continue
        components = tuple(fields.get("components", "").split())
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                yield AptSource(uri.rstrip("/"), suite, components)


def source_files(apt_dir: Path = APT_DIR) -> list[Path]:
    """The files apt reads its sources from, in apt's order."""
    listed = apt_dir / "sources.list.d"
    parts = sorted(p for p in listed.glob("*") if p.suffix in {".list", ".sources"}) if listed.is_dir() else []
    main = apt_dir / "sources.list"
    return [main, *parts] if main.is_file() else parts


def read_sources(apt_dir: Path = APT_DIR) -> list[AptSource]:
    """Every enabled binary archive of the host's apt configuration."""
    found: list[AptSource] = []
    for path in source_files(apt_dir):
        text = path.read_text(errors="replace")
        found += _deb822(text) if path.suffix == ".sources" else _one_line(text)
    return found


def archive_for(sources: Sequence[AptSource], suite: str) -> AptSource | None:
    """The first archive apt knows for `suite` that carries Debian's `main` component."""
    return next((s for s in sources if s.suite == suite and "main" in s.components), None)

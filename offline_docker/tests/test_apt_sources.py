"""debootstrap's archives come from the host's apt configuration, in both of apt's formats."""

from __future__ import annotations

from pathlib import Path

import pytest

from offline_docker import base_image
from offline_docker.apt_sources import AptSource, archive_for, read_sources
from offline_docker.host import HostError


def _apt_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_one_line_sources_with_options_and_comments(tmp_path: Path) -> None:
    apt = _apt_dir(
        tmp_path,
        {
            "sources.list": (
                "# a comment\n"
                "deb [ arch=amd64 signed-by=/etc/k.gpg ] http://mirror.test/debian/ bookworm main contrib\n"
                "deb-src http://mirror.test/debian bookworm main\n"
                "deb http://mirror.test/debian bookworm-updates main # trailing comment\n"
                "\n"
                "deb http://security.test/debian-security bookworm-security main\n"
            )
        },
    )
    assert read_sources(apt) == [
        AptSource("http://mirror.test/debian", "bookworm", ("main", "contrib")),
        AptSource("http://mirror.test/debian", "bookworm-updates", ("main",)),
        AptSource("http://security.test/debian-security", "bookworm-security", ("main",)),
    ]


def test_deb822_sources_expand_uris_and_suites(tmp_path: Path) -> None:
    apt = _apt_dir(
        tmp_path,
        {
            "sources.list.d/debian.sources": (
                "Types: deb\n"
                "# http://snapshot.test/archive/debian/20250520T000000Z\n"
                "URIs: http://mirror.test/debian\n"
                "Suites: bookworm\n"
                " bookworm-updates\n"
                "Components: main\n"
                "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
                "\n"
                "Types: deb-src\n"
                "URIs: http://src.test/debian\n"
                "Suites: bookworm\n"
                "Components: main\n"
                "\n"
                "types: deb\n"
                "uris: http://off.test/debian\n"
                "suites: bookworm\n"
                "components: main\n"
                "enabled: no\n"
                "\n"
                "Types: deb\n"
                "URIs: http://security.test/debian-security\n"
                "Suites: bookworm-security\n"
                "Components: main\n"
            ),
            # apt reads only *.list and *.sources files.
            "sources.list.d/old.sources.off": "Types: deb\nURIs: http://x.test\nSuites: bookworm\nComponents: main\n",
            "sources.list.d/vendor.list": "deb https://vendor.test/apt cloud-sdk-bookworm main\n",
        },
    )
    sources = read_sources(apt)
    assert sources == [
        AptSource("http://mirror.test/debian", "bookworm", ("main",)),
        AptSource("http://mirror.test/debian", "bookworm-updates", ("main",)),
        AptSource("http://security.test/debian-security", "bookworm-security", ("main",)),
        AptSource("https://vendor.test/apt", "cloud-sdk-bookworm", ("main",)),
    ]
    assert [a.uri for a in base_image.archives(sources)] == [
        "http://mirror.test/debian",
        "http://mirror.test/debian",
        "http://security.test/debian-security",
    ]


def test_sources_list_comes_before_the_directory(tmp_path: Path) -> None:
    apt = _apt_dir(
        tmp_path,
        {
            "sources.list": "deb http://first.test/debian bookworm main\n",
            "sources.list.d/a.list": "deb http://second.test/debian bookworm main\n",
        },
    )
    found = archive_for(read_sources(apt), "bookworm")
    assert found is not None
    assert found.uri == "http://first.test/debian"


def test_update_suites_are_optional_but_the_release_is_not() -> None:
    release = AptSource("http://mirror.test/debian", "bookworm", ("main",))
    assert base_image.archives([release]) == [release]
    # An archive without `main` cannot provide python3.
    with pytest.raises(HostError, match="no Debian bookworm archive"):
        base_image.archives([AptSource("http://mirror.test/debian", "bookworm", ("contrib",))])
    with pytest.raises(HostError, match="no Debian bookworm archive"):
        base_image.archives([AptSource("http://mirror.test/debian", "trixie", ("main",))])

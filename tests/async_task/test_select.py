"""Which integrations the launcher serves, from the repository's own integrations (no server needed)."""

from __future__ import annotations

import pytest

from services.async_task.launcher import LauncherError, select
from services.shared.discovery import discover


def test_no_names_serves_every_discovered_integration() -> None:
    discovery = discover()
    assert select(discovery, []) == discovery.integrations


@pytest.mark.parametrize("asked", ["fangzhouVideoGeneration", "fangzhou_video_generation"])
def test_an_excluded_integration_is_named_by_manifest_name_or_folder(asked: str) -> None:
    # The manifest's name and the folder differ; either way the error says why it is not served.
    discovery = discover(blacklist=("FANGZHOU*",))
    with pytest.raises(LauncherError) as raised:
        select(discovery, [asked])
    assert f"unknown integration {asked!r}" in str(raised.value)
    assert "(excluded: folder fangzhou_video_generation, blacklisted by pattern 'FANGZHOU*')" in str(raised.value)


def test_an_unknown_integration_has_no_excluded_hint() -> None:
    with pytest.raises(LauncherError) as raised:
        select(discover(), ["nothing-like-it"])
    assert "excluded" not in str(raised.value)

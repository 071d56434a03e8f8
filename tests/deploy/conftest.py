from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from deploy import paths


@pytest.fixture
def config_copy(tmp_path: Path) -> Path:
    """A temporary copy of deploy/middleware.json, so tests never change the real one."""
    target = tmp_path / "middleware.json"
    shutil.copyfile(paths.CONFIG_FILE, target)
    return target


def deploy_tool() -> list[str]:
    """argv of the installed console script (falls back to ``python -m deploy``)."""
    script = Path(sys.executable).parent / "deploy-tool"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "deploy"]

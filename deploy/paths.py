"""Where the deploy tool finds the repository, its config, the generated compose file and its state."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_FILE = REPO_ROOT / "deploy" / "middleware.json"
COMPOSE_FILE = REPO_ROOT / "compose.yaml"
DEFAULT_STATE_DIR = REPO_ROOT / ".deploy" / "local"
# Written by `./dev images` (offline_docker/images.py): the names of the locally built images, as compose
# variables.
IMAGES_ENV_NAME = ".deploy/images.env"
STATE_DIR_ENV = "DEPLOY_STATE_DIR"


def state_dir(explicit: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """``--state-dir`` wins, then ``DEPLOY_STATE_DIR``, then ``.deploy/local/`` in the repository."""
    env = os.environ if environ is None else environ
    chosen = explicit if explicit is not None else env.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR
    return Path(chosen).expanduser().resolve()

"""The Docker engine and the stack's images, shared by every test that needs them (`-m docker`).

`tests/conftest.py` and `offline_docker/tests/conftest.py` register the `docker_images` fixture, so the image
tests (offline_docker/tests) and the containerised stack tests (tests/containers) bootstrap the engine and the
images once per session.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest

from offline_docker.engine import EngineError, EngineHandle, ensure_engine
from offline_docker.images import bootstrap_images


@dataclass(frozen=True)
class DockerImages:
    engine: EngineHandle
    # Compose variable -> local image (APP_IMAGE, TEMPORAL_IMAGE, MINIO_IMAGE, PYTHON_BASE_IMAGE).
    images: dict[str, str]


def _progress(message: str) -> None:
    print(f"[docker-images] {message}", file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def docker_images() -> DockerImages:
    """The engine and the bootstrapped images (also written to .deploy/images.env). The engine is left running:
    CI stops it in its own step (`.ci/docker-engine.sh stop`), and a developer's next run reuses it. Skips only
    when no engine answers and none can be started here."""
    try:
        engine = ensure_engine(_progress)
    except EngineError as exc:
        pytest.skip(f"no Docker engine answers and none can be started here: {exc}")
    return DockerImages(engine=engine, images=bootstrap_images(_progress))

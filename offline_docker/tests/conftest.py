"""Helpers for the image tests: run containers from the bootstrapped images and wait for them."""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence

from offline_docker.engine import docker_command, docker_env
from tests.docker_fixtures import DockerImages, docker_images

# `docker_images` is shared with tests/containers (tests/docker_fixtures.py); imported here to register it.
__all__ = [
    "DockerImages",
    "container_logs",
    "docker",
    "docker_images",
    "published_port",
    "running_container",
    "wait_until",
]


def docker(*args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        docker_command(*args), capture_output=True, text=True, env=docker_env(), timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


@contextlib.contextmanager
def running_container(image: str, *args: str, options: Sequence[str] = ()) -> Iterator[str]:
    """Run a detached container (its name is unique) and remove it, with its anonymous volumes, afterwards."""
    name = f"image-test-{uuid.uuid4().hex[:12]}"
    docker("run", "--detach", "--name", name, *options, image, *args)
    try:
        yield name
    finally:
        docker("rm", "--force", "--volumes", name, check=False)


def published_port(container: str, container_port: int) -> int:
    """The host port Docker chose for `-p 127.0.0.1::PORT` (a free one, so parallel runs never collide)."""
    output = docker("port", container, f"{container_port}/tcp").stdout.strip().splitlines()[0]
    return int(output.rsplit(":", 1)[1])


def container_logs(container: str) -> str:
    result = docker("logs", "--tail", "50", container, check=False)
    return result.stdout + result.stderr


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str, describe: Callable[[], str]) -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds with `describe()` (for example, logs)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:.0f} s\n{describe()}")
        time.sleep(0.2)  # poll interval between checks of the condition

"""Engine lifecycle pieces that can be checked without stopping a shared engine."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from offline_docker.compose_plugin import find_compose
from offline_docker.engine import EngineHandle, HostSnapshot, _container_processes, docker_env

from .conftest import DockerImages, docker, running_container, wait_until


def test_handle_survives_the_state_file() -> None:
    handle = EngineHandle(
        docker_host="unix:///var/run/docker.sock",
        server_version="20.10.24",
        started=True,
        installed_docker_io=True,
        root="/var/lib/x",
        pid=42,
        snapshot=HostSnapshot(
            links=("eth0", "lo"),
            iptables={"filter": ("-P FORWARD ACCEPT",), "nat": ()},
            sysctls={"/proc/sys/net/ipv4/ip_forward": "0"},
            socket_existed=False,
        ),
    )
    assert EngineHandle.from_json(handle.to_json()) == handle
    assert handle.env == {"DOCKER_HOST": "unix:///var/run/docker.sock"}


def test_not_started_handle_has_no_snapshot() -> None:
    handle = EngineHandle(docker_host="unix:///run/docker.sock", server_version="28.0", started=False)
    assert EngineHandle.from_json(handle.to_json()) == handle


@pytest.mark.docker
@pytest.mark.timeout(900)
def test_compose_v2_is_available(docker_images: DockerImages) -> None:
    argv = find_compose()
    result = subprocess.run(
        [*argv, "version", "--short"], capture_output=True, text=True, env=docker_env(), timeout=30, check=False
    )
    assert result.returncode == 0
    assert result.stdout.strip().lstrip("v").startswith("2.")


@pytest.mark.docker
@pytest.mark.timeout(900)
def test_teardown_finds_container_processes_by_cgroup(docker_images: DockerImages) -> None:
    # What stop_engine kills when a crashed engine left containers running unsupervised.
    if not docker_images.engine.started or docker_images.engine.root is None:
        pytest.skip("the engine was not started by ensure_engine, so its data root is not ours to inspect")
    image = docker_images.images["PYTHON_BASE_IMAGE"]
    script = "import time\nwhile True: time.sleep(60)"
    with running_container(image, "python3", "-c", script) as container:
        wait_until(
            lambda: docker("inspect", "--format", "{{.State.Running}}", container).stdout.strip() == "true",
            timeout=30,
            what="container running",
            describe=lambda: "",
        )
        pid = int(docker("inspect", "--format", "{{.State.Pid}}", container).stdout.strip())
        assert pid in _container_processes(Path(docker_images.engine.root) / "data")

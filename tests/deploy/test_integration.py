"""The local stack for real: Temporal and the S3 server started by the deploy tool on free ports in a temporary
state dir, a workflow run against that Temporal, an object written and read back, and nothing left after down."""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from minio import Minio
from temporalio.worker import Worker

from deploy.local import LocalStack
from deploy.ports import Ports, port_is_free
from deploy.process import PidRecord, group_members, is_running
from services.shared.settings import TemporalSettings
from services.shared.temporal import connect

from .conftest import deploy_tool
from .throwaway_workflow import Greeting, GreetingWorkflow, compose_greeting

pytestmark = pytest.mark.integration


def probe(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.probe", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _records(state_dir: Path) -> list[PidRecord]:
    return [PidRecord.from_json(p.read_text()) for p in sorted((state_dir / "run").glob("*.json"))]


def _assert_nothing_left(state_dir: Path, records: list[PidRecord]) -> None:
    assert records, "expected pid files while the stack was up"
    for record in records:
        assert not is_running(record), f"{record.name} (pid {record.pid}) still runs"
        assert group_members(record.pgid) == [], f"{record.name}'s process group still has members"
        busy = [p for p in record.ports if not port_is_free(p)]
        assert busy == [], f"{record.name}'s ports {busy} are still in use"
    assert list((state_dir / "run").glob("*.json")) == []
    assert not (state_dir / "deploy.lock").exists()
    assert not (state_dir / "stack.json").exists()


async def test_local_middleware_runs_a_workflow_and_stores_objects(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    out = io.StringIO()
    stack = LocalStack(state_dir, Ports.free(), ["middleware"], middleware=["temporal", "minio"], out=out)
    records: list[PidRecord] = []
    try:
        stack.up()
        progress = out.getvalue()
        assert f"waiting for temporal ({stack.ports.temporal})... ready in" in progress
        assert f"waiting for minio ({stack.ports.s3})... ready in" in progress
        assert stack.secrets.report_token not in progress

        statuses = stack.status()
        assert [(s.name, s.state, s.healthy) for s in statuses] == [
            ("temporal", "running", True),
            ("minio", "running", True),
        ], statuses
        records = _records(state_dir)

        client = await connect(TemporalSettings(address=stack.temporal_address))
        queue = f"deploy-test-{uuid.uuid4()}"
        async with Worker(client, task_queue=queue, workflows=[GreetingWorkflow], activities=[compose_greeting]):
            result = await client.execute_workflow(
                GreetingWorkflow.run,
                Greeting(name="deploy", times=2),
                id=f"greeting-{uuid.uuid4()}",
                task_queue=queue,
                execution_timeout=timedelta(seconds=60),
            )
            # The container healthcheck of a worker: Temporal's address from the environment, as the worker's.
            probe_env = {**os.environ, "TEMPORAL_ADDRESS": stack.temporal_address}
            served = await asyncio.to_thread(probe, probe_env, "task-queue", queue)
            unserved = await asyncio.to_thread(probe, probe_env, "task-queue", f"{queue}-nobody")
        assert result == "hello deploy hello deploy"
        assert served.returncode == 0, served.stdout + served.stderr
        assert f"poller(s) on task queue {queue}" in served.stdout
        assert unserved.returncode == 1
        assert f"no poller on task queue {queue}-nobody" in unserved.stderr

        s3 = Minio(
            stack.s3_endpoint,
            access_key=stack.secrets.s3_access_key,
            secret_key=stack.secrets.s3_secret_key,
            secure=False,
        )
        assert s3.bucket_exists("task-results")
        payload = b"object written through the stack's S3 server"
        s3.put_object("task-results", "deploy-test/object.bin", io.BytesIO(payload), len(payload))
        response = s3.get_object("task-results", "deploy-test/object.bin")
        try:
            assert response.read() == payload
        finally:
            response.close()
            response.release_conn()
        # Wrong credentials are refused: the stand-in checks signatures like MinIO.
        wrong = Minio(stack.s3_endpoint, access_key=stack.secrets.s3_access_key, secret_key="x" * 30, secure=False)
        with pytest.raises(Exception, match="SignatureDoesNotMatch"):
            wrong.bucket_exists("task-results")
    finally:
        stack.down()
    _assert_nothing_left(state_dir, records)


def test_cli_up_status_down(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    base = ["--mode", "local", "--state-dir", str(state_dir)]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*deploy_tool(), *args], capture_output=True, text=True, timeout=180)

    records: list[PidRecord] = []
    try:
        up = run("up", *base, "--only", "middleware", "--free-ports")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "waiting for temporal (" in up.stdout and "dev API key (user dev): dev-" in up.stdout
        secrets = (state_dir / "secrets.env").read_text()
        for name in (
            "REPORT_TOKEN",
            "NATS_MAIN_PASSWORD",
            "NATS_COMMUNICATION_PASSWORD",
            "CALLBACK_KEY",
            "REALTIME_SECRET",
            "S3_SECRET_KEY",
        ):
            line = next(line for line in secrets.splitlines() if line.startswith(f"{name}="))
            assert line.split("=", 1)[1] not in up.stdout + up.stderr, name
        records = _records(state_dir)

        # The pids survive the CLI that started them; status reads the recorded ports and components.
        status = run("status", "--state-dir", str(state_dir))
        assert status.returncode == 0, status.stdout + status.stderr
        assert "mode: local (used by the last `up`" in status.stdout
        assert re.search(r"^temporal\s+running\s+healthy\s+SERVING", status.stdout, re.MULTILINE), status.stdout
        assert re.search(r"^minio\s+running\s+healthy\s+bucket task-results", status.stdout, re.MULTILINE)

        logs = run("logs", "temporal", "-n", "5", *base)
        assert logs.returncode == 0, logs.stderr
        assert logs.stdout.strip()

        again = run("up", *base, "--only", "middleware")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "temporal: already running" in again.stdout
    finally:
        down = run("down", *base)
    assert down.returncode == 0, down.stdout + down.stderr
    _assert_nothing_left(state_dir, records)
    after = run("status", *base, "--only", "middleware")
    assert after.returncode == 1

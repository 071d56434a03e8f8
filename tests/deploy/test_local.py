"""The local mode's parts that need no running stack: ports, secrets, the environment contract, pid files,
the state lock, and the CLI's answers when nothing runs."""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import catalog, credentials
from deploy.docker import DockerStack
from deploy.errors import DeployError, UsageError
from deploy.local import LocalStack
from deploy.nats_auth import authorization
from deploy.ports import WEED_GRPC_OFFSET, Ports, free_port, parse_port_overrides, port_is_free
from deploy.process import PidRecord, StateLock, is_running, start_ticks
from deploy.services import local_environment
from deploy.spec import Health, LocalContext, ProcessSpec
from services.shared.event_stream import PUBLISHER, READER
from services.shared.settings import Env

from .conftest import deploy_tool


def test_free_ports_are_distinct_and_free() -> None:
    ports = Ports.free()
    values = list(ports.as_dict().values())
    weed = [getattr(ports, f) for f in Ports.WEED_FIELDS]
    everything = values + [p + WEED_GRPC_OFFSET for p in weed]
    assert len(set(everything)) == len(everything)
    assert all(port_is_free(p) for p in everything)


def test_port_overrides() -> None:
    assert parse_port_overrides(["temporal=17233", "temporal-ui=18233"]) == {"temporal": 17233, "temporal_ui": 18233}
    assert Ports().replace(main=9100).main == 9100
    with pytest.raises(UsageError, match="NAME=NUMBER"):
        parse_port_overrides(["redis=6379"])
    with pytest.raises(UsageError, match="not a number"):
        parse_port_overrides(["main=http"])


def test_secrets_are_created_private_and_reused(tmp_path: Path) -> None:
    first = credentials.load_or_create(tmp_path)
    path = tmp_path / credentials.FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert credentials.load_or_create(tmp_path) == first
    nats = [first.nats_password(user) for user in (PUBLISHER, READER)]
    assert not any(value in repr(first) for value in (first.report_token, *nats, first.postgres_password))
    assert len({first.report_token, *nats}) == 3
    assert first["API_KEYS"] == f"{first.dev_api_key}:dev"
    # Every generated secret is accepted outside development mode (S3's access key names an account).
    for name, value in first.values.items():
        if name != "S3_ACCESS_KEY":
            Env({}).check_secret(name, value)


def test_a_store_that_lacks_a_secret_gets_it_and_keeps_the_others(tmp_path: Path) -> None:
    (tmp_path / credentials.FILE_NAME).write_text("REALTIME_SECRET=kept-realtime-secret-0123456789abcdef\n")
    secrets = credentials.load_or_create(tmp_path)
    assert secrets.realtime_secret == "kept-realtime-secret-0123456789abcdef"
    assert set(credentials.GENERATORS) <= set(secrets.values)
    assert credentials.load_or_create(tmp_path) == secrets


def test_rotation_keeps_the_previous_token_until_it_is_retired(tmp_path: Path) -> None:
    before = credentials.load_or_create(tmp_path)
    credentials.rotate(tmp_path, "REPORT_TOKEN")
    rotated = credentials.load_or_create(tmp_path)
    assert rotated.get("REPORT_TOKEN_PREVIOUS") == before.report_token != rotated.report_token
    assert rotated.nats_password(PUBLISHER) == before.nats_password(PUBLISHER)
    assert credentials.retire(tmp_path, "REPORT_TOKEN") is True
    assert credentials.load_or_create(tmp_path).get("REPORT_TOKEN_PREVIOUS") is None
    assert credentials.retire(tmp_path, "REPORT_TOKEN") is False
    with pytest.raises(DeployError, match="S3_SECRET_KEY cannot be rotated"):
        credentials.rotate(tmp_path, "S3_SECRET_KEY")


def test_a_nats_password_is_replaced_and_the_nats_users_follow(tmp_path: Path) -> None:
    """NATS takes one password per user: rotating one replaces it, and the server's users file has the new one."""
    before = credentials.load_or_create(tmp_path)
    credentials.rotate(tmp_path, "NATS_MAIN_PASSWORD")
    after = credentials.load_or_create(tmp_path)
    assert after.nats_password(PUBLISHER) != before.nats_password(PUBLISHER)
    assert after.get("NATS_MAIN_PASSWORD_PREVIOUS") is None
    assert after.nats_password(READER) == before.nats_password(READER)
    users = {u["user"]: u["password"] for u in json.loads(authorization(after.values))["authorization"]["users"]}
    assert users == {PUBLISHER: after.nats_password(PUBLISHER), READER: after.nats_password(READER)}


def test_init_writes_each_service_only_its_own_secrets(tmp_path: Path) -> None:
    store, main, worker = tmp_path / "store", tmp_path / "main", tmp_path / "worker"
    worker.mkdir()
    (worker / "stale").write_text("a secret this service no longer reads")
    uid = os.getuid()
    argv = [
        "--store",
        str(store),
        "init",
        "--service",
        str(main),
        str(uid),
        "API_KEYS,REPORT_TOKEN,REPORT_TOKEN_PREVIOUS",
    ]
    argv += ["--service", str(worker), str(uid), "REPORT_TOKEN"]
    assert credentials.main([*argv]) == 0
    secrets = credentials.load_or_create(store)
    assert sorted(p.name for p in main.iterdir()) == ["api_keys", "report_token"]  # no rotation under way
    assert (main / "api_keys").read_text() == f"{secrets.dev_api_key}:dev"
    assert [p.name for p in worker.iterdir()] == ["report_token"]
    assert (worker / "report_token").read_text() == secrets.report_token
    assert stat.S_IMODE((worker / "report_token").stat().st_mode) == 0o400
    credentials.rotate(store, "REPORT_TOKEN")
    assert credentials.main([*argv]) == 0
    assert (main / "report_token_previous").read_text() == secrets.report_token


def _ctx(tmp_path: Path, environ: dict[str, str]) -> LocalContext:
    return LocalContext(state_dir=tmp_path, ports=Ports(), secrets=credentials.generate(), environ=environ)


def test_service_environment_contract(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path, Ports(), middleware=["temporal", "minio"], environ={"PATH": "/usr/bin"})
    env = stack.service_env()
    secrets = stack.secrets
    assert env["TEMPORAL_ADDRESS"] == "127.0.0.1:7233"
    assert env["TEMPORAL_NAMESPACE"] == "default"
    assert env["TEMPORAL_UI_URL"] == "http://127.0.0.1:8233"
    assert env["S3_ENDPOINT"] == env["S3_PUBLIC_ENDPOINT"] == "127.0.0.1:9000"
    assert (env["S3_ACCESS_KEY"], env["S3_SECRET_KEY"]) == (secrets.s3_access_key, secrets.s3_secret_key)
    assert env["S3_BUCKET"] == "task-results" and env["S3_SECURE"] == "false"
    assert env["MAIN_INTERNAL_URL"] == "http://127.0.0.1:8010"
    assert env["MAIN_PUBLIC_URL"] == "http://127.0.0.1:8000"
    assert env["REALTIME_PUBLIC_URL"] == "ws://127.0.0.1:8001/ws"
    assert (env["MAIN_PORT"], env["COMMUNICATION_PORT"], env["SIMULATOR_PORT"]) == ("8000", "8001", "8002")
    assert (env["MAIN_INTERNAL_PORT"], env["COMMUNICATION_INTERNAL_PORT"]) == ("8010", "8011")
    assert env["REPORT_TOKEN"] == secrets.report_token
    assert env["NATS_MAIN_PASSWORD"] == secrets.nats_password(PUBLISHER)
    assert env["NATS_COMMUNICATION_PASSWORD"] == secrets.nats_password(READER)
    # PostgreSQL is not used: its password goes to nobody.
    assert "POSTGRES_PASSWORD" not in env
    assert env["CALLBACK_KEY"] == secrets["CALLBACK_KEY"]
    assert env["REALTIME_SECRET"] == secrets.realtime_secret
    assert env["DEVELOPMENT_MODE"] == "true"
    assert env["API_KEYS"] == f"{secrets.dev_api_key}:dev"
    assert env["DATABASE_URL"] == f"sqlite+aiosqlite:///{tmp_path / 'main.db'}"
    # No provider keys: the simulator, named explicitly, stands in; its plain-http media links may be fetched.
    assert env["PROVIDER_SIMULATOR_URL"] == "http://127.0.0.1:8002"
    assert (env["OUTBOUND_ALLOW_HTTP"], env["OUTBOUND_ALLOWED_HOSTS"]) == ("true", "127.0.0.1:8002")
    assert not {"GEMINI_API_KEY", "GEMINI_BASE_URL", "ARK_API_KEY", "ARK_BASE_URL", "INTEGRATIONS_BLACKLIST"} & set(env)
    assert env["PATH"] == "/usr/bin"


def test_provider_keys_and_blacklist_pass_through(tmp_path: Path) -> None:
    environ = {
        "GEMINI_API_KEY": "g-key",
        "GEMINI_BASE_URL": "https://gemini.example",
        "ARK_API_KEY": "a-key",
        "INTEGRATIONS_BLACKLIST": "example*,echo",
    }
    env = local_environment(_ctx(tmp_path, environ), [])
    assert env["GEMINI_API_KEY"] == "g-key" and env["GEMINI_BASE_URL"] == "https://gemini.example"
    assert env["ARK_API_KEY"] == "a-key" and "ARK_BASE_URL" not in env
    assert env["INTEGRATIONS_BLACKLIST"] == "example*,echo"
    # Each worker gets its own provider's variables, from its manifest, and only those.
    stack = LocalStack(tmp_path, Ports(), middleware=["temporal", "minio"], environ=environ)
    specs = {s.name: s.env for s in stack.specs()}
    assert specs["worker-nanobanana2-image"]["GEMINI_API_KEY"] == "g-key"
    assert specs["worker-fangzhou-video-generation"]["ARK_API_KEY"] == "a-key"
    assert "ARK_API_KEY" not in specs["worker-nanobanana2-image"]
    assert "GEMINI_API_KEY" not in specs["worker-fangzhou-video-generation"]


def test_api_keys_from_the_caller_are_served_next_to_the_dev_key(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, {"API_KEYS": "alice-key:alice,bob-key:bob"})
    env = local_environment(ctx, [])
    assert env["API_KEYS"] == f"{ctx.secrets.dev_api_key}:dev,alice-key:alice,bob-key:bob"
    # In docker mode the stack's `secrets` service does the same with API_KEYS from the environment.
    docker_env = DockerStack(tmp_path, environ={"API_KEYS": "alice-key:alice"}).compose_env()
    assert docker_env["API_KEYS"] == "alice-key:alice"
    assert not (tmp_path / credentials.FILE_NAME).exists(), "docker mode keeps its secrets in a volume"


def test_each_local_process_gets_its_own_contract(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path, Ports(), middleware=["temporal", "minio"], environ={})
    specs = {s.name: s for s in stack.specs()}
    secrets = stack.secrets
    assert "S3_SECRET_KEY" not in specs["communication"].env and "REPORT_TOKEN" not in specs["communication"].env
    assert specs["communication"].env["NATS_COMMUNICATION_PASSWORD"] == secrets.nats_password(READER)
    assert "NATS_MAIN_PASSWORD" not in specs["communication"].env
    assert specs["main"].env["NATS_MAIN_PASSWORD"] == secrets.nats_password(PUBLISHER)
    assert "NATS_COMMUNICATION_PASSWORD" not in specs["main"].env
    assert "S3_SECRET_KEY" not in specs["simulator"].env and "NATS_MAIN_PASSWORD" not in specs["simulator"].env
    assert specs["worker-echo"].env["REPORT_TOKEN"] == secrets.report_token
    assert not any(name.startswith("NATS_") for name in specs["worker-echo"].env)
    assert "API_KEYS" not in specs["worker-echo"].env
    assert not {"GEMINI_BASE_URL", "PROVIDER_SIMULATOR_URL", "OUTBOUND_ALLOWED_HOSTS"} & set(specs["worker-echo"].env)
    image = specs["worker-nanobanana2-image"].env
    assert image["PROVIDER_SIMULATOR_URL"] == stack.simulator_url
    assert image["OUTBOUND_ALLOWED_HOSTS"] == stack.simulator_url.removeprefix("http://")
    assert not {"GEMINI_API_KEY", "GEMINI_BASE_URL", "ARK_BASE_URL"} & set(image)
    assert "CALLBACK_KEY" in specs["main"].env and "CALLBACK_KEY" not in image
    assert specs["main"].ports == (8000, 8010) and specs["communication"].ports == (8001, 8011)


def test_component_selection(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path, Ports(), middleware=["temporal", "minio"])
    assert [s.name for s in stack.specs(["middleware"])] == ["temporal", "minio"]
    assert [s.name for s in stack.specs(["services"])] == ["simulator", "communication", "main"]
    assert [s.name for s in stack.specs(["minio", "main"])] == ["minio", "main"]
    assert all(s.kind == "worker" for s in stack.specs(["workers"]))
    with pytest.raises(UsageError, match="unknown component 'redis'"):
        stack.specs(["redis"])


class OtherTemporal(catalog.Temporal):
    DYNAMIC_CONFIG = ("matching.enableFairness=false",)


def test_replacing_runs_the_given_middleware_instead_of_the_catalogs(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path, Ports(), middleware=["temporal", "minio"], replacing=[OtherTemporal()])
    temporal, minio = stack.specs(["middleware"])
    argv = list(temporal.argv)
    assert [argv[i + 1] for i, arg in enumerate(argv) if arg == "--dynamic-config-value"] == [
        "matching.enableFairness=false"
    ]
    assert minio.argv == catalog.CATALOG["minio"].local_process(stack.context()).argv
    # Only this stack's: the catalog keeps its own.
    assert "matching.enableFairness=true" in catalog.CATALOG["temporal"].local_process(stack.context()).argv


def test_status_reports_stale_pid_file_and_down_removes_it(tmp_path: Path) -> None:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    record = PidRecord("temporal", "middleware", done.pid, done.pid, 1, (), "")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "temporal.json").write_text(record.to_json())
    assert not is_running(record)

    out = io.StringIO()
    stack = LocalStack(tmp_path, Ports.free(), ["middleware"], middleware=["temporal"], out=out)
    [status] = stack.status()
    assert (status.state, status.healthy) == ("stopped", False)
    assert "stale pid file" in status.detail
    assert not (tmp_path / credentials.FILE_NAME).exists(), "status must not create secrets"
    stack.down()
    assert list((tmp_path / "run").iterdir()) == []
    assert not (tmp_path / "deploy.lock").exists()


def test_up_with_a_busy_port_starts_nothing(tmp_path: Path) -> None:
    ports = Ports.free()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", ports.temporal))
        busy.listen()
        stack = LocalStack(tmp_path, ports, ["middleware"], middleware=["temporal", "minio"], out=io.StringIO())
        with pytest.raises(DeployError, match=f"nothing was started:\n  temporal: port\\(s\\) {ports.temporal}"):
            stack.up()
    assert list((tmp_path / "run").glob("*.json")) == []


def test_pid_record_round_trip_and_identity() -> None:
    record = PidRecord("main", "service", os.getpid(), os.getpgid(0), start_ticks(os.getpid()), (8000,), "main.log")
    assert PidRecord.from_json(record.to_json()) == record
    assert is_running(record)
    # A pid reused by another process (different start time) is not ours.
    assert not is_running(PidRecord("main", "service", os.getpid(), 0, (record.start_ticks or 0) + 1, (), ""))


def test_state_lock_is_exclusive_and_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "deploy.lock"
    with StateLock(path).held(), pytest.raises(DeployError, match="another deploy-tool"):
        StateLock(path, timeout=0.2).acquire()
    assert not path.exists()
    with StateLock(path).held():
        assert path.exists()


def test_cli_status_exits_non_zero_when_down(tmp_path: Path) -> None:
    done = subprocess.run(
        [*deploy_tool(), "status", "--mode", "local", "--state-dir", str(tmp_path / "state"), "--only", "middleware"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "temporal" in done.stdout and "not running" in done.stdout
    assert "unhealthy: temporal, minio" in done.stderr


def test_cli_docker_mode_fails_clearly_without_an_engine(tmp_path: Path) -> None:
    # No docker CLI on PATH: no engine can answer.
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run(
        [*deploy_tool(), "up", "--mode", "docker", "--state-dir", str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 1
    assert "no Docker engine answers" in done.stderr


def test_cli_auto_mode_says_why(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run(
        [*deploy_tool(), "status", "--state-dir", str(tmp_path / "state"), "--only", "temporal"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert "mode: local (no Docker engine answers)" in done.stdout
    assert done.returncode == 1


def test_docker_status_reads_compose_ps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [
        {"Service": "temporal", "State": "running", "Health": "healthy", "ExitCode": 0},
        {"Service": "minio", "State": "running", "Health": "starting", "ExitCode": 0},
        {"Service": "create-bucket", "State": "exited", "Health": "", "ExitCode": 0},
        {"Service": "main", "State": "exited", "Health": "", "ExitCode": 3},
    ]
    stack = DockerStack(tmp_path)
    monkeypatch.setattr(stack, "_ps", lambda env: rows)
    statuses = {s.name: s for s in stack._status({})}
    assert statuses["temporal"].ok and statuses["temporal"].kind == "middleware"
    assert not statuses["minio"].ok
    assert statuses["create-bucket"].ok and statuses["create-bucket"].detail == "completed"
    assert not statuses["main"].ok and statuses["main"].detail == "exited with code 3"
    assert statuses["communication"].detail == "not created"


# Fails its first ``FAILS`` starts (counted in a file), then serves: as the dev server does when it loses the race
# for one of the internal ports it picks itself.
FLAKY_SERVER = """
import pathlib, socket, sys, time
count = pathlib.Path(sys.argv[1])
starts = int(count.read_text()) + 1 if count.exists() else 1
count.write_text(str(starts))
if starts <= int(sys.argv[3]):
    sys.exit(3)
with socket.create_server(("127.0.0.1", int(sys.argv[2]))) as server:
    time.sleep(600)
"""


class FlakyTemporal(catalog.Temporal):
    def __init__(self, fails: int) -> None:
        self.fails = fails

    def local_process(self, ctx: LocalContext) -> ProcessSpec:
        port = ctx.ports.temporal
        argv = (sys.executable, "-c", FLAKY_SERVER, str(ctx.state_dir / "starts"), str(port), str(self.fails))
        return ProcessSpec(
            name=self.name,
            kind="middleware",
            argv=argv,
            env={},
            ports=(port,),
            main_port=port,
            ready=lambda: Health(not port_is_free(port), "listening"),
            start_attempts=3,
            ready_timeout=10,
        )


def test_a_process_that_exits_while_starting_is_started_again(tmp_path: Path) -> None:
    out = io.StringIO()
    stack = LocalStack(
        tmp_path, Ports.free(), components=["temporal"], middleware=["temporal"], replacing=[FlakyTemporal(2)], out=out
    )
    with stack:
        assert [s.state for s in stack.status()] == ["running"]
        assert (tmp_path / "starts").read_text() == "3"
    assert "starting it again (3/3)" in out.getvalue()


def test_a_process_that_keeps_exiting_fails_the_start_after_its_attempts(tmp_path: Path) -> None:
    stack = LocalStack(
        tmp_path, Ports.free(), components=["temporal"], middleware=["temporal"], replacing=[FlakyTemporal(3)]
    )
    with pytest.raises(DeployError, match="temporal exited with code 3 while starting"):
        stack.up()
    assert (tmp_path / "starts").read_text() == "3"
    assert [s.state for s in stack.status()] == ["stopped"]


def test_free_ports_are_below_the_kernels_range_for_outgoing_connections() -> None:
    first_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = Ports.free()
    weed = [getattr(ports, f) + WEED_GRPC_OFFSET for f in Ports.WEED_FIELDS]
    assert all(p < first_ephemeral for p in [*ports.as_dict().values(), *weed, free_port()])

from __future__ import annotations

import json
import os
import signal
import stat
from pathlib import Path

import pytest

from deploy import catalog, config, paths
from deploy.cli import main
from deploy.credentials import generate
from deploy.errors import DeployError, UsageError
from deploy.nats_auth import authorization
from deploy.ports import WEED_GRPC_OFFSET, Ports
from deploy.spec import LocalContext
from services.shared.event_stream import PUBLISHER, READER


def _ctx(tmp_path: Path) -> LocalContext:
    return LocalContext(state_dir=tmp_path, ports=Ports(), secrets=generate(), environ={})


def test_catalog_has_temporal_minio_nats_and_postgres() -> None:
    assert list(catalog.CATALOG) == ["temporal", "minio", "nats", "postgres"]
    for name, entry in catalog.CATALOG.items():
        assert entry.name == name
        assert entry.summary


# What priority and fairness need from the dev server (tests/flow_control checks that they take effect).
FAIR_DISPATCH = (
    "matching.useNewMatcher=true",
    "matching.enableFairness=true",
    "matching.numTaskqueueReadPartitions=1",
    "matching.numTaskqueueWritePartitions=1",
)


def test_unknown_middleware_names_the_known_ones() -> None:
    with pytest.raises(UsageError, match="known: temporal, minio, nats, postgres") as info:
        catalog.get("redis")
    assert info.value.exit_code == 2


def test_temporal_local_process(tmp_path: Path) -> None:
    spec = catalog.get("temporal").local_process(_ctx(tmp_path))
    argv = list(spec.argv)
    assert Path(argv[0]).name == "temporal"
    assert argv[1:3] == ["server", "start-dev"]
    assert argv[argv.index("--ip") + 1] == "127.0.0.1"
    assert argv[argv.index("--db-filename") + 1] == str(tmp_path / "temporal.db")
    pragmas = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--sqlite-pragma"]
    assert pragmas == ["journal_mode=wal", "synchronous=normal"]
    dynamic = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--dynamic-config-value"]
    assert dynamic == list(FAIR_DISPATCH)
    # Every port explicit, so nothing the dev server picks at random can collide with ours.
    for flag, port in (("--port", 7233), ("--ui-port", 8233), ("--http-port", 7243), ("--metrics-port", 7244)):
        assert argv[argv.index(flag) + 1] == str(port)
        assert port in spec.ports


def test_minio_local_process_is_weed_mini_with_every_port(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    spec = catalog.get("minio").local_process(ctx)
    argv = list(spec.argv)
    assert Path(argv[0]).name == "weed"
    assert argv[1] == "mini"
    for flag in (
        f"-dir={tmp_path / 's3'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-s3.port=9000",
        "-master.port=9333",
        "-volume.port=9340",
        "-filer.port=8888",
        "-admin.port=23646",
        "-admin.ui=false",
        "-webdav=false",
        "-master.telemetry=false",
        "-s3.allowDeleteBucketNotEmpty=false",
        "-s3.autoCreateBucket=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
    ):
        assert flag in argv
    for port in (9000, 9333, 9340, 8888, 23646):
        assert port in spec.ports
        assert port + WEED_GRPC_OFFSET in spec.ports
    assert spec.env == {
        "AWS_ACCESS_KEY_ID": ctx.secrets.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": ctx.secrets.s3_secret_key,
    }
    assert spec.after_start is not None


def test_temporal_compose_service() -> None:
    services = catalog.get("temporal").compose_services()
    temporal = services["temporal"]
    assert temporal["image"] == "${TEMPORAL_IMAGE:-temporalio/temporal:1.9.1}"
    assert temporal["init"] is True
    command = temporal["command"]
    assert command[:2] == ["server", "start-dev"]
    assert command[command.index("--ip") + 1] == "0.0.0.0"
    assert command[command.index("--db-filename") + 1] == "/data/temporal.db"
    assert "journal_mode=wal" in command and "synchronous=normal" in command
    assert [command[i + 1] for i, arg in enumerate(command) if arg == "--dynamic-config-value"] == list(FAIR_DISPATCH)
    assert temporal["volumes"] == ["temporal-data:/data"]
    assert temporal["healthcheck"]["test"][1:5] == ["temporal", "operator", "cluster", "health"]
    # The UI only: the frontend's gRPC port has no authentication.
    assert temporal["ports"] == ["${PUBLISH_IP:-127.0.0.1}:${TEMPORAL_UI_HOST_PORT:-8233}:8233"]


def test_minio_compose_services_create_the_bucket_with_the_app_image() -> None:
    services = catalog.get("minio").compose_services()
    assert services["minio"]["image"].startswith("${MINIO_IMAGE:-minio/minio:RELEASE.")
    assert "/minio/health/live" in services["minio"]["healthcheck"]["test"][-1]
    bucket = services["create-bucket"]
    assert bucket["image"] == catalog.APP_IMAGE
    assert bucket["command"] == ["python", "-m", "deploy.create_bucket"]
    assert bucket["depends_on"] == {"minio": {"condition": "service_healthy"}}
    assert catalog.get("minio").compose_ready() == {"create-bucket": "service_completed_successfully"}


def test_nats_local_process_and_compose_service(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    nats = catalog.get("nats")
    spec = nats.local_process(ctx)
    argv = list(spec.argv)
    assert Path(argv[0]).name == "nats-server"
    assert "-js" in argv
    assert argv[argv.index("-sd") + 1] == str(tmp_path / "nats")
    assert argv[argv.index("-a") + 1] == "127.0.0.1"
    assert spec.ports == (ctx.ports.nats, ctx.ports.nats_monitor)
    # The passwords go into a private config file, never onto the command line.
    passwords = [ctx.secrets.nats_password(user) for user in (PUBLISHER, READER)]
    assert not any(p in " ".join(argv) for p in passwords)
    assert spec.prepare is not None
    spec.prepare()
    config_file = tmp_path / "nats.conf"
    assert argv[argv.index("-c") + 1] == str(config_file)
    assert config_file.read_text() == authorization(ctx.secrets.values)
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    assert nats.local_app_env(ctx) == {"NATS_URL": f"nats://127.0.0.1:{ctx.ports.nats}"}
    service = nats.compose_services()["nats"]
    assert service["image"] == "${NATS_IMAGE:-nats:2.15.1-alpine}"
    assert service["volumes"] == ["nats-data:/data", "secrets-nats:/run/secrets:ro"]
    assert service["command"][:2] == ["-c", "/run/secrets/nats_auth"]
    assert "ports" not in service
    assert nats.compose_app_env() == {"NATS_URL": "nats://nats:4222"}
    assert nats.compose_secrets() == ("NATS_MAIN_PASSWORD", "NATS_COMMUNICATION_PASSWORD")


def test_postgres_local_process(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    postgres = catalog.get("postgres")
    spec = postgres.local_process(ctx)
    argv = list(spec.argv)
    assert Path(argv[0]).name == "postgres"
    assert argv[argv.index("-D") + 1] == str(tmp_path / "postgres")
    assert argv[argv.index("-p") + 1] == str(ctx.ports.postgres)
    assert "listen_addresses=127.0.0.1" in argv
    assert spec.stop_signal == signal.SIGINT
    assert spec.prepare is not None
    # PostgreSQL refuses root: a root deploy tool runs it as the postgres user.
    assert spec.user == ("postgres" if os.geteuid() == 0 else None)
    # The password is main's POSTGRES_PASSWORD, not part of the URL.
    url = postgres.local_app_env(ctx)["DATABASE_URL"]
    assert url == f"postgresql+asyncpg://postgres@127.0.0.1:{ctx.ports.postgres}/main"
    service = postgres.compose_services()["postgres"]
    assert service["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert postgres.compose_secret_readers() == {"postgres": (999, ("POSTGRES_PASSWORD",))}
    # Not enabled, it is not expected elsewhere: main keeps SQLite.
    assert not postgres.external_when_disabled


def test_config_add_remove_are_idempotent(config_copy: Path) -> None:
    assert config.load(config_copy).enabled == ("temporal", "minio", "nats")
    assert config.remove("temporal", config_copy) is True
    assert config.remove("temporal", config_copy) is False
    assert config.load(config_copy).enabled == ("minio", "nats")
    assert config.add("temporal", config_copy) is True
    before = config_copy.read_bytes()
    assert config.add("temporal", config_copy) is False
    assert config_copy.read_bytes() == before
    # Written in catalog order whatever the order of the commands.
    assert config.load(config_copy).enabled == ("temporal", "minio", "nats")


def test_config_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "middleware.json"
    for enabled in ((), ("temporal",), ("minio",), ("temporal", "minio")):
        config.save(config.MiddlewareConfig(enabled), path)
        assert config.load(path) == config.MiddlewareConfig(enabled)
        assert json.loads(path.read_text())["enabled"] == list(enabled)


def test_committed_config_enables_temporal_minio_and_nats() -> None:
    assert config.load().enabled == ("temporal", "minio", "nats")
    assert config.dumps(config.load()) == paths.CONFIG_FILE.read_text()


def test_config_rejects_unknown_and_malformed(tmp_path: Path) -> None:
    path = tmp_path / "middleware.json"
    path.write_text('{"enabled": ["temporal", "kafka"]}')
    with pytest.raises(DeployError, match="unknown middleware 'kafka'"):
        config.load(path)
    path.write_text('{"enabled": "temporal"}')
    with pytest.raises(DeployError, match="invalid middleware config"):
        config.load(path)


def test_cli_middleware_commands(config_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["middleware", "--config", str(config_copy), "list"]) == 0
    listing = capsys.readouterr().out
    assert "temporal  yes" in listing and "minio     yes" in listing and "postgres  no" in listing

    assert main(["middleware", "--config", str(config_copy), "remove", "minio"]) == 0
    assert "minio: disabled" in capsys.readouterr().out
    assert main(["middleware", "--config", str(config_copy), "add", "minio"]) == 0
    assert "minio: enabled" in capsys.readouterr().out
    assert main(["middleware", "--config", str(config_copy), "add", "minio"]) == 0
    assert "already enabled" in capsys.readouterr().out

    assert main(["middleware", "--config", str(config_copy), "add", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown middleware 'nope'" in err and "temporal, minio" in err
    assert config.load(config_copy).enabled == ("temporal", "minio", "nats")

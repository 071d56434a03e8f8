"""The MinIO-compatible entrypoint's translation of MinIO's command line and environment (no Docker needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from offline_docker import minio_compat as entrypoint


def test_compose_command_line_and_root_credentials() -> None:
    config = entrypoint.parse(
        ["server", "/data", "--console-address", ":9001"],
        {"MINIO_ROOT_USER": "admin", "MINIO_ROOT_PASSWORD": "password123"},
    )
    assert (config.data_dir, config.host, config.port) == ("/data", "0.0.0.0", 9000)
    assert config.console_address == ":9001"
    env = entrypoint.weed_environment(config, {"MINIO_ROOT_PASSWORD": "password123", "PATH": "/bin"})
    assert env == {"AWS_ACCESS_KEY_ID": "admin", "AWS_SECRET_ACCESS_KEY": "password123", "PATH": "/bin"}


def test_weed_command_gives_every_port_and_minio_semantics() -> None:
    config = entrypoint.parse(["minio", "server", "--address=127.0.0.1:9100", "/srv/s3"], {})
    argv = entrypoint.weed_command(config, "weed")
    assert argv[:3] == ["weed", "mini", "-dir=/srv/s3"]
    for flag in (
        "-s3.allowDeleteBucketNotEmpty=false",
        "-s3.autoCreateBucket=false",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-ip.bind=127.0.0.1",
    ):
        assert flag in argv
    ports = {arg.split("=")[0]: int(arg.split("=")[1]) for arg in argv if ".port" in arg and arg[-1].isdigit()}
    for name in ("s3", "master", "volume", "filer", "admin"):
        assert f"-{name}.port" in ports
    assert 9100 not in ports.values()
    assert (config.host, config.port) == ("127.0.0.1", 9100)


def test_testcontainers_style_legacy_keys_and_defaults() -> None:
    config = entrypoint.parse(
        ["server", "/data", "--address", ":9000"], {"MINIO_ACCESS_KEY": "legacy", "MINIO_SECRET_KEY": "legacysecret"}
    )
    assert (config.access_key, config.secret_key) == ("legacy", "legacysecret")
    default = entrypoint.parse(["server", "/data"], {})
    assert (default.access_key, default.secret_key) == ("minioadmin", "minioadmin")


def test_credentials_from_files(tmp_path: Path) -> None:
    (tmp_path / "user").write_text("fileuser\n")
    (tmp_path / "password").write_text("filepassword\n")
    env = {"MINIO_ROOT_USER_FILE": str(tmp_path / "user"), "MINIO_ROOT_PASSWORD_FILE": str(tmp_path / "password")}
    config = entrypoint.parse(["server", "/data"], env)
    assert (config.access_key, config.secret_key) == ("fileuser", "filepassword")


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["server", "/data"], {"MINIO_ROOT_PASSWORD": "short"}, "at least 8"),
        (["server", "/data"], {"MINIO_ROOT_USER": "ab"}, "at least 3"),
        (["server", "/data{1...4}"], {}, "one local data directory"),
        (["server", "/a", "/b"], {}, "one local data directory"),
        (["server", "/data", "--certs-dir", "/certs"], {}, "unsupported option"),
        (["gateway", "s3"], {}, "usage"),
        (["server", "/data", "--address", ":18000"], {}, "used by weed"),
    ],
)
def test_rejects_what_it_cannot_honour(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(entrypoint.UsageError, match=message):
        entrypoint.parse(argv, env)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"GET /minio/health/live HTTP/1.1\r\nHost: x\r\n\r\n", True),
        (b"HEAD /minio/health/ready HTTP/1.1\r\n\r\n", True),
        (b"GET /minio/health/cluster?x=1 HTTP/1.0\r\n\r\n", True),
        (b"GET http://h:9000/minio/health/live HTTP/1.1\r\n\r\n", True),
        (b"PUT /minio/health/live HTTP/1.1\r\n\r\n", False),
        (b"GET /minio/health/liveness HTTP/1.1\r\n\r\n", False),
        (b"GET /bucket/key HTTP/1.1\r\n\r\n", False),
        (b"\x16\x03\x01garbage", False),
    ],
)
def test_health_requests_are_recognised(head: bytes, expected: bool) -> None:
    assert entrypoint._is_health_request(head) is expected

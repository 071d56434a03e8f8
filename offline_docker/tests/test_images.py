"""The images bootstrapped for offline Docker hosts do what compose and the tests expect of them."""

from __future__ import annotations

import io
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from minio import Minio
from minio.error import S3Error

from deploy.paths import IMAGES_ENV_NAME, REPO_ROOT
from offline_docker.images import IMAGE_VARIABLES, bootstrap_images, image_id

from .conftest import DockerImages, container_logs, docker, published_port, running_container, wait_until

# The first test may have to install the engine and build every image (about 3 minutes from scratch).
pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def test_app_image_imports_the_stack_as_a_non_root_user(docker_images: DockerImages) -> None:
    image = docker_images.images["APP_IMAGE"]
    result = docker(
        "run", "--rm", image,
        "python", "-c", "import os, services, temporalio, litestar; print(os.getuid(), services.__file__)",
    )  # fmt: skip
    uid, services_file = result.stdout.split()
    assert int(uid) != 0
    assert services_file == "/app/services/__init__.py"
    # The source is not writable by the service user.
    denied = docker("run", "--rm", image, "touch", "/app/services/x", check=False)
    assert denied.returncode != 0


def test_app_image_healthcheck_script_reports_failure(docker_images: DockerImages) -> None:
    image = docker_images.images["APP_IMAGE"]
    # Nothing listens in a fresh container: the check must fail (exit 1), not crash.
    result = docker("run", "--rm", image, "healthcheck", "http://127.0.0.1:8000/healthz", "1", check=False)
    assert result.returncode == 1, result.stderr


def _temporal_healthy(container: str, address: str = "127.0.0.1:7233") -> bool:
    result = docker("exec", container, "temporal", "operator", "cluster", "health", "--address", address, check=False)
    return result.returncode == 0 and "SERVING" in result.stdout


def test_temporal_image_serves_start_dev_as_non_root(docker_images: DockerImages) -> None:
    image = docker_images.images["TEMPORAL_IMAGE"]
    command = ("server", "start-dev", "--ip", "0.0.0.0", "--db-filename", "/data/temporal.db")
    with running_container(image, *command, options=("-p", "127.0.0.1::7233")) as container:
        wait_until(
            lambda: _temporal_healthy(container),
            timeout=60,
            what="temporal cluster health SERVING",
            describe=lambda: container_logs(container),
        )
        assert docker("exec", container, "id", "-u").stdout.strip() == "1000"
        # The database lives in the writable /data.
        assert docker("exec", container, "test", "-s", "/data/temporal.db", check=False).returncode == 0
        host_cli = Path(sys.executable).parent / "temporal"
        if host_cli.exists():
            port = published_port(container, 7233)
            result = subprocess.run(
                [str(host_cli), "operator", "cluster", "health", "--address", f"127.0.0.1:{port}"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert "SERVING" in result.stdout, result.stderr


def _http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - local test URL
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def test_minio_compat_image_behaves_like_minio(docker_images: DockerImages) -> None:
    image = docker_images.images["MINIO_IMAGE"]
    user, password = "platform-admin", f"secret-{uuid.uuid4().hex}"
    options = ("-p", "127.0.0.1::9000", "-e", f"MINIO_ROOT_USER={user}", "-e", f"MINIO_ROOT_PASSWORD={password}")
    with running_container(image, "server", "/data", "--console-address", ":9001", options=options) as container:
        port = published_port(container, 9000)
        live = f"http://127.0.0.1:{port}/minio/health/live"
        wait_until(
            lambda: _http_status(live) == 200,
            timeout=60,
            what="GET /minio/health/live -> 200",
            describe=lambda: container_logs(container),
        )
        assert _http_status(f"http://127.0.0.1:{port}/minio/health/ready") == 200
        # The check compose uses for real MinIO (bash and /dev/tcp, no curl) works here too.
        probe = (
            'exec 3<>/dev/tcp/127.0.0.1/9000 && printf "GET /minio/health/live HTTP/1.0\\r\\n\\r\\n" >&3'
            ' && read -r s <&3 && [[ $s == *" 200 "* ]]'
        )
        assert docker("exec", container, "bash", "-c", probe, check=False).returncode == 0
        docker("exec", container, "healthcheck", "http://127.0.0.1:9000/minio/health/live")
        assert docker("exec", container, "id", "-u").stdout.strip() != "0"

        client = Minio(f"127.0.0.1:{port}", access_key=user, secret_key=password, secure=False)
        client.make_bucket("image-test")
        payload = b"offline object storage " * 1000
        client.put_object("image-test", "dir/object.txt", io.BytesIO(payload), len(payload))
        response = client.get_object("image-test", "dir/object.txt")
        try:
            assert response.read() == payload
        finally:
            response.close()
            response.release_conn()
        # Presigned URLs are verified by the server itself.
        url = client.presigned_get_object("image-test", "dir/object.txt")
        with urllib.request.urlopen(url, timeout=10) as download:  # noqa: S310 - local test URL
            assert download.read() == payload

        wrong = Minio(f"127.0.0.1:{port}", access_key=user, secret_key="not-the-password", secure=False)
        with pytest.raises(S3Error) as rejected:
            wrong.list_buckets()
        assert rejected.value.code in {"SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied"}
        anonymous = _http_status(f"http://127.0.0.1:{port}/image-test/dir/object.txt")
        assert anonymous == 403


def test_minio_compat_image_rejects_a_short_password(docker_images: DockerImages) -> None:
    image = docker_images.images["MINIO_IMAGE"]
    result = docker("run", "--rm", "-e", "MINIO_ROOT_PASSWORD=short", image, "server", "/data", check=False)
    assert result.returncode != 0
    assert "at least 8 characters" in result.stderr


def test_nginx_image_serves_a_config_from_conf_d_in_the_foreground(docker_images: DockerImages, tmp_path: Path) -> None:
    image = docker_images.images["NGINX_IMAGE"]
    conf = tmp_path / "site.conf"
    conf.write_text("server { listen 8000; location = /healthz { return 200 'ok'; } location / { return 404; } }\n")
    options = ("-p", "127.0.0.1::8000", "-v", f"{conf}:/etc/nginx/conf.d/site.conf:ro")
    with running_container(image, options=options) as container:
        port = published_port(container, 8000)
        wait_until(
            lambda: _http_status(f"http://127.0.0.1:{port}/healthz") == 200,
            timeout=30,
            what="GET /healthz -> 200",
            describe=lambda: container_logs(container),
        )
        assert _http_status(f"http://127.0.0.1:{port}/anything") == 404
        # The command is nginx in the foreground, as in the official image; the check compose runs works here.
        assert docker("exec", container, "healthcheck", "http://127.0.0.1:8000/healthz", check=False).returncode == 0
        assert "nginx" in docker("exec", container, "cat", "/proc/1/cmdline").stdout
        # The access log goes to the container's output.
        assert "GET /anything" in container_logs(container)


def test_postgres_image_creates_the_database_with_a_password_from_a_file(docker_images: DockerImages) -> None:
    image = docker_images.images["POSTGRES_IMAGE"]
    password = f"pw-{uuid.uuid4().hex}"
    env = ("-e", "POSTGRES_USER=owner", "-e", "POSTGRES_DB=main", "-e", "POSTGRES_PASSWORD_FILE=/tmp/password")
    # The file is given after the container exists, as a secret volume would be filled: start it with a shell first.
    start = f"printf %s {password} > /tmp/password && exec docker-entrypoint postgres"
    with running_container(image, "sh", "-c", start, options=("-p", "127.0.0.1::5432", *env)) as container:
        wait_until(
            lambda: docker("exec", container, "pg_isready", "-U", "owner", "-d", "main", check=False).returncode == 0,
            timeout=60,
            what="pg_isready",
            describe=lambda: container_logs(container),
        )
        assert docker("exec", container, "id", "-u").stdout.strip() == "999"
        port = published_port(container, 5432)

        async def query(secret: str) -> object:
            import asyncpg

            connection = await asyncpg.connect(
                host="127.0.0.1", port=port, user="owner", password=secret, database="main", timeout=10
            )
            try:
                return await connection.fetchval("SELECT current_database()")
            finally:
                await connection.close()

        import asyncio

        assert asyncio.run(query(password)) == "main"
        with pytest.raises(Exception, match="password authentication failed"):
            asyncio.run(query("not-the-password"))


def test_second_bootstrap_reuses_every_image(docker_images: DockerImages) -> None:
    before = {variable: image_id(tag) for variable, tag in docker_images.images.items()}
    messages: list[str] = []
    started = time.monotonic()
    images = bootstrap_images(messages.append)
    elapsed = time.monotonic() - started
    assert images == docker_images.images
    assert {variable: image_id(tag) for variable, tag in images.items()} == before
    assert not [m for m in messages if m.startswith(("building", "debootstrap", "downloading"))], messages
    assert elapsed < 30, f"reuse took {elapsed:.1f} s: {messages}"
    env_file = (REPO_ROOT / IMAGES_ENV_NAME).read_text()
    for variable in IMAGE_VARIABLES:
        assert f"{variable}={images[variable]}\n" in env_file

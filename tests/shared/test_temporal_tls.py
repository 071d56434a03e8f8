"""Temporal beyond the dev server: main, a worker and the probes reach Temporal through a TLS-terminating proxy (nginx
``grpc_pass``) with the settings a cluster of one's own or Temporal Cloud needs: a namespace, the CA of the server's
certificate, a client certificate (mutual TLS), or an API key. The certificates are made here, with a throwaway CA."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.testing import WorkflowEnvironment

from deploy.local import LocalStack
from deploy.ports import free_port
from deploy.probe import task_queue_pollers, temporal_health
from services.shared.converter import data_converter
from services.shared.settings import Env, SettingsError, TemporalSettings
from services.shared.temporal import connect
from tests.stack import Api, Launcher, MainProcess, wait_for
from tests.temporal_env import BIN

pytestmark = pytest.mark.integration

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NAMESPACE = "tls-test"
SERVER_NAME = "temporal.test"
API_KEY = "temporal-api-key-" + uuid.uuid4().hex


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=directory)  # fmt: skip


def make_cert(directory: Path, ca: str, name: str, extensions: str) -> None:
    """``name``.pem and ``name``.key, signed by the CA ``ca``."""
    (directory / f"{name}.ext").write_text(extensions + "\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", cwd=directory)  # fmt: skip
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=directory)  # fmt: skip


@dataclass(frozen=True)
class Proxy:
    """nginx in front of a dev server: ``mtls`` asks for a client certificate, ``api_key`` for the API key."""

    directory: Path
    mtls: str
    api_key: str
    # Where the dev server itself listens (plain gRPC).
    upstream: str

    def pem(self, name: str, suffix: str = "pem") -> str:
        # As a setting read from a file holds it (Env.from_file strips).
        return (self.directory / f"{name}.{suffix}").read_text().strip()

    def settings(self, address: str, **changes: object) -> TemporalSettings:
        """What a client configured with the CA, a client certificate and the server name gets."""
        base = TemporalSettings(
            address=address,
            namespace=NAMESPACE,
            tls=True,
            tls_ca=self.pem("ca"),
            tls_cert=self.pem("client"),
            tls_key=self.pem("client", "key"),
            tls_server_name=SERVER_NAME,
        )
        return replace(base, **changes)  # type: ignore[arg-type]

    def env(self) -> dict[str, str]:
        """The same for a process: the TLS material as files (``_FILE``), as a deployment mounts them."""
        return {
            "TEMPORAL_ADDRESS": self.mtls,
            "TEMPORAL_NAMESPACE": NAMESPACE,
            "TEMPORAL_TLS_CA_FILE": str(self.directory / "ca.pem"),
            "TEMPORAL_TLS_CERT_FILE": str(self.directory / "client.pem"),
            "TEMPORAL_TLS_KEY_FILE": str(self.directory / "client.key"),
            "TEMPORAL_TLS_SERVER_NAME": SERVER_NAME,
        }


NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    ssl_certificate {dir}/server.pem;
    ssl_certificate_key {dir}/server.key;
    grpc_read_timeout 300s;
    server {{
        listen 127.0.0.1:{mtls} ssl http2;
        ssl_client_certificate {dir}/ca.pem;
        ssl_verify_client on;
        location / {{ grpc_pass grpc://{upstream}; }}
    }}
    server {{
        listen 127.0.0.1:{api_key} ssl http2;
        location / {{
            if ($http_authorization != "Bearer {key}") {{ return 401; }}
            grpc_pass grpc://{upstream};
        }}
    }}
}}
"""


@pytest.fixture(scope="module")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server of this module's own, with the namespace the clients are configured for."""
    env = await WorkflowEnvironment.start_local(
        namespace=NAMESPACE, data_converter=data_converter, dev_server_existing_path=str(BIN / "temporal"), ui=False
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="module")
def proxy(dev_server: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    directory = tmp_path_factory.mktemp("temporal-tls")
    make_ca(directory, "ca")
    make_ca(directory, "other-ca")
    make_cert(directory, "ca", "server", f"subjectAltName=DNS:{SERVER_NAME},IP:127.0.0.1")
    make_cert(directory, "ca", "client", "extendedKeyUsage=clientAuth")
    make_cert(directory, "other-ca", "stranger", "extendedKeyUsage=clientAuth")
    mtls, api_key = free_port(), free_port()
    upstream = dev_server.client.service_client.config.target_host
    conf = directory / "nginx.conf"
    text = NGINX_CONF.format(dir=directory, mtls=mtls, api_key=api_key, upstream=upstream, key=API_KEY)
    conf.write_text(text)
    command = [NGINX, "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(conf)]
    subprocess.run([*command, "-t"], check=True, capture_output=True, timeout=30)
    subprocess.run(command, check=True, capture_output=True, timeout=30)
    try:
        yield Proxy(directory, f"127.0.0.1:{mtls}", f"127.0.0.1:{api_key}", upstream)
    finally:
        subprocess.run([*command, "-s", "stop"], capture_output=True, timeout=30)


async def test_settings_from_the_environment_read_the_tls_material_and_the_api_key(proxy: Proxy) -> None:
    settings = TemporalSettings.from_env(Env(proxy.env()))
    assert settings == proxy.settings(proxy.mtls)
    assert "PRIVATE KEY" not in repr(settings)
    cloud = TemporalSettings.from_env(Env({"TEMPORAL_ADDRESS": "x.tmprl.cloud:7233", "TEMPORAL_API_KEY": API_KEY}))
    # An API key alone means TLS with the system's CAs, as Temporal Cloud serves it.
    assert (cloud.tls, cloud.tls_ca, cloud.api_key) == (True, None, API_KEY)
    assert API_KEY not in repr(cloud)
    for bad, message in (
        ({"TEMPORAL_TLS": "false", "TEMPORAL_API_KEY": API_KEY}, "need TLS"),
        ({"TEMPORAL_TLS_CERT_FILE": str(proxy.directory / "client.pem")}, "go together"),
        ({"TEMPORAL_TLS_CA": "not a certificate"}, "TEMPORAL_TLS_CA must be PEM"),
        ({"TEMPORAL_API_KEY": "short"}, "TEMPORAL_API_KEY is shorter than"),
    ):
        with pytest.raises(SettingsError, match=message):
            TemporalSettings.from_env(Env(bad))


async def test_main_a_worker_and_the_probes_work_through_mutual_tls(
    proxy: Proxy, stack: LocalStack, worker_env: dict[str, str], tmp_path: Path
) -> None:
    settings = proxy.settings(proxy.mtls)
    assert (await asyncio.to_thread(temporal_health, settings)).ok
    env = {**worker_env, **proxy.env()}
    main = MainProcess(env, tmp_path / "main.log")
    worker = Launcher({**env, "MAIN_INTERNAL_URL": main.internal_url}, ["echo"], tmp_path / "worker.log")
    alice = Api(main.url, "alice")
    try:
        await main.wait_ready()
        await worker.wait_serving()

        # The probe a worker's healthcheck runs, through TLS: the worker's poller shows up once it has polled.
        async def polling() -> bool:
            return (await asyncio.to_thread(task_queue_pollers, settings, "echo")).ok

        await wait_for(polling, 30, "the worker's poller, seen through the proxy")
        created = await alice.create("echo", {"message": "through TLS"})
        assert created.status_code == 202, created.text
        task = await alice.wait_status(created.json()["id"], {"succeeded", "failed"})
        assert task["status"] == "succeeded", task
        # The workflow ran on the proxied server, in the configured namespace, and nowhere else.
        client = await connect(settings)
        described = await client.get_workflow_handle(task["workflow_id"]).describe()
        assert described.namespace == NAMESPACE
    finally:
        worker.kill()
        main.kill()
        await alice.close()


async def test_the_proxy_refuses_clients_without_the_right_credentials(proxy: Proxy) -> None:
    # (settings, what the client is told: nginx answers without a valid client certificate or key before any gRPC)
    refused = {
        "no client certificate": (proxy.settings(proxy.mtls, tls_cert=None, tls_key=None), "400 Bad Request"),
        "a certificate of another CA": (
            proxy.settings(proxy.mtls, tls_cert=proxy.pem("stranger"), tls_key=proxy.pem("stranger", "key")),
            "400 Bad Request",
        ),
        "a server certificate it does not trust": (
            proxy.settings(proxy.mtls, tls_ca=proxy.pem("other-ca")),
            "UnknownIssuer",
        ),
        # nginx speaks TLS there and drops the connection.
        "plain gRPC": (TemporalSettings(address=proxy.mtls, namespace=NAMESPACE), "http2 error|connection closed"),
        "no API key": (proxy.settings(proxy.api_key, tls_cert=None, tls_key=None), "401 Unauthorized"),
        "a wrong API key": (
            proxy.settings(proxy.api_key, tls_cert=None, tls_key=None, api_key="wrong-" + API_KEY),
            "401 Unauthorized",
        ),
    }
    for what, (settings, reason) in refused.items():
        with pytest.raises(RuntimeError, match=reason):
            async with asyncio.timeout(60):
                await connect(settings)
        assert not (await asyncio.to_thread(temporal_health, settings)).ok, what


async def test_an_api_key_is_sent_with_every_call(proxy: Proxy) -> None:
    settings = proxy.settings(proxy.api_key, tls_cert=None, tls_key=None, api_key=API_KEY)
    client = await connect(settings)
    assert (await client.workflow_service.get_system_info(GetSystemInfoRequest())).server_version
    health = await asyncio.to_thread(temporal_health, settings)
    assert health.ok, health.detail

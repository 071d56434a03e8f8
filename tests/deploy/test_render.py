from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import compose, config, paths
from deploy.cli import main
from services.shared.discovery import discover, parse_blacklist
from services.shared.manifest import slug
from services.shared.settings import DEVELOPMENT_SECRETS


def _load(text: str) -> dict[str, Any]:
    document = yaml.safe_load(text)
    assert isinstance(document, dict)
    return document


def test_render_is_deterministic_and_starts_with_a_generated_comment(config_copy: Path) -> None:
    first = compose.render(config_copy)
    assert first == compose.render(config_copy)
    assert first.startswith("# GENERATED FILE - do not edit. Regenerate with `deploy-tool render`")
    # Every service gets its own copy of shared values: no anchors or aliases.
    assert "&id" not in first and "*id" not in first


def test_committed_compose_file_is_current() -> None:
    assert compose.check() is None, "compose.yaml is stale: run `deploy-tool render`"


def test_rendered_services(config_copy: Path) -> None:
    document = _load(compose.render(config_copy))
    services = document["services"]
    integrations = discover(blacklist=parse_blacklist(os.environ.get("INTEGRATIONS_BLACKLIST"))).integrations
    workers = {f"worker-{slug(i.name)}": i for i in integrations}
    # The scale shape: PostgreSQL besides the enabled middleware, and the front door last.
    middleware = ["temporal", "minio", "create-bucket", "nats", "postgres"]
    expected = ["secrets", *middleware, "communication", "main", *sorted(workers), "front-door"]
    assert list(services) == expected
    assert document["name"] == "async-task-platform"
    readers = {"minio", "create-bucket", "nats", "postgres", "communication", "main", *workers}
    assert set(document["volumes"]) == {
        "temporal-data",
        "minio-data",
        "nats-data",
        "postgres-data",
        "secrets",
        *(f"secrets-{name}" for name in readers),
    }

    for name, service in services.items():
        assert service["init"] is True, name
        assert ":latest" not in service["image"] and "}" in service["image"], name
        if name not in ("create-bucket", "secrets"):
            assert "healthcheck" in service, name
    # Only the front door, Temporal's UI and MinIO are published: main and communication can run as many replicas.
    published = {name: service["ports"] for name, service in services.items() if "ports" in service}
    assert published == {
        "front-door": ["${PUBLISH_IP:-127.0.0.1}:${FRONT_DOOR_HOST_PORT:-8000}:8000"],
        "temporal": ["${PUBLISH_IP:-127.0.0.1}:${TEMPORAL_UI_HOST_PORT:-8233}:8233"],
        "minio": [
            "${PUBLISH_IP:-127.0.0.1}:${MINIO_HOST_PORT:-9000}:9000",
            "${PUBLISH_IP:-127.0.0.1}:${MINIO_CONSOLE_HOST_PORT:-9001}:9001",
        ],
    }
    assert services["main"]["build"] == {"context": ".", "dockerfile": "docker/app.Dockerfile"}
    assert services["main"]["volumes"] == ["secrets-main:/run/secrets:ro"]
    assert services["main"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert services["main"]["depends_on"]["temporal"] == {"condition": "service_healthy"}
    assert services["main"]["depends_on"]["create-bucket"] == {"condition": "service_completed_successfully"}
    for worker, integration in workers.items():
        assert services[worker]["command"] == ["python", "-m", "services.async_task", integration.name]
        assert services[worker]["healthcheck"]["test"][-1] == integration.task_queue
    env = services["main"]["environment"]
    assert env["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert env["S3_ENDPOINT"] == "minio:9000"
    assert env["S3_BUCKET"] == "task-results"
    assert env["DATABASE_URL"] == "postgresql+asyncpg://postgres@postgres:5432/main"
    assert env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert env["NATS_URL"] == "nats://nats:4222"
    assert services["main"]["depends_on"]["nats"] == {"condition": "service_healthy"}
    assert env["REPORT_TOKEN_FILE"] == "/run/secrets/report_token"
    # What main hands out leads through the front door.
    assert env["REALTIME_PUBLIC_URL"] == "${REALTIME_PUBLIC_URL:-ws://localhost:${FRONT_DOOR_HOST_PORT:-8000}/ws}"
    assert env["S3_PUBLIC_ENDPOINT"] == "${S3_PUBLIC_ENDPOINT:-localhost:${FRONT_DOOR_HOST_PORT:-8000}}"
    assert env["MAIN_PUBLIC_URL"] == "${MAIN_PUBLIC_URL:-http://front-door:8000}"
    # The dev server is reached in plain gRPC: no TLS setting is passed while compose runs it.
    assert not any(name.startswith("TEMPORAL_TLS") or name == "TEMPORAL_API_KEY" for name in env)


def test_the_front_door_routes_the_public_paths_to_the_replicas(config_copy: Path) -> None:
    document = _load(compose.render(config_copy))
    door = document["services"]["front-door"]
    assert door["image"] == "${NGINX_IMAGE:-nginx:1.28.0-alpine}"
    assert door["configs"] == [{"source": "front-door", "target": "/etc/nginx/conf.d/front-door.conf"}]
    assert door["depends_on"] == {
        "main": {"condition": "service_healthy"},
        "communication": {"condition": "service_healthy"},
    }
    # compose interpolates the content: every nginx variable is written `$$`.
    config_text = compose.interpolate(document["configs"]["front-door"]["content"], {})
    assert "$$" not in config_text
    routes = dict(re.findall(r"location (?:= )?(\S+) \{[^}]*?(?:proxy_pass (\S+);|return)", config_text))
    assert routes == {
        "/api/": "$main",
        "/console": "$main",
        "/docs": "$main",
        "/ws": "$communication",
        "/task-results/": "$objects",
        "/healthz": "",
        "/": "",
    }
    assert (
        "set $main http://main:8000;" in config_text and "set $communication http://communication:8001;" in config_text
    )
    # Re-resolved every few seconds, so replicas that come and go are followed; main's limits at the edge.
    assert "resolver 127.0.0.11 valid=5s" in config_text
    assert "client_max_body_size 4194304;" in config_text
    assert "client_header_timeout 10s;" in config_text and "client_body_timeout 30s;" in config_text
    assert "proxy_set_header Upgrade $http_upgrade;" in config_text
    # Nothing reaches an internal listener.
    assert "8010" not in config_text and "8011" not in config_text


def test_no_secret_is_written_into_the_compose_file(config_copy: Path) -> None:
    text = compose.render(config_copy)
    for value in DEVELOPMENT_SECRETS:
        assert value not in text
    for name, service in _load(text)["services"].items():
        for variable, value in service.get("environment", {}).items():
            if name == "secrets":
                # The operator's extra API keys, if any; and where the store is.
                assert set(service["environment"]) == {"API_KEYS", "SECRETS_STORE"}
            elif any(word in variable for word in ("TOKEN", "SECRET", "PASSWORD", "API_KEY", "ACCESS_KEY")):
                # A provider key comes from the operator's environment; everything else is a generated file.
                assert variable.endswith("_FILE") or value == f"${{{variable}:-}}", (name, variable)
                assert not variable.endswith("_FILE") or value.startswith("/run/secrets/"), (name, variable)


def test_each_service_reads_only_its_contract(config_copy: Path) -> None:
    services = _load(compose.render(config_copy))["services"]
    files = {name: {v for v in s.get("environment", {}) if v.endswith("_FILE")} for name, s in services.items()}
    assert files["communication"] == {"REALTIME_SECRET_FILE", "NATS_COMMUNICATION_PASSWORD_FILE"}
    assert files["worker-echo"] == {"REPORT_TOKEN_FILE", "S3_ACCESS_KEY_FILE", "S3_SECRET_KEY_FILE"}
    assert files["main"] >= {"API_KEYS_FILE", "REPORT_TOKEN_FILE", "NATS_MAIN_PASSWORD_FILE", "S3_SECRET_KEY_FILE"}
    assert files["main"] >= {"CALLBACK_KEY_FILE", "CALLBACK_KEY_PREVIOUS_FILE"}
    assert not any("CALLBACK_KEY" in v for name, f in files.items() if name != "main" for v in f)
    # Only main and PostgreSQL itself read PostgreSQL's password.
    assert {name for name, f in files.items() if "POSTGRES_PASSWORD_FILE" in f} == {"main", "postgres"}
    # NATS reads its users (both services' passwords) from the file the secrets service writes.
    assert services["nats"]["command"][:2] == ["-c", "/run/secrets/nats_auth"]
    assert "NATS_AUTH" in " ".join(services["secrets"]["command"])
    # A provider worker gets the variables its manifest declares, from the host; the production file names no
    # simulator and allows no private fetch.
    image = services["worker-nanobanana2-image"]["environment"]
    assert (image["GEMINI_API_KEY"], image["GEMINI_BASE_URL"]) == ("${GEMINI_API_KEY:-}", "${GEMINI_BASE_URL:-}")
    assert not {"PROVIDER_SIMULATOR_URL", "OUTBOUND_ALLOW_HTTP", "OUTBOUND_ALLOWED_HOSTS"} & set(image)
    for name in ("worker-echo", "worker-fangzhou-video-generation", "main", "communication"):
        assert "GEMINI_API_KEY" not in services[name]["environment"], name
    assert "ARK_API_KEY" not in services["worker-nanobanana2-image"]["environment"]
    # Each reader mounts only its own secrets volume, read-only; the secrets service writes them all.
    for name, service in services.items():
        mounts = [v for v in service.get("volumes", []) if v.startswith("secrets")]
        if name == "secrets":
            readers = {f"secrets-{n}" for n in services if n not in ("secrets", "temporal", "front-door")}
            assert {m.split(":")[0] for m in mounts} == {"secrets", *readers}
        elif files[name]:
            assert mounts == [f"secrets-{name}:/run/secrets:ro"], name
            assert services[name]["depends_on"].get("secrets") or name == "create-bucket", name
    # main and communication publish nothing, their internal listeners least of all.
    assert "ports" not in services["main"] and "ports" not in services["communication"]


def test_the_simulator_is_only_in_the_development_override(config_copy: Path) -> None:
    assert "simulator" not in _load(compose.render(config_copy))["services"]
    override = _load(compose.render_dev())["services"]
    assert override["simulator"]["environment"] == {
        "DEVELOPMENT_MODE": "true",
        "SIMULATOR_HOST": "0.0.0.0",
        "SIMULATOR_PORT": "8002",
    }
    for worker in ("worker-nanobanana2-image", "worker-fangzhou-video-generation"):
        assert override[worker]["environment"] == {
            "PROVIDER_SIMULATOR_URL": "http://simulator:8002",
            "OUTBOUND_ALLOW_HTTP": "true",
            "OUTBOUND_ALLOWED_HOSTS": "simulator:8002",
        }
        assert override[worker]["depends_on"] == {"simulator": {"condition": "service_healthy"}}
    assert "worker-echo" not in override


def test_render_without_a_middleware_drops_its_services(config_copy: Path) -> None:
    config.remove("minio", config_copy)
    services = _load(compose.render(config_copy))["services"]
    assert "minio" not in services and "create-bucket" not in services
    assert "create-bucket" not in services["main"]["depends_on"]
    # Our services then take the storage address, and its credentials, from the host environment.
    assert services["main"]["environment"]["S3_ENDPOINT"] == "${S3_ENDPOINT}"
    assert services["main"]["environment"]["S3_SECRET_KEY"] == "${S3_SECRET_KEY}"
    assert "S3_SECRET_KEY_FILE" not in services["main"]["environment"]
    # Downloads are then signed for wherever that storage is: the front door has no route to it.
    assert services["main"]["environment"]["S3_PUBLIC_ENDPOINT"] == "${S3_PUBLIC_ENDPOINT}"
    assert "/task-results/" not in _load(compose.render(config_copy))["configs"]["front-door"]["content"]


def test_render_against_a_temporal_cluster_or_temporal_cloud(config_copy: Path) -> None:
    """Without the dev server, our services take Temporal's address, and TLS or an API key, from the host."""
    config.remove("temporal", config_copy)
    services = _load(compose.render(config_copy))["services"]
    assert "temporal" not in services
    for name in ("main", "worker-echo"):
        env = services[name]["environment"]
        assert env["TEMPORAL_ADDRESS"] == "${TEMPORAL_ADDRESS}"
        for optional in ("TEMPORAL_TLS", "TEMPORAL_TLS_CA", "TEMPORAL_TLS_CERT", "TEMPORAL_TLS_SERVER_NAME"):
            assert env[optional] == f"${{{optional}:-}}", (name, optional)
        assert env["TEMPORAL_TLS_KEY"] == "${TEMPORAL_TLS_KEY:-}"
        assert env["TEMPORAL_API_KEY"] == "${TEMPORAL_API_KEY:-}"
    assert "TEMPORAL_API_KEY" not in services["communication"]["environment"]


def test_render_check_reports_stale_and_current(
    tmp_path: Path, config_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "compose.yaml"
    assert main(["render", "--config", str(config_copy), "--compose-file", str(target), "--check"]) == 1
    assert "does not exist" in capsys.readouterr().out

    assert main(["render", "--config", str(config_copy), "--compose-file", str(target)]) == 0
    assert "wrote compose.yaml and compose.dev.yaml" in capsys.readouterr().out
    assert (tmp_path / "compose.dev.yaml").is_file()
    assert main(["render", "--config", str(config_copy), "--compose-file", str(target), "--check"]) == 0
    assert "compose.yaml is current" in capsys.readouterr().out

    assert main(["middleware", "--config", str(config_copy), "remove", "temporal"]) == 0
    capsys.readouterr()
    assert main(["render", "--config", str(config_copy), "--compose-file", str(target), "--check"]) == 1
    captured = capsys.readouterr()
    assert "-  temporal:" in captured.out  # the diff names what changed
    assert "compose.yaml is stale" in captured.err

    assert main(["render", "--config", str(config_copy), "--compose-file", str(target)]) == 0
    assert main(["render", "--config", str(config_copy), "--compose-file", str(target), "--check"]) == 0


def test_interpolate_matches_compose_rules() -> None:
    env = {"SET": "value", "EMPTY": ""}
    assert compose.interpolate("${SET:-x}", env) == "value"
    assert compose.interpolate("${EMPTY:-x}", env) == "x"
    assert compose.interpolate("${EMPTY-x}", env) == ""
    assert compose.interpolate("${UNSET-x}", env) == "x"
    assert compose.interpolate("a/${UNSET}:b", env) == "a/:b"
    document = _load(compose.render())
    images = compose.images(document, {"APP_IMAGE": "local/app:1"})
    assert "local/app:1" in images and "temporalio/temporal:1.9.1" in images


def _compose_binary() -> list[str] | None:
    explicit = os.environ.get("DOCKER_COMPOSE")
    candidates = [[explicit]] if explicit else []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    for argv in candidates:
        try:
            done = subprocess.run([*argv, "version", "--short"], capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        if done.returncode == 0 and done.stdout.strip().lstrip("v").startswith("2."):
            return argv
    return None


def test_compose_accepts_the_rendered_file(tmp_path: Path, config_copy: Path) -> None:
    argv = _compose_binary()
    if argv is None:
        pytest.skip("no docker compose v2 on this machine")
    target = tmp_path / "compose.yaml"
    target.write_text(compose.render(config_copy))
    override = tmp_path / "compose.dev.yaml"
    override.write_text(compose.render_dev())
    files = ["-f", str(target), "-f", str(override)]
    done = subprocess.run(
        [*argv, "--project-directory", str(paths.REPO_ROOT), *files, "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr

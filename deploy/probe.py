"""Health probes, used by the local mode on the host and, as ``python -m deploy.probe``, by compose healthchecks
inside the application image (which has neither curl nor the Temporal CLI on its PATH)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .spec import Health

if TYPE_CHECKING:
    from minio import Minio


def _run_cli(
    temporal_bin: Path, args: list[str], address: str, timeout: float
) -> subprocess.CompletedProcess[str] | Health:
    """Run the Temporal CLI; a timeout or a missing binary comes back as an unhealthy answer."""
    try:
        return subprocess.run([str(temporal_bin), *args], capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return Health(False, f"no answer from {address} within {timeout:.0f}s")
    except OSError as exc:
        return Health(False, f"cannot run {temporal_bin}: {exc}")


def temporal_cluster_health(temporal_bin: Path, address: str, timeout: float = 5.0) -> Health:
    """``temporal operator cluster health`` prints SERVING when the frontend answers."""
    done = _run_cli(temporal_bin, ["operator", "cluster", "health", "--address", address], address, timeout)
    if isinstance(done, Health):
        return done
    if done.returncode == 0 and "SERVING" in done.stdout:
        return Health(True, f"SERVING at {address}")
    reason = (done.stderr or done.stdout).strip().splitlines()
    return Health(False, f"not serving at {address}: {reason[-1] if reason else f'exit {done.returncode}'}")


def task_queue_pollers(
    temporal_bin: Path, address: str, namespace: str, task_queue: str, timeout: float = 5.0
) -> Health:
    """A worker is serving its integration when its task queue has at least one poller."""
    argv = ["task-queue", "describe", "--address", address, "--namespace", namespace, "--task-queue", task_queue]
    done = _run_cli(temporal_bin, [*argv, "--output", "json"], address, timeout)
    if isinstance(done, Health):
        return done
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()
        return Health(False, f"cannot describe task queue {task_queue}: {reason[-1] if reason else done.returncode}")
    try:
        pollers = json.loads(done.stdout).get("pollers") or []
    except (ValueError, AttributeError):
        return Health(False, f"unexpected answer describing task queue {task_queue}")
    if not pollers:
        return Health(False, f"no poller on task queue {task_queue}")
    return Health(True, f"{len(pollers)} poller(s) on task queue {task_queue}")


def http_health(url: str, timeout: float = 2.0) -> Health:
    # urllib, not httpx: this runs as a container healthcheck, where a light import matters.
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - URLs are ours
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        return Health(False, f"{url}: {type(exc).__name__}")
    if status == 200:
        return Health(True, f"{url} answered 200")
    return Health(False, f"{url} answered {status}")


def postgres_ready(pg_isready: Path, host: str, port: int, database: str, timeout: float = 5.0) -> Health:
    """``pg_isready`` exits 0 once the server accepts connections."""
    argv = [str(pg_isready), "-h", host, "-p", str(port), "-d", database, "-t", str(int(timeout))]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 1, check=False)
    except (subprocess.TimeoutExpired, OSError) as exc:
        return Health(False, f"cannot ask PostgreSQL at {host}:{port}: {type(exc).__name__}")
    detail = done.stdout.strip() or f"exit {done.returncode}"
    return Health(done.returncode == 0, detail)


def s3_health(endpoint: str, access_key: str, secret_key: str, bucket: str, *, require_bucket: bool) -> Health:
    """The S3 server answers a signed request with our credentials (and, if required, the bucket exists)."""
    import urllib3
    from minio.error import S3Error

    client = s3_client(endpoint, access_key, secret_key)
    try:
        exists = bool(client.bucket_exists(bucket))
    except S3Error as exc:
        return Health(False, f"S3 at {endpoint} refused the request: {exc.code}")
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        return Health(False, f"S3 at {endpoint} does not answer: {type(exc).__name__}")
    if require_bucket and not exists:
        return Health(False, f"S3 at {endpoint} answers but bucket {bucket} does not exist")
    return Health(True, f"bucket {bucket} at {endpoint}" if exists else f"S3 answers at {endpoint}")


def s3_client(
    endpoint: str, access_key: str, secret_key: str, *, secure: bool = False, region: str = "us-east-1"
) -> Minio:
    """A minio client that gives up quickly, for probes (the default retries for minutes)."""
    import urllib3
    from minio import Minio

    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=2.0, read=5.0), retries=urllib3.Retry(total=0, connect=0, read=0)
    )
    return Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region, http_client=http)


async def _task_queue_pollers_via_sdk(address: str, namespace: str, task_queue: str) -> int:
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
    from temporalio.client import Client

    client = await Client.connect(address, namespace=namespace)
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return len(response.pollers)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.probe", description="Container healthcheck probes.")
    sub = parser.add_subparsers(dest="probe", required=True)
    http = sub.add_parser("http", help="GET URL; healthy on 200")
    http.add_argument("url")
    tq = sub.add_parser("task-queue", help="healthy when the Temporal task queue has a poller")
    tq.add_argument("task_queue")
    tq.add_argument("--address", default=os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"))
    tq.add_argument("--namespace", default=os.environ.get("TEMPORAL_NAMESPACE", "default"))
    args = parser.parse_args(argv)

    if args.probe == "http":
        health = http_health(args.url)
    else:
        try:
            count = asyncio.run(_task_queue_pollers_via_sdk(args.address, args.namespace, args.task_queue))
        except Exception as exc:
            health = Health(False, f"cannot describe task queue {args.task_queue}: {exc}")
        else:
            health = Health(count > 0, f"{count} poller(s) on task queue {args.task_queue}")
    print(health.detail, file=sys.stdout if health.ok else sys.stderr)
    return 0 if health.ok else 1


if __name__ == "__main__":
    sys.exit(main())

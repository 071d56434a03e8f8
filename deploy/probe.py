"""Health probes, used by the local mode on the host and, as ``python -m deploy.probe``, by compose healthchecks
inside the application image (which has neither curl nor the Temporal CLI on its PATH)."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from services.shared.settings import Env, TemporalSettings

from .spec import Health

if TYPE_CHECKING:
    from minio import Minio


def temporal_health(settings: TemporalSettings, timeout: float = 5.0) -> Health:
    """The frontend answers gRPC health checks as SERVING."""

    async def probe() -> Health:
        from services.shared.temporal import connect

        client = await connect(settings)
        if await client.service_client.check_health():
            return Health(True, f"SERVING at {settings.address}")
        return Health(False, f"not serving at {settings.address}")

    return _blocking(probe, settings, timeout)


def task_queue_pollers(settings: TemporalSettings, task_queue: str, timeout: float = 5.0) -> Health:
    """A worker is serving its integration when its task queue has at least one poller."""

    async def probe() -> Health:
        from temporalio.api.enums.v1 import TaskQueueType
        from temporalio.api.taskqueue.v1 import TaskQueue
        from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

        from services.shared.temporal import connect

        client = await connect(settings)
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=settings.namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        if not response.pollers:
            return Health(False, f"no poller on task queue {task_queue}")
        return Health(True, f"{len(response.pollers)} poller(s) on task queue {task_queue}")

    return _blocking(probe, settings, timeout)


def _blocking(probe: Callable[[], Awaitable[Health]], settings: TemporalSettings, timeout: float) -> Health:
    """Run an async probe from synchronous code, bounded; any failure is an unhealthy answer. The probe runs on a
    thread of its own, since the caller's thread may already run an event loop (tests drive the stack from one)."""

    async def bounded() -> Health:
        return await asyncio.wait_for(probe(), timeout)

    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            return pool.submit(asyncio.run, bounded()).result()
        except TimeoutError:
            return Health(False, f"no answer from {settings.address} within {timeout:.0f}s")
        except Exception as exc:
            return Health(False, f"Temporal at {settings.address}: {exc}")


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.probe", description="Container healthcheck probes.")
    sub = parser.add_subparsers(dest="probe", required=True)
    http = sub.add_parser("http", help="GET URL; healthy on 200")
    http.add_argument("url")
    tq = sub.add_parser("task-queue", help="healthy when the Temporal task queue has a poller")
    # Temporal's address and the rest come from the container's environment, as for the worker it checks.
    tq.add_argument("task_queue")
    args = parser.parse_args(argv)

    if args.probe == "http":
        health = http_health(args.url)
    else:
        health = task_queue_pollers(TemporalSettings.from_env(Env()), args.task_queue)
    print(health.detail, file=sys.stdout if health.ok else sys.stderr)
    return 0 if health.ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""The image job as a team hand-rolls it with Celery and a Redis broker, for ``celery_vs_platform.py``: one task
that calls the provider (the simulator's generateContent) and stores the PNG in the same S3 server, under
``celery/<job id>/image.png``, with Celery's recommended settings for tasks that must survive a worker crash
(``RELIABILITY``; or Celery's defaults, for comparison, with ``HANDROLLED_CELERY_DEFAULTS=1``).

Run by ``python -m celery -A benchmarks.celery_app -b <redis URL> --result-backend <redis URL> worker --pool
threads --concurrency N``; the provider and S3 settings come from the stack's environment when the first task runs.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass

import httpx
from celery import Celery
from minio import Minio

from .handwritten import PROVIDER_TIMEOUT_SECONDS, Settings, generate_body, image_of, put

# Longer than any task runs here (10 s at the provider, then the upload), or a task still running would be
# delivered a second time. It is also how long a task taken by a worker that died waits before it is run again.
VISIBILITY_TIMEOUT_SECONDS = 30
# kombu's Redis transport looks for messages past their visibility timeout every 10 s, but scans only on every
# 10th look; this makes it scan every 5 s, so recovery takes about the visibility timeout.
RESTORE_INTERVAL_SECONDS = 5

RELIABILITY = {
    # Acknowledge a message only when its task has finished, so a task on a worker that dies is not lost.
    "task_acks_late": True,
    # ... and when a pool's child process dies mid-task, give the message back instead of failing the task.
    "task_reject_on_worker_lost": True,
    # Reserve one message per free slot, not four, so a dying worker holds as few as it can.
    "worker_prefetch_multiplier": 1,
    "broker_transport_options": {
        "visibility_timeout": VISIBILITY_TIMEOUT_SECONDS,
        "unacked_restore_interval": RESTORE_INTERVAL_SECONDS,
        "unacked_restore_throttle": 1,
    },
}
# Set to 1 for Celery's own defaults instead (a message acknowledged when its task starts; one hour of visibility
# timeout): the benchmark's comparison of what the settings above buy.
DEFAULTS_VARIABLE = "HANDROLLED_CELERY_DEFAULTS"

app = Celery("handrolled")
app.conf.update(broker_connection_retry_on_startup=True, task_serializer="json", result_serializer="json")
if os.environ.get(DEFAULTS_VARIABLE) != "1":
    app.conf.update(RELIABILITY)


@dataclass(frozen=True)
class Clients:
    settings: Settings
    http: httpx.Client
    s3: Minio


@functools.cache
def clients() -> Clients:
    """One HTTP and one S3 client for the worker's threads, made on first use from the environment."""
    settings = Settings.from_env()
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    return Clients(settings, httpx.Client(limits=limits, timeout=PROVIDER_TIMEOUT_SECONDS), settings.s3())


@app.task(
    name="handrolled.generate_image",
    autoretry_for=(httpx.HTTPError,),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=4,
)
def generate_image(job_id: str, prompt: str) -> float:
    """Generate one image and store it; when it finished (Unix seconds)."""
    c = clients()
    response = c.http.post(c.settings.generate_url, content=generate_body(prompt), headers=c.settings.headers())
    response.raise_for_status()
    put(c.s3, c.settings.bucket, f"celery/{job_id}/image.png", image_of(response.content), "image/png")
    return time.time()

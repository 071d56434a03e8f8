"""The task-event stream in NATS JetStream: one stream, one subject per user, bounded retention. main's outbox
relay publishes to it (and creates it); every communication replica reads it. Each connects as its own NATS user,
whose permissions the server enforces (deploy/nats_auth.py)."""

from __future__ import annotations

import logging
import re

import nats
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, StorageType, StreamConfig, StreamInfo
from nats.js.errors import BadRequestError

from .settings import EventStreamSettings

log = logging.getLogger("events")

# The NATS users of the two services: main publishes events and manages the stream; communication only reads.
PUBLISHER = "main"
READER = "communication"

# A subject token may not hold '.', '*', '>' or whitespace; users' names may. Kept as they are: these characters.
_PLAIN = re.compile(r"[A-Za-z0-9-]")


def subject_token(user: str) -> str:
    """``user`` as one subject token: letters, digits and '-' as they are, every other byte as ``_XX`` (hex).
    '_' itself is escaped, so two names never share a token."""
    return "".join(c if _PLAIN.fullmatch(c) else "".join(f"_{b:02X}" for b in c.encode()) for c in user)


def user_subject(settings: EventStreamSettings, user: str) -> str:
    return f"{settings.subject_prefix}.{subject_token(user)}"


async def connect(settings: EventStreamSettings, name: str) -> Nats:
    """A connection that waits for the server when it is not up yet and reconnects for as long as it runs."""

    async def error(exc: Exception) -> None:
        log.warning("NATS: %s", exc or type(exc).__name__)

    return await nats.connect(
        settings.nats_url,
        user=settings.user,
        password=settings.password,
        name=name,
        error_cb=error,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=2,
    )


def stream_config(settings: EventStreamSettings) -> StreamConfig:
    return StreamConfig(
        name=settings.stream,
        subjects=[f"{settings.subject_prefix}.*"],
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=settings.max_age_seconds,
        max_bytes=settings.max_bytes,
        duplicate_window=settings.duplicate_window_seconds,
        # communication reads a resuming client's missed events by subject, without a consumer per socket.
        allow_direct=True,
        num_replicas=1,
    )


async def ensure_stream(js: JetStreamContext, settings: EventStreamSettings) -> StreamInfo:
    """Create the stream, or bring an existing one to these settings (its events stay)."""
    config = stream_config(settings)
    try:
        return await js.add_stream(config)
    except BadRequestError:
        # "stream name already in use with a different configuration"
        return await js.update_stream(config)

"""Task state as every part of the platform sees it: statuses, errors, results and state reports."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import msgspec
from temporalio.common import Priority

TaskStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
# Allowed forward moves; terminal states never change again.
TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "succeeded", "failed", "cancelled"}),
    "running": frozenset({"running", "succeeded", "failed", "cancelled"}),
    "succeeded": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}


def is_terminal(status: str) -> bool:
    return status in TERMINAL_STATUSES


# Temporal's priority keys: 1 runs first, 5 last; a task that names none gets the middle one.
HIGHEST_PRIORITY = 1
LOWEST_PRIORITY = 5
DEFAULT_PRIORITY = 3
# Temporal's limit on a fairness key.
MAX_FAIRNESS_KEY_BYTES = 64
# The longest deadline any task may have: the workflows' execution timeouts allow for no more.
MAX_DEADLINE_SECONDS = 7200.0


class TaskEnvelope(msgspec.Struct, frozen=True):
    """What every workflow and activity input carries about its task. It is stored in Temporal history, so it
    accepts unknown fields, and every field added later has a default: runs that started before it decode."""

    id: str
    priority: int = DEFAULT_PRIORITY
    # The owner: the fairness key of the task's workflow and activities, so one user's backlog cannot hold up
    # everyone else's tasks.
    user: str = ""
    # When the task must be done (epoch seconds), counted from its create: past it the workflow stops the provider
    # work and the task fails ``deadline_exceeded``. None: no deadline of its own (runs started before deadlines).
    deadline: float | None = None


def fairness_key(user: str) -> str:
    """A user's fairness key: the name itself, or a digest of it when it is longer than Temporal allows."""
    if len(user.encode()) <= MAX_FAIRNESS_KEY_BYTES:
        return user
    return "sha256:" + hashlib.sha256(user.encode()).hexdigest()[:48]


def temporal_priority(task: TaskEnvelope) -> Priority:
    """The Temporal priority of a task's workflow (and so of its activities): its priority key, then its user's
    fair share."""
    return Priority(priority_key=task.priority, fairness_key=fairness_key(task.user) if task.user else None)


class TaskError(msgspec.Struct, frozen=True):
    """The structured error used everywhere: in HTTP error bodies and in failed tasks."""

    code: str
    message: str
    retryable: bool = False


class StoredObject(msgspec.Struct, frozen=True):
    """A produced file in object storage. Payloads carry keys, never bytes."""

    key: str
    content_type: str
    size: int


class TaskResult(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a succeeded task produced: named objects (e.g. ``image``, ``video``) and small metadata."""

    objects: dict[str, StoredObject] = msgspec.field(default_factory=dict)
    data: dict[str, Any] = msgspec.field(default_factory=dict)


class TaskReport(msgspec.Struct, frozen=True, omit_defaults=True):
    """A state change reported by an activity to main's report API (or derived from Temporal by main)."""

    status: TaskStatus
    progress: float | None = None
    result: TaskResult | None = None
    error: TaskError | None = None
    provider_task_id: str | None = None
    # How many attempts at the provider work were made so far (the attempt that reports counts itself).
    provider_attempts: int | None = None


class ReportOutcome(msgspec.Struct, frozen=True):
    """main's answer to a report: whether it changed the task, and the status the task has now."""

    applied: bool
    status: TaskStatus
    reason: str = ""


WORKFLOW_ID_PREFIX = "task-"


def workflow_id_for(task_id: str) -> str:
    return f"{WORKFLOW_ID_PREFIX}{task_id}"


def task_id_of(workflow_id: str) -> str | None:
    """The task a workflow id belongs to, or None for a workflow that is not a task's."""
    return workflow_id.removeprefix(WORKFLOW_ID_PREFIX) if workflow_id.startswith(WORKFLOW_ID_PREFIX) else None


# Every task's objects are under it (the bucket's lifecycle rule names it).
OBJECTS_ROOT = "tasks/"


def objects_prefix(task_id: str) -> str:
    """Where a task's produced files live in object storage: every integration stores its objects under it."""
    return f"{OBJECTS_ROOT}{task_id}/"


MAX_OBJECT_KEY_CHARS = 1024


def object_key_problem(task_id: str, key: str) -> str | None:
    """Why ``key`` may not be one of the task's objects, or None: a task names only objects under its own prefix,
    by a plain path (no empty, ``.`` or ``..`` segment, no backslash or control character)."""
    prefix = objects_prefix(task_id)
    if len(key) > MAX_OBJECT_KEY_CHARS:
        return f"object key is longer than {MAX_OBJECT_KEY_CHARS} characters"
    if not key.startswith(prefix) or key == prefix:
        return f"object key {key!r} is not under the task's prefix {prefix!r}"
    if any(ch == "\\" or ord(ch) < 32 or ord(ch) == 127 for ch in key):
        return f"object key {key!r} holds a backslash or a control character"
    if any(segment in ("", ".", "..") for segment in key[len(prefix) :].split("/")):
        return f"object key {key!r} has an empty, '.' or '..' segment"
    return None

"""main's integration kit: what an integration's ``api.py`` declares, and all it is given.

An integration's ``api.py`` defines ``api = IntegrationApi(...)`` and imports nothing else of main. main mounts
``POST /api/integrations/<name>/tasks`` (typed input, 202) and ``GET .../tasks/{task_id}``, and the routes its
pattern declares: ``POST .../tasks/{task_id}/<action>`` for each action (the submit-poll pattern's ``REFRESH``),
and, with a ``callback``, ``POST .../tasks/{task_id}/callback`` for the provider, authenticated by the task's own
token. main checks users, ownership and tokens; the integration sees only the small contexts below.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError

from services.shared.submit_poll import REFRESH_UPDATE, CallbackHint, JobInput
from services.shared.sync_call import TaskInput
from services.shared.tasks import TaskEnvelope, TaskReport

if TYPE_CHECKING:
    from temporalio.client import WorkflowHandle

RequestT = TypeVar("RequestT")

log = logging.getLogger("main.kit")


class InputError(Exception):
    """Raised by an integration's ``check`` for invalid combinations of otherwise valid fields; becomes 422."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class NewTask(Generic[RequestT]):
    """What ``build_input`` gets: the new task and the validated request."""

    task: TaskEnvelope
    request: RequestT


@dataclass(frozen=True)
class TaskHandle:
    """What an action gets: the task (the user's own, not finished) and its workflow."""

    task_id: str
    workflow: WorkflowHandle[Any, Any]


@dataclass(frozen=True)
class TaskAction:
    """``POST .../tasks/{task_id}/<name>``: main answers a finished task as it is; otherwise it runs ``run`` and
    answers with the task synced from its workflow."""

    name: str
    summary: str
    description: str
    run: Callable[[TaskHandle], Awaitable[None]]


# How long a refresh waits for the workflow's fresh query of the provider before answering with what is known.
REFRESH_WAIT_SECONDS = 20.0


async def _refresh(task: TaskHandle) -> None:
    try:
        await asyncio.wait_for(
            task.workflow.execute_update(REFRESH_UPDATE, result_type=TaskReport), REFRESH_WAIT_SECONDS
        )
    except TimeoutError:
        log.info("refresh of task %s: no fresh answer within %ss", task.task_id, REFRESH_WAIT_SECONDS)
    except (WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError, RPCError) as exc:
        # Usually the workflow has just finished; the answer's sync reads its result.
        log.info("refresh of task %s not delivered: %r", task.task_id, exc)


REFRESH = TaskAction(
    name="refresh",
    summary="Ask the provider for the task's result now (through the task's workflow)",
    description=(
        "A finished task is returned as it is. Otherwise the running workflow queries the provider at once "
        "(a Temporal update); when the job is done, the workflow stops polling, stores the result and concludes "
        "the task."
    ),
    run=_refresh,
)


class _Callback(msgspec.Struct):
    id: str | None = None
    status: str | None = None


def callback_hint(body: bytes) -> CallbackHint:
    """The job id and status a callback body claims, read from ``id`` and ``status`` when it has them."""
    try:
        claimed = msgspec.json.decode(body, type=_Callback)
    except (msgspec.DecodeError, msgspec.ValidationError):
        claimed = _Callback()
    return CallbackHint(provider_task_id=claimed.id, status=claimed.status)


@dataclass(frozen=True)
class ProviderCallback:
    """The provider calls back: main gives each task's submit a callback URL with the task's token
    (``ActivityKit.callback_url``), checks the token, and signals the workflow, which only wakes its poller (the
    body is never trusted). ``hint`` reads what the body claims,
    for the log; ``challenge`` answers a provider that first verifies the URL: the value to echo (as JSON) when
    the body is such a challenge, else None."""

    hint: Callable[[bytes], CallbackHint] = callback_hint
    challenge: Callable[[bytes], Any] | None = None


@dataclass(frozen=True)
class IntegrationApi(Generic[RequestT]):
    request_type: type[RequestT]
    # The workflow's run method (or its registered name) started for every new task.
    workflow: Callable[..., Any] | str
    # The workflow's single input for a new task.
    build_input: Callable[[NewTask[RequestT]], Any]
    check: Callable[[RequestT], None] | None = None
    actions: Sequence[TaskAction] = field(default_factory=tuple[TaskAction, ...])
    callback: ProviderCallback | None = None
    execution_timeout: timedelta | None = None
    summary: str = ""


def sync_call_api(
    request_type: type[RequestT],
    workflow: Callable[..., Any] | str,
    *,
    check: Callable[[RequestT], None] | None = None,
    build_input: Callable[[NewTask[RequestT]], Any] | None = None,
    summary: str = "",
) -> IntegrationApi[RequestT]:
    """The sync-call pattern's API: create and read. The workflow's input is the task and the request, unless
    ``build_input`` makes another job of the request."""
    return IntegrationApi(request_type, workflow, build_input or _task_input, check, summary=summary)


def submit_poll_api(
    request_type: type[RequestT],
    workflow: Callable[..., Any] | str,
    *,
    check: Callable[[RequestT], None] | None = None,
    callback: ProviderCallback | None = ProviderCallback(),
    summary: str = "",
) -> IntegrationApi[RequestT]:
    """The submit-poll pattern's API: create and read, its refresh, and the provider's callback (``None`` for a
    provider that cannot call back). The workflow's input is the task and the request."""
    return IntegrationApi(request_type, workflow, _job_input, check, (REFRESH,), callback, summary=summary)


def _task_input(new: NewTask[Any]) -> TaskInput[Any]:
    return TaskInput(new.task, new.request)


def _job_input(new: NewTask[Any]) -> JobInput[Any]:
    return JobInput(new.task, new.request)

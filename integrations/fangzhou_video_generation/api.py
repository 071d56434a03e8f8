"""fangzhouVideoGeneration's HTTP API, mounted by main under /api/integrations/fangzhouVideoGeneration.

It talks only to main's task store and to the task's workflow: create starts it, a refresh is a Temporal
update, Ark's callback is a signal, and main's generic cancel cancels it. Ark itself is called only by the
workflow's activities.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

import msgspec
from litestar import Request, post
from litestar.di import NamedDependency
from litestar.params import FromPath, Parameter
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from services.main.auth import current_user
from services.main.errors import ApiError, not_found
from services.main.kit import InputError, IntegrationApi, StartContext
from services.main.schemas import TaskRead
from services.main.service import TaskService
from services.main.store import TaskRecord
from services.shared.submit_poll import CALLBACK_SIGNAL, REFRESH_UPDATE, CallbackHint
from services.shared.tasks import TaskEnvelope, TaskReport, is_terminal, workflow_id_for

from .schemas import (
    MAX_INLINE_IMAGE_CHARS,
    VideoInput,
    VideoRequest,
    image_fields,
    image_problem,
)
from .workflows.workflows import FangzhouVideoWorkflow

NAME = "fangzhouVideoGeneration"
# How long a refresh waits for the workflow's fresh query of Ark before answering with what is known.
REFRESH_WAIT_SECONDS = 20.0

log = logging.getLogger("fangzhou_video_generation.api")


def build_input(task: TaskRecord, request: VideoRequest, start: StartContext) -> VideoInput:
    return VideoInput(TaskEnvelope(task.id), request, callback_url=start.callback_url)


def check(request: VideoRequest) -> None:
    images = image_fields(request)
    for field, url in images:
        problem = image_problem(url)
        if problem is not None:
            raise InputError(field, problem)
    if request.reference_images and (request.first_frame is not None or request.last_frame is not None):
        raise InputError("reference_images", "reference images cannot be combined with first_frame or last_frame")
    if request.last_frame is not None and request.first_frame is None:
        raise InputError("last_frame", "a last frame needs a first frame")
    inline = [(field, url) for field, url in images if url.startswith("data:")]
    if sum(len(url) for _, url in inline) > MAX_INLINE_IMAGE_CHARS:
        raise InputError(
            inline[-1][0],
            f"inline (data URL) images may total at most {MAX_INLINE_IMAGE_CHARS} characters; "
            "give larger images as http(s) URLs",
        )


class CallbackAck(msgspec.Struct, frozen=True):
    # False when the task is already finished and the callback changes nothing.
    accepted: bool


class _ArkCallback(msgspec.Struct):
    """The fields of Ark's callback body (the task as GET returns it) that we log; nothing else is trusted."""

    id: str | None = None
    status: str | None = None


@post(
    "/tasks/{task_id:str}/refresh",
    status_code=200,
    operation_id="refresh_fangzhou_video_generation_task",
    summary="Ask Ark for the task's result now (through the task's workflow)",
    description=(
        "A finished task is returned as it is. Otherwise the running workflow queries Ark at once (a Temporal "
        "update); when Ark is done, the workflow stops polling, stores the video and concludes the task."
    ),
    tags=[NAME],
)
async def refresh_task(
    task_id: FromPath[str], request: Request[Any, Any, Any], tasks: NamedDependency[TaskService]
) -> TaskRead:
    record = await tasks.get_for(current_user(request), task_id, integration=NAME, sync=False)
    if is_terminal(record.status):
        return tasks.read(record)
    handle = tasks.temporal.get_workflow_handle(workflow_id_for(task_id))
    try:
        await asyncio.wait_for(handle.execute_update(REFRESH_UPDATE, result_type=TaskReport), REFRESH_WAIT_SECONDS)
    except TimeoutError:
        log.info("refresh of task %s: no fresh answer within %ss", task_id, REFRESH_WAIT_SECONDS)
    except (WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError, RPCError) as exc:
        # Usually the workflow has just finished; the sync below reads its result.
        log.info("refresh of task %s not delivered: %r", task_id, exc)
    return tasks.read(await tasks.sync(record))


@post(
    "/tasks/{task_id:str}/callback",
    status_code=200,
    operation_id="fangzhou_video_generation_callback",
    summary="Ark's callback_url for a task (authenticated by the task's callback secret)",
    description="Wakes the task's workflow, which then queries Ark: Ark does not sign callbacks.",
    tags=[NAME],
)
async def provider_callback(
    task_id: FromPath[str],
    request: Request[Any, Any, Any],
    tasks: NamedDependency[TaskService],
    secret: str | None = Parameter(required=False, max_length=256, description="the task's secret"),
) -> CallbackAck:
    if not secret:
        raise ApiError(401, "unauthorized", "missing callback secret")
    record = await tasks.store.get(task_id)
    # An unknown task and a wrong secret get the same answer, so the endpoint confirms nothing.
    if (
        record is None
        or record.integration != NAME
        or record.callback_secret is None
        or not hmac.compare_digest(record.callback_secret.encode(), secret.encode())
    ):
        raise not_found(f"task {task_id}")
    if is_terminal(record.status):
        return CallbackAck(accepted=False)
    try:
        body = msgspec.json.decode(await request.body(), type=_ArkCallback)
    except (msgspec.DecodeError, msgspec.ValidationError):
        body = _ArkCallback()
    handle = tasks.temporal.get_workflow_handle(workflow_id_for(task_id))
    try:
        await handle.signal(CALLBACK_SIGNAL, CallbackHint(provider_task_id=body.id, status=body.status))
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return CallbackAck(accepted=False)
        # Ark retries a callback that failed.
        raise ApiError(503, "temporal_unavailable", "could not deliver the callback; try again", True) from exc
    return CallbackAck(accepted=True)


api = IntegrationApi(
    request_type=VideoRequest,
    workflow=FangzhouVideoWorkflow.run,
    build_input=build_input,
    check=check,
    routes=[refresh_task, provider_callback],
    callback_secret=True,
    summary="Generate a video with Volcengine Ark (Seedance); the workflow submits, polls and stores the video.",
)

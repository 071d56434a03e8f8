"""Why a task's workflow cannot go on, for main's read-time sync.

A workflow task that raises (a bug, a change that no longer replays) is retried by Temporal without end: the
workflow stays running, answers no query, and its task would read as a silent ``running``. main says so instead:
``stalled: <reason>`` while it lasts, and the reason again once the execution timeout has ended the workflow.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryReverseRequest
from temporalio.client import Client, WorkflowExecutionDescription

# A workflow task on this attempt has failed or timed out twice in a row: no blip of a restarting worker.
STALLED_AT_ATTEMPT = 3
# The reason is looked for among this many newest events (one page), so a read stays bounded. Temporal writes only
# the first of a run of failed attempts, so it is usually among the last few.
RECENT_EVENTS = 50
MAX_REASON_CHARS = 300


def failing_attempts(description: WorkflowExecutionDescription) -> int:
    """How often the pending workflow task has been tried (0: none pending)."""
    raw = description.raw_description
    return raw.pending_workflow_task.attempt if raw.HasField("pending_workflow_task") else 0


def is_stalled(description: WorkflowExecutionDescription) -> bool:
    return failing_attempts(description) >= STALLED_AT_ATTEMPT


def execution_timeout(description: WorkflowExecutionDescription) -> timedelta | None:
    config = description.raw_description.execution_config
    if not config.HasField("workflow_execution_timeout"):
        return None
    timeout = config.workflow_execution_timeout.ToTimedelta()
    return timeout or None


async def last_task_failure(client: Client, description: WorkflowExecutionDescription) -> str | None:
    """Why the workflow's latest failed workflow task failed, from its newest events; None when none failed."""
    answer = await client.workflow_service.get_workflow_execution_history_reverse(
        GetWorkflowExecutionHistoryReverseRequest(
            namespace=client.namespace,
            execution=WorkflowExecution(workflow_id=description.id, run_id=description.run_id),
            maximum_page_size=RECENT_EVENTS,
        )
    )
    for event in answer.history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            attrs = event.workflow_task_failed_event_attributes
            cause = WorkflowTaskFailedCause.Name(attrs.cause).removeprefix("WORKFLOW_TASK_FAILED_CAUSE_")
            message = " ".join(attrs.failure.message.split()) or "no message"
            return _bounded(f"{message} ({cause.lower().replace('_', ' ')})")
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
            return "its workflow task timed out (no worker finished it)"
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            return None
    return None


def _bounded(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 3] + "..."

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, RetryState, TimeoutError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from services.shared import workflow_kit
    from services.shared.tasks import TaskReport, TaskResult

    from ..schemas import GENERATE_ACTIVITY, GeneratedImage, GenerateInput, ImageTaskInput

# Answers that no retry can change: the task fails at once with the provider's reason.
FINAL_ERRORS = ("blocked_prompt", "image_blocked", "no_image", "provider_rejected", "provider_auth")
# Transient causes: retried with backoff, then the task fails naming the last one.
TRANSIENT_ERRORS = ("provider_unavailable", "storage_unavailable")
GENERATE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=5,
    non_retryable_error_types=list(FINAL_ERRORS),
)
# One generateContent call may take minutes; the client's own timeout (GEMINI_TIMEOUT_SECONDS) is shorter.
GENERATE_START_TO_CLOSE = timedelta(minutes=10)
# The activity heartbeats every 2 s; a worker that dies is noticed after this long and the call is retried.
GENERATE_HEARTBEAT = timedelta(seconds=10)


@workflow.defn(name="NanoBanana2ImageWorkflow")
class NanoBanana2ImageWorkflow:
    def __init__(self) -> None:
        self._state = TaskReport(status="queued")

    @workflow.run
    async def run(self, input: ImageTaskInput) -> TaskReport:
        job = input.job
        self._state = TaskReport(status="running", progress=0.0)
        try:
            await workflow_kit.report(input.task_id, self._state)
            generated = await workflow.execute_activity(
                GENERATE_ACTIVITY,
                GenerateInput(task_id=input.task_id, job=job),
                result_type=GeneratedImage,
                start_to_close_timeout=GENERATE_START_TO_CLOSE,
                heartbeat_timeout=GENERATE_HEARTBEAT,
                retry_policy=GENERATE_RETRY,
            )
        except ActivityError as err:
            self._state = workflow_kit.cancelled() if is_cancelled_exception(err) else failure(err)
        except asyncio.CancelledError:
            self._state = workflow_kit.cancelled()
        else:
            data: dict[str, Any] = {
                "aspect_ratio": job.aspect_ratio,
                "image_size": job.image_size,
                "width": generated.width,
                "height": generated.height,
                "model": generated.model_version,
            }
            if generated.text:
                data["text"] = generated.text
            if generated.usage is not None:
                usage = generated.usage
                data["usage"] = {
                    "prompt_tokens": usage.prompt_tokens,
                    "output_tokens": usage.output_tokens,
                    "total_tokens": usage.total_tokens,
                }
            self._state = workflow_kit.succeeded(TaskResult(objects={"image": generated.image}, data=data))
        await workflow_kit.report(input.task_id, self._state)
        return self._state

    @workflow.query
    def task_state(self) -> TaskReport:
        return self._state


def failure(err: ActivityError) -> TaskReport:
    """The failed state for an activity that will not be retried again, naming the last cause."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and (cause.non_retryable or cause.type in FINAL_ERRORS):
        code = cause.type if cause.type in FINAL_ERRORS else "generation_failed"
        return workflow_kit.failed(code, cause.message)
    gave_up = _gave_up(err.retry_state)
    if isinstance(cause, ApplicationError):
        code = cause.type if cause.type in TRANSIENT_ERRORS else "generation_failed"
        return workflow_kit.failed(code, f"{gave_up}; last error: {cause.message}", retryable=True)
    if isinstance(cause, TimeoutError):
        what = cause.type.name.lower().replace("_", "-") if cause.type is not None else "unknown"
        return workflow_kit.failed(
            "provider_unavailable", f"{gave_up}; last error: the attempt hit its {what} timeout", retryable=True
        )
    return workflow_kit.failed("generation_failed", f"{gave_up}; last error: {cause or err}", retryable=True)


def _gave_up(state: RetryState | None) -> str:
    if state == RetryState.MAXIMUM_ATTEMPTS_REACHED:
        return f"gave up after {GENERATE_RETRY.maximum_attempts} attempts"
    return f"gave up ({state.name.lower() if state is not None else 'no retry state'})"

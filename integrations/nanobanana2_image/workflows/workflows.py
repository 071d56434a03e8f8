"""The task's workflow: the sync-call kit with Gemini's final errors, retry policy and result data."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from services.shared.sync_call import Call, SyncCallWorkflow
    from services.shared.tasks import TaskReport, TaskResult
    from services.shared.workflow_kit import Step

    from ..schemas import GENERATE_ACTIVITY, GeneratedImage, ImageJob, ImageTaskInput

# Answers that no retry can change: the task fails at once with the provider's reason.
FINAL_ERRORS = ("blocked_prompt", "image_blocked", "no_image", "provider_rejected", "provider_auth")
GENERATE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=5,
    non_retryable_error_types=list(FINAL_ERRORS),
)
GENERATE = Call(
    Step(
        GENERATE_ACTIVITY,
        # One generateContent call may take minutes; the client's own timeout (GEMINI_TIMEOUT_SECONDS) is shorter.
        start_to_close=timedelta(minutes=10),
        retry=GENERATE_RETRY,
        # The activity heartbeats every 2 s; a worker that dies is noticed after this long and the call is retried.
        heartbeat=timedelta(seconds=10),
    ),
    default_code="generation_failed",
)


def result(job: ImageJob, generated: GeneratedImage) -> TaskResult:
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
        data["usage"] = {
            "prompt_tokens": generated.usage.prompt_tokens,
            "output_tokens": generated.usage.output_tokens,
            "total_tokens": generated.usage.total_tokens,
        }
    return TaskResult(objects={"image": generated.image}, data=data)


@workflow.defn(name="NanoBanana2ImageWorkflow")
class NanoBanana2ImageWorkflow(SyncCallWorkflow):
    @workflow.run
    async def run(self, input: ImageTaskInput) -> TaskReport:
        return await self.call(input, GENERATE, GeneratedImage, result)

"""The task's workflow: the submit-poll kit with what Ark's statuses mean, its error codes and its cancel rule."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from services.shared.submit_poll import CancelOutcome, Job, SubmitPollWorkflow, Verdict
    from services.shared.tasks import TaskReport

    from ..schemas import NAMES, ArkTaskView, VideoInput


def verdict(view: ArkTaskView) -> Verdict:
    """Ark's statuses: queued and running (and any new one) keep the poll going; the rest are final."""
    if view.status == "succeeded":
        if not view.video_url:
            return Verdict.failed("ark_no_video", f"Ark task {view.id} succeeded without a video")
        return Verdict.succeeded(result_data(view))
    if view.status == "failed":
        return Verdict.failed(view.error_code or "ark_task_failed", view.error_message or f"Ark task {view.id} failed")
    if view.status == "expired":
        return Verdict.failed("ark_task_expired", f"Ark expired task {view.id} before it finished", retryable=True)
    if view.status == "cancelled":
        return Verdict.cancelled(f"Ark task {view.id} was cancelled outside this platform")
    return Verdict.pending()


def result_data(view: ArkTaskView) -> dict[str, object]:
    data: dict[str, object] = {
        "model": view.model or None,
        "seed": view.seed,
        "resolution": view.resolution,
        "ratio": view.ratio,
        "duration": view.duration,
        "framespersecond": view.framespersecond,
        "usage": view.usage or None,
    }
    return {key: value for key, value in data.items() if value is not None}


def cancel_note(outcome: CancelOutcome) -> str:
    # Ark drops only queued jobs; a job that has ended needs no word.
    if outcome.cancelled:
        return "Ark dropped the queued job"
    if outcome.status == "running":
        return "Ark was already generating the video and cannot stop a running job"
    return ""


JOB = Job(provider="Ark", codes="ark", activities=NAMES, view=ArkTaskView, verdict=verdict, cancel_note=cancel_note)


@workflow.defn(name="FangzhouVideoWorkflow")
class FangzhouVideoWorkflow(SubmitPollWorkflow):
    @workflow.run
    async def run(self, input: VideoInput) -> TaskReport:
        return await self.run_job(input, JOB)

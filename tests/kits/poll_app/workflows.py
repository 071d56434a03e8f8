from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from services.shared.submit_poll import Job, SubmitPollWorkflow, Verdict
    from services.shared.tasks import TaskReport

    from .schemas import NAMES, AppInput, ProviderJob


def verdict(job: ProviderJob) -> Verdict:
    if job.state == "done":
        return Verdict.succeeded({"job": job.id})
    if job.state == "error":
        return Verdict.failed("job_failed", job.error or "the job failed")
    if job.state == "killed":
        return Verdict.cancelled(f"job {job.id} was killed at the provider")
    return Verdict.pending()


# The provider has no idempotency key and can cancel a job.
JOB = Job(provider="Acme", codes="acme", activities=NAMES, view=ProviderJob, verdict=verdict, submit_attempts=3)
# The same provider, had it an idempotency key and no cancel endpoint.
KEYED = replace(JOB, idempotent_submit=True, can_cancel=False)
# A submit that must finish within 2 s (real time: the test server does not skip time while an activity runs).
TIGHT = replace(JOB, submit_timeout=timedelta(seconds=2))


@workflow.defn(name="KitPollWorkflow")
class KitPollWorkflow(SubmitPollWorkflow):
    @workflow.run
    async def run(self, input: AppInput) -> TaskReport:
        return await self.run_job(input, JOB)


@workflow.defn(name="KitPollKeyedWorkflow")
class KitPollKeyedWorkflow(SubmitPollWorkflow):
    @workflow.run
    async def run(self, input: AppInput) -> TaskReport:
        return await self.run_job(input, KEYED)


@workflow.defn(name="KitPollTightWorkflow")
class KitPollTightWorkflow(SubmitPollWorkflow):
    @workflow.run
    async def run(self, input: AppInput) -> TaskReport:
        return await self.run_job(input, TIGHT)

from __future__ import annotations

from temporalio import activity

from services.shared.activity_kit import ActivityKit
from services.shared.submit_poll import CancelOutcome, Copied, JobRef, PollPolicy, Submitted

from .provider import Client
from .schemas import NAMES, AppCopy, AppSubmit, ProviderJob


class AppActivities:
    def __init__(self, kit: ActivityKit, client: Client, poll: PollPolicy) -> None:
        self._kit = kit
        self._client = client
        self._poll = poll

    @activity.defn(name=NAMES.submit)
    async def submit(self, input: AppSubmit) -> Submitted:
        callback_url = await self._kit.callback_url(input.task)
        create = self._client.create(input.request.prompt, input.idempotency_key, callback_url)
        job_id = await self._kit.call(create)
        return await self._kit.submitted(input, job_id, input.poll or self._poll)

    @activity.defn(name=NAMES.query)
    async def query(self, input: JobRef) -> ProviderJob:
        return await self._kit.call(self._client.get(input.provider_task_id))

    @activity.defn(name=NAMES.cancel)
    async def cancel(self, input: JobRef) -> CancelOutcome:
        await self._kit.call(self._client.delete(input.provider_task_id))
        return CancelOutcome(cancelled=True, status="killed")

    @activity.defn(name=NAMES.copy)
    async def copy_result(self, input: AppCopy) -> Copied:
        # A fresh link for every attempt: the one an earlier attempt got may have expired.
        url = await self._kit.call(self._client.link(input.job.id))
        stored = await self._kit.copy(
            input.task,
            "result",
            "txt",
            self._client.http,
            url,
            limit=1024,
            timeout_seconds=10,
            content_type=lambda _: "text/plain",
        )
        return Copied({"result": stored})

"""The hand-written baseline's activities: store a text, or call the provider and store its image, in the same S3
server as the platform (keys under ``sdk/<job id>/``)."""

from __future__ import annotations

import asyncio

import httpx
from temporalio import activity

from .handwritten import PROVIDER_TIMEOUT_SECONDS, Settings, generate_body, image_of, put
from .sdk_workflows import GENERATE_IMAGE, STORE_TEXT, ImageJob, TextJob


class SdkActivities:
    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._http = http
        self._s3 = settings.s3()

    @activity.defn(name=STORE_TEXT)
    async def store_text(self, job: TextJob) -> str:
        key = f"sdk/{job.job_id}/echo.txt"
        await asyncio.to_thread(put, self._s3, self._settings.bucket, key, job.text.encode(), "text/plain")
        return key

    @activity.defn(name=GENERATE_IMAGE)
    async def generate_image(self, job: ImageJob) -> str:
        response = await self._http.post(
            self._settings.generate_url,
            content=generate_body(job.prompt),
            headers=self._settings.headers(),
            timeout=PROVIDER_TIMEOUT_SECONDS,
        )
        response.raise_for_status()
        key = f"sdk/{job.job_id}/image.png"
        await asyncio.to_thread(put, self._s3, self._settings.bucket, key, image_of(response.content), "image/png")
        return key

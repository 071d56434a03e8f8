from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from services.shared.activity_kit import ActivityKit, application_error
from services.shared.media_types import is_mp4, sniff_image_type
from services.shared.provider_client import ProviderError
from services.shared.submit_poll import CancelOutcome, Copied, JobRef, Submitted

from ..schemas import NAMES, ArkTaskView, VideoCopy, VideoSubmit
from .provider import ArkClient, ArkSettings, create_body, expires_after

MAX_FRAME_BYTES = 32 * 1024 * 1024


def video_type(head: bytes) -> str:
    if is_mp4(head):
        return "video/mp4"
    raise ApplicationError("Ark's video is not an MP4 file", type="ark_media_invalid", non_retryable=True)


def image_type(head: bytes) -> str:
    if (found := sniff_image_type(head)) in ("image/png", "image/jpeg", "image/webp"):
        return found
    message = "Ark's last frame is not a PNG, JPEG or WebP image"
    raise ApplicationError(message, type="ark_media_invalid", non_retryable=True)


class FangzhouActivities:
    def __init__(self, kit: ActivityKit, ark: ArkClient, settings: ArkSettings) -> None:
        self._kit = kit
        self._ark = ark
        self._settings = settings

    @activity.defn(name=NAMES.submit)
    async def submit(self, input: VideoSubmit) -> Submitted:
        poll = input.poll or self._settings.poll
        model = input.request.model or self._settings.model
        body = create_body(input.request, model, await self._kit.callback_url(input.task), expires_after(poll))
        provider_task_id = await self._kit.call(self._ark.create(body))
        activity.logger.info("task %s submitted to Ark as %s (%s)", input.task.id, provider_task_id, model)
        return await self._kit.submitted(input, provider_task_id, poll)

    @activity.defn(name=NAMES.query)
    async def query(self, input: JobRef) -> ArkTaskView:
        return await self._kit.call(self._ark.get(input.provider_task_id))

    @activity.defn(name=NAMES.cancel)
    async def cancel(self, input: JobRef) -> CancelOutcome:
        """Cancel the Ark job if it is still queued. Ark cannot stop a running job, and DELETE on a finished one
        would erase its record, so the status is read first."""
        job = input.provider_task_id
        try:
            view = await self._ark.get(job)
            if view.status != "queued":
                return CancelOutcome(cancelled=False, status=view.status)
            try:
                await self._ark.delete(job)
            except ProviderError as exc:
                if exc.status != 400:
                    raise
                # It started running between the read and the delete.
                return CancelOutcome(cancelled=False, status=(await self._ark.get(job)).status)
        except ProviderError as exc:
            if exc.status == 404:
                return CancelOutcome(cancelled=False, status="not_found")
            raise application_error(exc) from exc
        return CancelOutcome(cancelled=True, status="cancelled")

    @activity.defn(name=NAMES.copy)
    async def copy_result(self, input: VideoCopy) -> Copied:
        """Copy the video (and last frame) from Ark's short-lived links into object storage."""
        view, settings = input.job, self._settings
        assert view.video_url is not None, "the verdict sends only a job with a video here"
        video = await self._kit.copy(
            input.task,
            "video",
            "mp4",
            self._ark.http,
            view.video_url,
            limit=settings.max_video_bytes,
            timeout_seconds=settings.media_timeout_seconds,
            content_type=video_type,
        )
        objects = {"video": video}
        if view.last_frame_url:
            objects["last_frame"] = await self._kit.copy(
                input.task,
                "last_frame",
                "png",
                self._ark.http,
                view.last_frame_url,
                limit=MAX_FRAME_BYTES,
                timeout_seconds=settings.media_timeout_seconds,
                content_type=image_type,
            )
        return Copied(objects)

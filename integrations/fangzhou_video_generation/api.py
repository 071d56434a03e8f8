"""fangzhouVideoGeneration's HTTP API, mounted by main under /api/integrations/fangzhouVideoGeneration.

Create starts the task's workflow; the submit-poll pattern's refresh (a Temporal update) and Ark's callback (a
signal that only wakes the poller; Ark does not sign callbacks) are main's routes; main's generic cancel cancels
the workflow. Ark itself is called only by the workflow's activities.
"""

from __future__ import annotations

from services.main.kit import InputError, submit_poll_api

from .schemas import MAX_INLINE_IMAGE_CHARS, VideoRequest, image_fields, image_problem
from .workflows.workflows import JOB, FangzhouVideoWorkflow


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


api = submit_poll_api(
    VideoRequest,
    FangzhouVideoWorkflow.run,
    execution_timeout=JOB.execution_timeout,
    check=check,
    summary="Generate a video with Volcengine Ark (Seedance); the workflow submits, polls and stores the video.",
)

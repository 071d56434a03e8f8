"""nanobanana2-image's HTTP API, mounted by main under /api/integrations/nanobanana2-image.

It validates the request and starts the workflow; main answers 202 at once. The Gemini call, the upload to
object storage and every state report happen in the worker. Status reads are main's generic
``GET .../tasks/{id}``, synced with Temporal at query time.
"""

from __future__ import annotations

from services.main.kit import InputError, NewTask, sync_call_api

from .schemas import ImageRequest, ImageTaskInput, InvalidFieldError, to_job
from .workflows.workflows import GENERATE, NanoBanana2ImageWorkflow


def check(request: ImageRequest) -> None:
    try:
        to_job(request)
    except InvalidFieldError as exc:
        raise InputError(exc.field, exc.message) from exc


def build_input(new: NewTask[ImageRequest]) -> ImageTaskInput:
    return ImageTaskInput(new.task, to_job(new.request))


api = sync_call_api(
    ImageRequest,
    NanoBanana2ImageWorkflow.run,
    execution_timeout=GENERATE.execution_timeout,
    check=check,
    build_input=build_input,
    summary=(
        "Generate an image with Gemini Nano Banana 2 from a prompt and optional reference images. "
        "Answers 202 with the task; the image appears as output.objects.image (a presigned URL) when it succeeds."
    ),
)

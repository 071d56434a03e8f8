"""Input and output types of the fangzhouVideoGeneration integration, shared by its API and its workflow.

Nothing here does I/O: the workflow sandbox imports this module, and so does main.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Literal, TypeAlias

import msgspec

from services.shared.submit_poll import Activities, CopyInput, JobInput, SubmitInput

NAMES = Activities.named("fangzhou")

# Images travel inside the workflow input and the submit activity's input, and Temporal rejects payloads over
# 2 MB: inline images stay well below that, larger ones must be given as http(s) URLs.
MAX_URL_CHARS = 2048
MAX_DATA_URL_CHARS = 1_000_000
MAX_INLINE_IMAGE_CHARS = 1_400_000
MAX_REFERENCE_IMAGES = 4

Ratio = Literal["16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "adaptive"]
Resolution = Literal["480p", "720p", "1080p"]
ImageRef = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_DATA_URL_CHARS,
        description="an http(s) URL, or data:image/<png|jpeg|webp>;base64,<data>",
    ),
]


class VideoRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a user asks for; maps one to one onto Ark's create-task request."""

    prompt: Annotated[str, msgspec.Meta(min_length=1, max_length=5000, description="what the video shows")]
    model: (
        Annotated[
            str,
            msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description="Ark model; default from settings"),
        ]
        | None
    ) = None
    first_frame: ImageRef | None = None
    last_frame: ImageRef | None = None
    reference_images: Annotated[
        tuple[ImageRef, ...],
        msgspec.Meta(max_length=MAX_REFERENCE_IMAGES, description="1 to 4 reference images (no first/last frame)"),
    ] = ()
    ratio: Ratio | None = None
    duration: Annotated[int, msgspec.Meta(ge=2, le=12, description="seconds")] | None = None
    resolution: Resolution | None = None
    seed: Annotated[int, msgspec.Meta(ge=-1, le=2**32 - 1, description="-1: random")] | None = None
    watermark: bool | None = None
    camera_fixed: bool | None = None
    return_last_frame: bool = False


class ArkTaskView(msgspec.Struct, frozen=True):
    """The parts of Ark's task that the workflow acts on."""

    id: str
    status: str
    model: str = ""
    video_url: str | None = None
    last_frame_url: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    seed: int | None = None
    resolution: str | None = None
    ratio: str | None = None
    duration: int | None = None
    framespersecond: int | None = None
    usage: dict[str, int] = msgspec.field(default_factory=dict)


VideoInput: TypeAlias = JobInput[VideoRequest]
VideoSubmit: TypeAlias = SubmitInput[VideoRequest]
VideoCopy: TypeAlias = CopyInput[ArkTaskView]


_DATA_URL = re.compile(r"^data:image/(png|jpeg|webp);base64,")
_HTTP_URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$")


def image_fields(request: VideoRequest) -> list[tuple[str, str]]:
    """Every image of a request with the name of its field."""
    frames = (("first_frame", request.first_frame), ("last_frame", request.last_frame))
    images = [(name, url) for name, url in frames if url is not None]
    images += [(f"reference_images[{i}]", url) for i, url in enumerate(request.reference_images)]
    return images


def image_problem(url: str) -> str | None:
    """Why ``url`` is not an image reference Ark accepts, or None."""
    if url.startswith(("http://", "https://")):
        if len(url) > MAX_URL_CHARS:
            return f"URLs are limited to {MAX_URL_CHARS} characters"
        return None if _HTTP_URL.match(url) else "not a valid http(s) URL"
    if not _DATA_URL.match(url):
        return "must be an http(s) URL or data:image/<png|jpeg|webp>;base64,<data>"
    try:
        base64.b64decode(url.partition(",")[2], validate=True)
    except (binascii.Error, ValueError):
        return "the base64 data is invalid"
    return None

"""Input and output types of the nanobanana2-image integration, shared by its API, workflow and activity.

Pure and deterministic (the workflow imports this module), so no I/O here.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Literal, TypeAlias, get_args

import msgspec

from services.shared.media_types import sniff_image_type
from services.shared.sync_call import CallInput, TaskInput
from services.shared.tasks import StoredObject

GENERATE_ACTIVITY = "nanobanana2_image.generate"

# What gemini-3.1-flash-image-preview accepts (imageConfig.aspectRatio and imageConfig.imageSize).
AspectRatio = Literal[
    "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9", "1:4", "4:1", "1:8", "8:1"
]
ImageSize = Literal["512", "1K", "2K", "4K"]
InputMimeType = Literal["image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"]
INPUT_MIME_TYPES: tuple[str, ...] = get_args(InputMimeType)

MAX_PROMPT_CHARS = 10_000
# The model takes at most 14 reference images.
MAX_REFERENCE_IMAGES = 14
# Reference images travel inside the workflow and activity inputs (the API never writes to object storage),
# so together they stay well under Temporal's 2 MB payload limit once base64-encoded.
MAX_REFERENCE_BYTES = 1024 * 1024
MAX_REFERENCE_CHARS = 1_500_000

_DATA_URL = re.compile(r"data:(?P<mime>[^;,]+)(?P<params>(?:;[^;,]*)*?);base64,(?P<data>.*)", re.DOTALL)


class ReferenceImage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    data: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=MAX_REFERENCE_CHARS,
            description="a data URL (data:image/png;base64,...) or plain base64 together with mime_type",
        ),
    ]
    mime_type: InputMimeType | None = None


class ImageRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    prompt: Annotated[
        str, msgspec.Meta(min_length=1, max_length=MAX_PROMPT_CHARS, description="what the image should show")
    ]
    aspect_ratio: Annotated[AspectRatio, msgspec.Meta(description="width:height of the image")] = "1:1"
    image_size: Annotated[ImageSize, msgspec.Meta(description="resolution class of the image")] = "1K"
    reference_images: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=MAX_REFERENCE_CHARS)] | ReferenceImage],
        msgspec.Meta(
            max_length=MAX_REFERENCE_IMAGES,
            description=(
                "images to edit or draw from: data URLs, or {data, mime_type} objects; "
                f"at most {MAX_REFERENCE_IMAGES}, {MAX_REFERENCE_BYTES} bytes in total"
            ),
        ),
    ] = msgspec.field(default_factory=list)


class InlineImage(msgspec.Struct, frozen=True):
    """A reference image as Gemini takes it: MIME type and standard base64."""

    mime_type: str
    data: str


class ImageJob(msgspec.Struct, frozen=True):
    """A validated request in the form the provider call needs."""

    prompt: str
    aspect_ratio: str
    image_size: str
    reference_images: tuple[InlineImage, ...] = ()


ImageTaskInput: TypeAlias = TaskInput[ImageJob]
GenerateInput: TypeAlias = CallInput[ImageJob]


class Usage(msgspec.Struct, frozen=True):
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None


class GeneratedImage(msgspec.Struct, frozen=True):
    """What the activity returns: where the image is, and small metadata. Never the image bytes."""

    image: StoredObject
    width: int | None = None
    height: int | None = None
    model_version: str | None = None
    text: str | None = None
    usage: Usage | None = None


class InvalidFieldError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def to_job(request: ImageRequest) -> ImageJob:
    """Check what the schema cannot express and normalise the reference images; raises InvalidFieldError."""
    if not request.prompt.strip():
        raise InvalidFieldError("prompt", "must not be blank")
    images: list[InlineImage] = []
    total = 0
    for index, item in enumerate(request.reference_images):
        field = f"reference_images[{index}]"
        mime_type, raw = _decode_reference(item, field)
        total += len(raw)
        if total > MAX_REFERENCE_BYTES:
            raise InvalidFieldError(
                "reference_images", f"together more than {MAX_REFERENCE_BYTES} bytes (decoded); send smaller images"
            )
        images.append(InlineImage(mime_type=mime_type, data=base64.b64encode(raw).decode()))
    return ImageJob(request.prompt, request.aspect_ratio, request.image_size, tuple(images))


def _decode_reference(item: str | ReferenceImage, field: str) -> tuple[str, bytes]:
    if isinstance(item, str):
        text, declared = item, None
    else:
        text, declared = item.data, item.mime_type
    mime_type: str | None = declared
    if text.startswith("data:"):
        match = _DATA_URL.fullmatch(text)
        if match is None:
            raise InvalidFieldError(field, "not a base64 data URL (expected data:<mime type>;base64,<data>)")
        url_mime = match["mime"].strip().lower()
        if declared is not None and declared != url_mime:
            raise InvalidFieldError(field, f"mime_type {declared} does not match the data URL's {url_mime}")
        mime_type, text = url_mime, match["data"]
    elif isinstance(item, str):
        raise InvalidFieldError(field, "not a data URL; send data:<mime type>;base64,<data> or {data, mime_type}")
    if mime_type is None:
        raise InvalidFieldError(f"{field}.mime_type", "required when data is plain base64")
    if mime_type not in INPUT_MIME_TYPES:
        raise InvalidFieldError(field, f"unsupported image type {mime_type}; use one of {', '.join(INPUT_MIME_TYPES)}")
    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidFieldError(field, "data is not valid base64") from None
    if not raw:
        raise InvalidFieldError(field, "data is empty")
    found = sniff_image_type(raw)
    if found is None or (found != mime_type and not {found, mime_type} <= {"image/heic", "image/heif"}):
        raise InvalidFieldError(field, f"data is not an image of type {mime_type}")
    return mime_type, raw

"""The API part without a server: request decoding, the field checks, and the workflow input it builds."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from integrations.nanobanana2_image.api import api, build_input, check
from integrations.nanobanana2_image.schemas import (
    MAX_REFERENCE_BYTES,
    ImageJob,
    ImageRequest,
    ImageTaskInput,
    InlineImage,
    ReferenceImage,
)
from integrations.nanobanana2_image.workflows.workflows import NanoBanana2ImageWorkflow
from services.main.kit import InputError, NewTask
from services.shared.media_types import sniff_image_type
from services.shared.tasks import TaskEnvelope
from services.simulator.media import encode_png, render_rows

PNG = encode_png(4, 4, render_rows(4, 4, (0, 0, 0), (255, 255, 255), 1))
PNG_B64 = base64.b64encode(PNG).decode()
REPO = Path(__file__).resolve().parents[3]
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(32)


def decode(body: dict[str, Any]) -> ImageRequest:
    return msgspec.convert(body, ImageRequest)


def test_the_api_declares_the_request_type_workflow_and_check() -> None:
    assert api.request_type is ImageRequest
    assert api.workflow == NanoBanana2ImageWorkflow.run
    assert api.check is check
    assert api.callback is None
    assert api.actions == ()


def test_defaults_and_the_workflow_input_with_normalised_reference_images() -> None:
    request = decode(
        {
            "prompt": "put the cat on a sofa",
            "aspect_ratio": "21:9",
            "image_size": "4K",
            "reference_images": [
                f"data:image/png;base64,{PNG_B64}",
                {"data": base64.urlsafe_b64encode(JPEG).decode(), "mime_type": "image/jpeg"},
                {"data": f"data:image/png;base64,{PNG_B64}", "mime_type": "image/png"},
            ],
        }
    )
    check(request)
    built = build_input(NewTask(TaskEnvelope("abc"), request))
    jpeg_b64 = base64.b64encode(JPEG).decode()
    assert built == ImageTaskInput(
        task=TaskEnvelope("abc"),
        job=ImageJob(
            prompt="put the cat on a sofa",
            aspect_ratio="21:9",
            image_size="4K",
            reference_images=(
                InlineImage("image/png", PNG_B64),
                InlineImage("image/jpeg", jpeg_b64),
                InlineImage("image/png", PNG_B64),
            ),
        ),
    )
    minimal = decode({"prompt": "x"})
    assert (minimal.aspect_ratio, minimal.image_size, minimal.reference_images) == ("1:1", "1K", [])


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"prompt": ""}, "$.prompt"),
        ({"prompt": "x" * 10_001}, "$.prompt"),
        ({"prompt": "x", "aspect_ratio": "7:3"}, "$.aspect_ratio"),
        ({"prompt": "x", "image_size": "8K"}, "$.image_size"),
        ({"prompt": "x", "reference_images": [f"data:image/png;base64,{PNG_B64}"] * 15}, "$.reference_images"),
        ({"prompt": "x", "reference_images": [{"data": PNG_B64, "mime_type": "image/gif"}]}, "mime_type"),
        ({"prompt": "x", "reference_images": [5]}, "$.reference_images[0]"),
        ({"prompt": "x", "seed": 3}, "seed"),
    ],
)
def test_the_schema_rejects_bad_fields_naming_them(body: dict[str, Any], where: str) -> None:
    with pytest.raises(msgspec.ValidationError) as caught:
        decode(body)
    assert where in str(caught.value)


@pytest.mark.parametrize(
    ("reference", "field", "words"),
    [
        ("data:image/png;base64", "reference_images[0]", "not a base64 data URL"),
        ("data:image/png,plain-text", "reference_images[0]", "not a base64 data URL"),
        (PNG_B64, "reference_images[0]", "not a data URL"),
        ("data:image/gif;base64,R0lGODlh", "reference_images[0]", "unsupported image type image/gif"),
        ("data:image/png;base64,@@@@", "reference_images[0]", "not valid base64"),
        ("data:image/png;base64,", "reference_images[0]", "data is empty"),
        (f"data:image/jpeg;base64,{PNG_B64}", "reference_images[0]", "not an image of type image/jpeg"),
        (
            "data:image/png;base64," + base64.b64encode(b"hello").decode(),
            "reference_images[0]",
            "not an image of type image/png",
        ),
        ({"data": PNG_B64}, "reference_images[0].mime_type", "required when data is plain base64"),
        (
            {"data": f"data:image/png;base64,{PNG_B64}", "mime_type": "image/jpeg"},
            "reference_images[0]",
            "does not match",
        ),
    ],
)
def test_bad_reference_images_are_input_errors_naming_the_item(
    reference: str | dict[str, str], field: str, words: str
) -> None:
    request = decode({"prompt": "x", "reference_images": [reference]})
    with pytest.raises(InputError) as caught:
        check(request)
    assert caught.value.field == field
    assert words in caught.value.message


def test_reference_images_are_bounded_in_total_size() -> None:
    # Each is under the per-string limit; together they exceed what may travel in a workflow input.
    big = PNG + bytes(MAX_REFERENCE_BYTES // 2)
    item = f"data:image/png;base64,{base64.b64encode(big).decode()}"
    check(decode({"prompt": "x", "reference_images": [item]}))
    with pytest.raises(InputError) as caught:
        check(decode({"prompt": "x", "reference_images": [item, item]}))
    assert caught.value.field == "reference_images"
    assert str(MAX_REFERENCE_BYTES) in caught.value.message


def test_a_blank_prompt_is_an_input_error() -> None:
    with pytest.raises(InputError) as caught:
        check(decode({"prompt": "  \n "}))
    assert caught.value.field == "prompt"


def test_image_types_are_recognised_by_their_first_bytes() -> None:
    assert sniff_image_type(PNG) == "image/png"
    assert sniff_image_type(JPEG) == "image/jpeg"
    assert sniff_image_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff_image_type(b"\x00\x00\x00\x18ftypheic\x00\x00") == "image/heic"
    assert sniff_image_type(b"\x00\x00\x00\x18ftypmif1\x00\x00") == "image/heif"
    assert sniff_image_type(b"GIF89a") is None
    assert ReferenceImage(data="x").mime_type is None


def test_the_api_part_never_loads_the_provider_client_the_activities_or_object_storage() -> None:
    # main mounts api.py; the Gemini call, the upload and the reports belong to the worker alone.
    code = (
        "import sys, integrations.nanobanana2_image.api\n"
        "print(sorted(m for m in sys.modules if m.endswith(('.provider', '.activities', '.storage')) or m == 'minio'))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]", loaded.stdout

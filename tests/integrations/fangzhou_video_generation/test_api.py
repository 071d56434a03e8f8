"""The API part: input checks, and what main loads when it mounts the integration."""

from __future__ import annotations

import base64
import subprocess
import sys

import msgspec
import pytest

from integrations.fangzhou_video_generation.api import check
from integrations.fangzhou_video_generation.schemas import VideoRequest
from services.main.kit import InputError
from services.simulator.media import encode_png, render_rows
from tests.stack import REPO

PNG_URL = (
    "data:image/png;base64," + base64.b64encode(encode_png(8, 8, render_rows(8, 8, (1, 2, 3), (4, 5, 6), 2))).decode()
)


def test_input_checks_name_the_field() -> None:
    check(VideoRequest(prompt="p", first_frame=PNG_URL, last_frame="https://example.com/end.jpg"))
    check(VideoRequest(prompt="p", reference_images=(PNG_URL, "https://example.com/r.webp")))
    cases = [
        (VideoRequest(prompt="p", first_frame=PNG_URL, reference_images=(PNG_URL,)), "reference_images"),
        (VideoRequest(prompt="p", last_frame=PNG_URL), "last_frame"),
        (VideoRequest(prompt="p", first_frame="ftp://example.com/a.png"), "first_frame"),
        (VideoRequest(prompt="p", first_frame="data:image/gif;base64,R0lGOD"), "first_frame"),
        (VideoRequest(prompt="p", reference_images=(PNG_URL, "data:image/png;base64,!!")), "reference_images[1]"),
        (VideoRequest(prompt="p", first_frame="https://" + "a" * 3000), "first_frame"),
        (
            VideoRequest(prompt="p", reference_images=("data:image/png;base64," + "A" * 800_000,) * 2),
            "reference_images[1]",
        ),
    ]
    for request, field in cases:
        with pytest.raises(InputError) as caught:
            check(request)
        assert caught.value.field == field, (field, caught.value)
    with pytest.raises(msgspec.ValidationError, match="reference_images"):
        msgspec.convert({"prompt": "p", "reference_images": ["https://x/1.png"] * 5}, VideoRequest)


def test_the_api_part_never_loads_the_ark_client_or_the_activities() -> None:
    # main mounts api.py; every call to Ark belongs to the worker's activities.
    code = (
        "import sys, integrations.fangzhou_video_generation.api\n"
        "print(sorted(m for m in sys.modules if m.startswith('integrations.fangzhou_video_generation.workflows.')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "['integrations.fangzhou_video_generation.workflows.workflows']", loaded.stdout

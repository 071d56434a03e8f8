"""Types stored in history outlive the code that wrote them: a payload with fields today's types no longer have
still decodes (and a recorded history carrying such fields still replays), while the API edge still refuses a
field it does not know, naming it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload

from integrations.echo.schemas import EchoInput, EchoRequest
from integrations.fangzhou_video_generation.schemas import VideoInput, VideoRequest
from integrations.nanobanana2_image.schemas import ImageJob, ImageTaskInput, InlineImage
from services.shared.converter import data_converter
from services.shared.submit_poll import PollPolicy, PollState
from services.shared.tasks import TaskEnvelope
from tests.stack import Api

from .test_replay import HISTORIES, load, replayer, served

__all__ = ["served"]

CONVERTER = data_converter.payload_converter
# The fields of stored structs (not maps) that hold structs themselves.
NESTED = {"task", "job", "request", "resume", "poll", "report", "error"}


def stored(value: Any) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())


def test_payloads_with_fields_the_types_lack_decode() -> None:
    echo = {"task": {"id": "t1", "tenant": "gone"}, "job": {"message": "hi", "colour": "red"}, "v": 2}
    assert CONVERTER.from_payload(stored(echo), EchoInput) == EchoInput(TaskEnvelope("t1"), EchoRequest("hi"))
    image = {
        "task": {"id": "t2"},
        "job": {
            "prompt": "a cat",
            "aspect_ratio": "1:1",
            "image_size": "1K",
            "reference_images": [{"mime_type": "image/png", "data": "AAAA", "width": 4}],
            "style": "old",
        },
    }
    job = ImageJob("a cat", "1:1", "1K", (InlineImage("image/png", "AAAA"),))
    assert CONVERTER.from_payload(stored(image), ImageTaskInput) == ImageTaskInput(TaskEnvelope("t2"), job)
    resume = {"provider_task_id": "j", "poll": {"deadline_seconds": 60, "jitter": 0.1}, "deadline": 1.0}
    video = {
        "task": {"id": "t3"},
        "request": {"prompt": "waves", "duration": 2, "audio": True},
        "resume": {**resume, "delay": 1.0, "polls": 3, "runs": 2, "cursor": "x"},
    }
    assert CONVERTER.from_payload(stored(video), VideoInput) == VideoInput(
        TaskEnvelope("t3"),
        VideoRequest("waves", duration=2),
        resume=PollState("j", PollPolicy(deadline_seconds=60), 1.0, 1.0, 3, 2),
    )


def test_a_field_added_with_a_default_decodes_from_a_payload_without_it() -> None:
    old = {"task": {"id": "t1"}, "job": {"message": "hi"}}
    assert CONVERTER.from_payload(stored(old), EchoInput).job.fail_attempts == 0


def test_a_payload_that_breaks_its_type_still_fails() -> None:
    with pytest.raises(Exception, match="delay_seconds"):
        CONVERTER.from_payload(stored({"task": {"id": "t"}, "job": {"message": "x", "delay_seconds": -1}}), EchoInput)


def grown(value: Any) -> Any:
    """``value`` with a field no type has, added to every stored struct in it."""
    if isinstance(value, dict):
        return {"added_later": [1], **{k: grown(v) if k in NESTED else v for k, v in value.items()}}
    return value


def grow_payloads(message: Message) -> int:
    """Adds a field to every JSON object payload inside ``message``; how many it changed."""
    if isinstance(message, Payload):
        if message.metadata.get("encoding") != b"json/plain" or not message.data.startswith(b"{"):
            return 0
        message.data = json.dumps(grown(json.loads(message.data))).encode()
        return 1
    changed = 0
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            items: Sequence[Any] = [v for v in value.values() if isinstance(v, Message)]
        elif field.is_repeated:
            items = value
        else:
            items = [value]
        changed += sum(grow_payloads(item) for item in items)
    return changed


@pytest.mark.parametrize(
    "path",
    [
        "echo/success",
        "nanobanana2-image/success",
        "fangzhouVideoGeneration/continue-as-new.1",
        "fangzhouVideoGeneration/continue-as-new.2",
    ],
)
async def test_a_history_whose_payloads_have_fields_the_types_lack_replays(served: dict[str, Any], path: str) -> None:
    integration, name = path.split("/")
    history = load(HISTORIES / integration / f"{name}.json")
    assert sum(grow_payloads(event) for event in history.events) >= 4
    await replayer(served[integration]).replay_workflow(history)


@pytest.mark.integration
async def test_the_api_edge_refuses_unknown_fields_naming_them(alice: Api) -> None:
    top = await alice.create("echo", {"message": "hi", "colour": "red"})
    assert top.status_code == 400, top.text
    assert "colour" in top.json()["message"]
    nested = await alice.create(
        "nanobanana2-image",
        {"prompt": "a cat", "reference_images": [{"data": "AAAA", "mime_type": "image/png", "width": 4}]},
    )
    assert nested.status_code == 400, nested.text
    assert "width" in nested.json()["message"]

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from services.shared.converter import data_converter
from services.shared.tasks import StoredObject, TaskReport, TaskResult


class Stamped(msgspec.Struct):
    at: datetime
    name: str = "x"


def test_structs_round_trip_as_plain_json() -> None:
    report = TaskReport(
        status="succeeded",
        progress=1.0,
        result=TaskResult(objects={"image": StoredObject("k", "image/png", 3)}, data={"w": 1}),
    )
    stamped = Stamped(at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    converter = data_converter.payload_converter
    payloads = converter.to_payloads([report, stamped, None, b"raw"])
    assert payloads[0].metadata["encoding"] == b"json/plain"
    assert msgspec.json.decode(payloads[0].data)["result"]["objects"]["image"]["key"] == "k"
    assert converter.from_payloads(payloads, [TaskReport, Stamped, type(None), bytes]) == [
        report,
        stamped,
        None,
        b"raw",
    ]


def test_decoding_validates_against_the_type_hint() -> None:
    payload = data_converter.payload_converter.to_payloads([{"status": "exploded"}])
    try:
        data_converter.payload_converter.from_payloads(payload, [TaskReport])
    except msgspec.ValidationError as exc:
        assert "status" in str(exc)
    else:
        raise AssertionError("an invalid status must not decode")

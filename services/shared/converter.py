"""Temporal data converter that speaks msgspec.

Workflow and activity inputs and outputs are ``msgspec.Struct`` types, which the SDK's default JSON
converter cannot encode or decode. This converter replaces only the ``json/plain`` encoding, so payloads
stay plain JSON (readable in the Temporal UI and by other SDKs).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    EncodingPayloadConverter,
    JSONPlainPayloadConverter,
)

_ENCODING = "json/plain"


class MsgspecJSONPayloadConverter(EncodingPayloadConverter):
    @property
    def encoding(self) -> str:
        return _ENCODING

    def to_payload(self, value: Any) -> Payload | None:
        try:
            data = msgspec.json.encode(value)
        except TypeError:
            return None
        return Payload(metadata={"encoding": _ENCODING.encode()}, data=data)

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        return msgspec.json.decode(payload.data, type=type_hint if type_hint is not None else Any)


class MsgspecPayloadConverter(CompositePayloadConverter):
    def __init__(self) -> None:
        super().__init__(
            *(
                MsgspecJSONPayloadConverter() if isinstance(c, JSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


data_converter = dataclasses.replace(DataConverter.default, payload_converter_class=MsgspecPayloadConverter)

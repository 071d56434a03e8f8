"""Temporal data converter that speaks msgspec.

Workflow and activity inputs and outputs are ``msgspec.Struct`` types, which the SDK's default JSON
converter cannot encode or decode. This converter replaces only the ``json/plain`` encoding, so payloads
stay plain JSON (readable in the Temporal UI and by other SDKs).

Payloads live in history as long as their workflow runs, and a deploy changes the types under them: a payload
decodes with the fields its type no longer has left out, even where the type forbids unknown fields (request
types do, to be strict at the API edge). The rest of the rule (prompt/output/safe-deploys.md): new fields get
defaults, and no field changes its type or tightens its constraints.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import msgspec
import msgspec.inspect as mi
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
        if type_hint is None:
            return msgspec.json.decode(payload.data)
        try:
            return msgspec.json.decode(payload.data, type=type_hint)
        except msgspec.ValidationError:
            # Most likely written before a field was removed: decoded again without the fields the type lacks
            # (any other problem fails again, as it should).
            known = _known(_info(type_hint), msgspec.json.decode(payload.data))
            return msgspec.json.decode(msgspec.json.encode(known), type=type_hint)


_OBJECTS = (mi.StructType, mi.TypedDictType, mi.DataclassType)


@functools.cache
def _info(type_hint: Any) -> mi.Type:
    return mi.type_info(type_hint)


def _bare(t: mi.Type) -> mi.Type:
    return _bare(t.type) if isinstance(t, mi.Metadata) else t


def _known(t: mi.Type, value: Any) -> Any:
    """``value`` (decoded JSON) without the object fields that type ``t`` does not have, at any depth."""
    if isinstance(t, mi.Metadata):
        return _known(t.type, value)
    if isinstance(t, _OBJECTS) and isinstance(value, dict):
        fields = {f.encode_name: f.type for f in t.fields}
        tag = t.tag_field if isinstance(t, mi.StructType) else None
        return {k: v if k == tag else _known(fields[k], v) for k, v in value.items() if k in fields or k == tag}
    if isinstance(t, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)) and isinstance(value, list):
        return [_known(t.item_type, item) for item in value]
    if isinstance(t, mi.TupleType) and isinstance(value, list):
        return [_known(item_type, item) for item_type, item in zip(t.item_types, value, strict=False)]
    if isinstance(t, mi.DictType) and isinstance(value, dict):
        return {k: _known(t.value_type, v) for k, v in value.items()}
    if isinstance(t, mi.UnionType) and isinstance(value, dict):
        objects = [m for m in map(_bare, t.types) if isinstance(m, (*_OBJECTS, mi.DictType))]
        tagged = [
            m for m in objects if isinstance(m, mi.StructType) and m.tag_field and value.get(m.tag_field) == m.tag
        ]
        chosen = tagged or objects
        return _known(chosen[0], value) if chosen else value
    return value


class MsgspecPayloadConverter(CompositePayloadConverter):
    def __init__(self) -> None:
        super().__init__(
            *(
                MsgspecJSONPayloadConverter() if isinstance(c, JSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


data_converter = dataclasses.replace(DataConverter.default, payload_converter_class=MsgspecPayloadConverter)

"""The largest JSON body a request type admits, derived from the limits its schema declares, so that a create route
refuses a bigger body (413) before it reads it, instead of reading whatever a client sends up to a fixed size."""

from __future__ import annotations

from typing import Any

import msgspec
import msgspec.inspect as mi

# A character of a JSON string takes at most 6 bytes on the wire (``\\uXXXX``, as clients that escape non-ASCII
# text send it).
STRING_CHAR_BYTES = 6
NUMBER_BYTES = 32
DATE_BYTES = 40
# Room for a pretty-printed body: indentation and line breaks around each value.
WHITESPACE_BYTES = 64


def max_json_bytes(request_type: Any) -> int | None:
    """An upper bound of the size of any valid JSON encoding of ``request_type``; None when the schema leaves some
    part unbounded (a string, list or map without a maximum length, or ``Any``)."""
    return _bound(mi.type_info(request_type))


def _bound(t: mi.Type) -> int | None:
    if isinstance(t, mi.Metadata):
        return _bound(t.type)
    if isinstance(t, mi.StructType):
        total = 2
        for f in t.fields:
            value = _bound(f.type)
            if value is None:
                return None
            total += len(f.encode_name) * STRING_CHAR_BYTES + 4 + value + WHITESPACE_BYTES
        return total
    if isinstance(t, mi.StrType):
        return None if t.max_length is None else 2 + t.max_length * STRING_CHAR_BYTES
    if isinstance(t, (mi.IntType, mi.FloatType, mi.DecimalType)):
        return NUMBER_BYTES
    if isinstance(t, mi.BoolType):
        return 5
    if isinstance(t, mi.NoneType):
        return 4
    if isinstance(t, (mi.DateTimeType, mi.DateType, mi.TimeType, mi.TimeDeltaType, mi.UUIDType)):
        return DATE_BYTES
    if isinstance(t, mi.LiteralType):
        return max(len(msgspec.json.encode(v)) * STRING_CHAR_BYTES for v in t.values)
    if isinstance(t, mi.EnumType):
        return max(len(msgspec.json.encode(m.value)) * STRING_CHAR_BYTES for m in t.cls)
    if isinstance(t, mi.UnionType):
        bounds = [_bound(member) for member in t.types]
        return None if any(b is None for b in bounds) else max(b for b in bounds if b is not None)
    if isinstance(t, mi.TupleType):
        items = [_bound(item) for item in t.item_types]
        return None if any(b is None for b in items) else 2 + sum((b or 0) + 1 + WHITESPACE_BYTES for b in items)
    if isinstance(t, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
        item = _bound(t.item_type)
        if item is None or t.max_length is None:
            return None
        return 2 + t.max_length * (item + 1 + WHITESPACE_BYTES)
    if isinstance(t, mi.DictType):
        key, value = _bound(t.key_type), _bound(t.value_type)
        if key is None or value is None or t.max_length is None:
            return None
        return 2 + t.max_length * (key + value + 2 + WHITESPACE_BYTES)
    return None

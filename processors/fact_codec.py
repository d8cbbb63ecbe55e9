"""Facts, triggers, alerts and snapshots as JSON-safe dicts, for the pipeline's internal topics.

Uses the same value encoding as ``processors.file_codec`` (ISO instants in UTC, decimal strings,
enum values, subjects as ``"KIND:key"``), so a fact reads back exactly as it was written.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

from processors import facts as fact_types
from processors.facts import Fact
from processors.file_codec import (
    FileFormatError,
    JsonValue,
    decode_value,
    encode_value,
    parse_subject,
)
from processors.model import SubjectRef

_FACT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in typing.get_args(fact_types.Fact)  # the Fact union's members
}


def to_json(value: object) -> JsonValue:
    """Any frozen domain value (trigger, alert, snapshot) as JSON-safe data."""
    if isinstance(value, SubjectRef):
        return str(value)
    if isinstance(value, Mapping):
        return {str(encode_value(key)): to_json(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [to_json(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return encode_value(value)


def fact_to_dict(fact: Fact) -> dict[str, JsonValue]:
    """A fact with its type name, so that :func:`fact_from_dict` knows what to build."""
    if isinstance(fact, fact_types.ForwardedBatch):
        # Its changes are a union of fact types: each carries its own type name.
        return {"type": "ForwardedBatch", "changes": [fact_to_dict(c) for c in fact.changes]}
    return {"type": type(fact).__name__, "fact": encode_value(fact)}


def fact_from_dict(data: Mapping[str, Any]) -> Fact:
    """The fact :func:`fact_to_dict` wrote; :class:`FileFormatError` when it is not one."""
    if data.get("type") == "ForwardedBatch":
        changes = data.get("changes")
        if not isinstance(changes, list):
            raise FileFormatError("changes: expected a list")
        return fact_types.ForwardedBatch(
            tuple(typing.cast(fact_types.ForwardedChange, fact_from_dict(c)) for c in changes)
        )
    cls = _FACT_TYPES.get(str(data.get("type")))
    if cls is None:
        raise FileFormatError(f"type: {data.get('type')!r} is not a fact type")
    return typing.cast(Fact, decode_value(cls, data.get("fact"), "fact"))


__all__ = ["fact_from_dict", "fact_to_dict", "parse_subject", "to_json"]

"""Facts, triggers, alerts and snapshots as JSON-safe dicts, for the pipeline's internal topics.

Uses the same value encoding as ``processors.file_codec`` (ISO instants in UTC, decimal strings,
enum values, subjects as ``"KIND:key"``), so a fact reads back exactly as it was written.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping
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
    cls = type(value)
    encoder = _ENCODERS.get(cls)
    if encoder is None:
        encoder = _ENCODERS[cls] = _encoder_for(cls)
    return encoder(value)


_ENCODERS: dict[type, Callable[[Any], JsonValue]] = {}
"""The encoder of each type met, chosen once: a snapshot is written for every changed file."""


def _encoder_for(cls: type) -> Callable[[Any], JsonValue]:
    if issubclass(cls, SubjectRef):
        return str
    if issubclass(cls, Mapping):
        return lambda value: {str(encode_value(key)): to_json(item) for key, item in value.items()}
    if issubclass(cls, tuple):
        return lambda value: [to_json(item) for item in value]
    if dataclasses.is_dataclass(cls):
        names = tuple(field.name for field in dataclasses.fields(cls))
        return lambda value: {name: to_json(getattr(value, name)) for name in names}
    return encode_value


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

"""Credit files as JSON-safe dicts, for the stream's table, and back.

:func:`file_to_dict` uses only dicts with string keys, lists, strings, integers, booleans and
``None``: instants are ISO 8601 strings in UTC, dates ISO dates, money and ratios decimal
strings (never floats), enums their values, subjects ``"KIND:key"``. :func:`file_from_dict`
checks every value against the field's type and raises :class:`FileFormatError` naming the
path of the first bad one, so a corrupt table entry fails loudly instead of judging wrongly.

The dict carries ``"format"``; a change of layout bumps it, and :func:`file_from_dict` refuses
formats it does not know.
"""

from __future__ import annotations

import enum
import functools
import types
import typing
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from processors.facts import DetectionFact, FleetFact, PenaltyFact, PermitFact, ViolationFact
from processors.ledger import CreditFile
from processors.lifecycle import EntryRecord, ObjectionRecord, RepairRecord
from processors.lists import ListEntry
from processors.model import SubjectKind, SubjectRef

__all__ = [
    "FORMAT",
    "FileFormatError",
    "JsonValue",
    "decode_value",
    "encode_value",
    "file_from_dict",
    "file_to_dict",
    "parse_subject",
]

FORMAT = 2
"""Layout version of the dict. Format 1 had no lifecycle sections; it reads as empty ones."""

JsonValue = None | bool | int | str | list["JsonValue"] | dict[str, "JsonValue"]

_SECTIONS: Mapping[str, type[Any]] = {
    "detections": DetectionFact,
    "penalties": PenaltyFact,
    "permits": PermitFact,
    "certificates": FleetFact,
    "received": ViolationFact,
    "entries": ListEntry,
    "entry_records": EntryRecord,
    "objections": ObjectionRecord,
    "repairs": RepairRecord,
}
_LIFECYCLE_SECTIONS = ("entry_records", "objections", "repairs")
_RECENT = ("recent_event_ids", "recent_drivers", "recent_carriers")


class FileFormatError(ValueError):
    """A stored credit file cannot be read back."""


def file_to_dict(file: CreditFile) -> dict[str, JsonValue]:
    """The file as a JSON-safe dict."""
    result: dict[str, JsonValue] = {
        "format": FORMAT,
        "subject": str(file.subject),
        "clock": _encode(file.clock),
        "first_seen": _encode(file.first_seen),
    }
    remembered = _ENCODED_ENTRIES.encoded
    for name, (encode, _) in _PLANS.items():
        section: Mapping[str, object] = getattr(file, name)
        result[name] = {key: remembered(value, encode) for key, value in section.items()}
    for name in _RECENT:
        recent: Mapping[str, datetime] = getattr(file, name)
        result[name] = {key: _encode_instant(at) for key, at in recent.items()}
    result["stale_events"] = file.stale_events
    return result


def file_from_dict(data: Mapping[str, Any]) -> CreditFile:
    """The file a dict from :func:`file_to_dict` describes."""
    if data.get("format") == 1 and not set(_LIFECYCLE_SECTIONS) & set(data):
        data = {**data, "format": FORMAT, **{key: {} for key in _LIFECYCLE_SECTIONS}}
    if data.get("format") != FORMAT:
        raise FileFormatError(f"format: expected {FORMAT}, got {data.get('format')!r}")
    expected = {"format", "subject", "clock", "first_seen", "stale_events", *_SECTIONS, *_RECENT}
    if set(data) != expected:
        raise FileFormatError(f"keys: expected {sorted(expected)}, got {sorted(data)}")
    sections: dict[str, Mapping[str, Any]] = {
        name: types.MappingProxyType(_decode_section(data[name], name, decode))
        for name, (_, decode) in _PLANS.items()
    }
    recent: dict[str, Mapping[str, Any]] = {
        name: types.MappingProxyType(
            {
                _key(name, key): _decode_instant(at, f"{name}.{key}")
                for key, at in _mapping(data[name], name).items()
            }
        )
        for name in _RECENT
    }
    clock, first_seen = data["clock"], data["first_seen"]
    stale_events = data["stale_events"]
    if type(stale_events) is not int:
        raise FileFormatError(f"stale_events: expected int, got {stale_events!r}")
    return CreditFile(
        subject=_decode_subject(data["subject"], "subject"),
        clock=None if clock is None else _decode_instant(clock, "clock"),
        first_seen=None if first_seen is None else _decode_instant(first_seen, "first_seen"),
        stale_events=stale_events,
        **sections,
        **recent,
    )


class _EncodedEntries:
    """Section entries as last encoded, by identity, so that each is encoded once.

    Entries are frozen, and a file's next version keeps its predecessor's entries (the same
    objects), so a file written after every batch re-encoded mostly unchanged entries: the
    codec was about a tenth of a worker's CPU. Bounded; the oldest go first. The encoded dicts
    are shared between the files' dicts and must not be changed.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._entries: OrderedDict[int, tuple[object, JsonValue]] = OrderedDict()

    def encoded(self, value: object, encode: Callable[[Any], JsonValue]) -> JsonValue:
        entries = self._entries
        hit = entries.get(id(value))
        if hit is not None and hit[0] is value:  # the entry holds the value: its id is its own
            return hit[1]
        encoded = encode(value)
        entries[id(value)] = (value, encoded)
        if len(entries) > self._limit:
            entries.popitem(last=False)
        return encoded


_ENCODED_ENTRIES = _EncodedEntries(65_536)


# --- compiled plans -----------------------------------------------------------------------------
#
# Each field type is turned once, at import, into a pair of functions: encode and decode (the
# decoder checks what it reads). Walking the type hints per value instead costs more than the
# rules themselves, and the table (de)serialises a file for every event.

_Encode = Callable[[Any], JsonValue]
_Decode = Callable[[Any, str], Any]


def encode_value(value: object) -> JsonValue:
    """Any domain value (a fact, entry, instant, amount, subject...) as JSON-safe data."""
    # Enums first: the project's enums are str subclasses.
    if isinstance(value, enum.Enum):
        return typing.cast(str, value.value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, datetime):
        return _encode_instant(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, SubjectRef):
        return f"{value.kind.value}:{value.key}"
    if isinstance(value, tuple):
        return [encode_value(item) for item in value]
    if is_dataclass(value) and not isinstance(value, type):
        return _plan_of(type(value))[0](value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def decode_value(tp: Any, raw: object, path: str) -> Any:
    """The value of type ``tp`` that :func:`encode_value` wrote; checks what it reads."""
    return _plan_of(tp)[1](raw, path)


def parse_subject(raw: object, path: str = "subject") -> SubjectRef:
    """``"KIND:key"`` back to a subject."""
    return _decode_subject(raw, path)


@functools.lru_cache(maxsize=262_144)
def _encode_instant(value: datetime) -> str:
    # Remembered: a file's recent-event map holds hundreds of instants, written at every change.
    return value.astimezone(UTC).isoformat()


def _decode_instant(raw: object, path: str) -> datetime:
    if not isinstance(raw, str):
        raise FileFormatError(f"{path}: expected an ISO string, got {raw!r}")
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise FileFormatError(f"{path}: {raw!r} is not an ISO datetime") from None
    if parsed.tzinfo is None:
        raise FileFormatError(f"{path}: {raw!r} has no timezone")
    return parsed


def _decode_day(raw: object, path: str) -> date:
    if not isinstance(raw, str):
        raise FileFormatError(f"{path}: expected an ISO string, got {raw!r}")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise FileFormatError(f"{path}: {raw!r} is not an ISO date") from None


def _decode_decimal(raw: object, path: str) -> Decimal:
    try:
        if not isinstance(raw, str):
            raise InvalidOperation
        return Decimal(raw)
    except InvalidOperation:
        raise FileFormatError(f"{path}: {raw!r} is not a decimal string") from None


def _decode_subject(raw: object, path: str) -> SubjectRef:
    if not isinstance(raw, str) or ":" not in raw:
        raise FileFormatError(f"{path}: expected 'KIND:key', got {raw!r}")
    kind, key = raw.split(":", 1)
    try:
        return SubjectRef(SubjectKind(kind), key)
    except ValueError:
        raise FileFormatError(f"{path}: {kind!r} is not a subject kind") from None


def _scalar_decoder(tp: type[Any]) -> _Decode:
    def decode(raw: Any, path: str) -> Any:
        if type(raw) is not tp:
            raise FileFormatError(f"{path}: expected {tp.__name__}, got {raw!r}")
        return raw

    return decode


def _enum_decoder(tp: type[enum.Enum]) -> _Decode:
    def decode(raw: Any, path: str) -> Any:
        try:
            return tp(raw)
        except ValueError:
            raise FileFormatError(f"{path}: {raw!r} is not a {tp.__name__}") from None

    return decode


def _plan(tp: Any) -> tuple[_Encode, _Decode]:
    """Encoder and decoder for values of type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        (inner,) = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        encode_inner, decode_inner = _plan(inner)

        def encode_optional(value: Any) -> JsonValue:
            return None if value is None else encode_inner(value)

        def decode_optional(raw: Any, path: str) -> Any:
            return None if raw is None else decode_inner(raw, path)

        return encode_optional, decode_optional
    if origin is tuple:
        encode_item, decode_item = _plan(typing.get_args(tp)[0])

        def encode_tuple(value: Any) -> JsonValue:
            return [encode_item(item) for item in value]

        def decode_tuple(raw: Any, path: str) -> Any:
            if not isinstance(raw, list):
                raise FileFormatError(f"{path}: expected a list, got {raw!r}")
            return tuple(decode_item(item, f"{path}[{i}]") for i, item in enumerate(raw))

        return encode_tuple, decode_tuple
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return (lambda value: value.value), _enum_decoder(tp)
    if tp is datetime:
        return _encode_instant, _decode_instant
    if tp is date:
        return (lambda value: value.isoformat()), _decode_day
    if tp is Decimal:
        return str, _decode_decimal
    if tp is SubjectRef:
        return (lambda value: f"{value.kind.value}:{value.key}"), _decode_subject
    if tp in (str, int, bool):
        return (lambda value: value), _scalar_decoder(tp)
    if isinstance(tp, type) and is_dataclass(tp):
        return _dataclass_plan(tp)
    raise TypeError(f"no plan for {tp!r}")


def _dataclass_plan(cls: type[Any]) -> tuple[_Encode, _Decode]:
    hints = typing.get_type_hints(cls)
    names = tuple(f.name for f in fields(cls))
    plans = [(name, *_plan(hints[name])) for name in names]
    expected = frozenset(names)

    def encode(value: Any) -> JsonValue:
        return {name: enc(getattr(value, name)) for name, enc, _ in plans}

    def decode(raw: Any, path: str) -> Any:
        if not isinstance(raw, dict):
            raise FileFormatError(f"{path}: expected a mapping, got {raw!r}")
        if raw.keys() != expected:
            raise FileFormatError(f"{path}: expected keys {sorted(names)}, got {sorted(raw)}")
        try:
            # Fields get their own name as path; the full path is built only for an error.
            return cls(*[dec(raw[name], name) for name, _, dec in plans])
        except FileFormatError as error:
            raise FileFormatError(f"{path}.{error}") from None

    return encode, decode


_PLAN_CACHE: dict[Any, tuple[_Encode, _Decode]] = {}


def _plan_of(tp: Any) -> tuple[_Encode, _Decode]:
    plan = _PLAN_CACHE.get(tp)
    if plan is None:
        plan = _PLAN_CACHE[tp] = _plan(tp)
    return plan


_PLANS: Mapping[str, tuple[_Encode, _Decode]] = {
    name: _plan_of(cls) for name, cls in _SECTIONS.items()
}

# Names processors.fact_codec imports (it reuses this module's encoding for facts on topics).
_encode = encode_value
_decode = decode_value
_subject = parse_subject


def _decode_section(raw: object, name: str, decode: _Decode) -> dict[str, Any]:
    decoded = {}
    for key, value in _mapping(raw, name).items():
        try:
            decoded[_key(name, key)] = decode(value, key)
        except FileFormatError as error:
            raise FileFormatError(f"{name}.{error}") from None
    return decoded


def _mapping(raw: object, path: str) -> Mapping[str, Any]:
    if not isinstance(raw, dict):
        raise FileFormatError(f"{path}: expected a mapping, got {raw!r}")
    return raw


def _key(section: str, key: object) -> str:
    if not isinstance(key, str):
        raise FileFormatError(f"{section}: key {key!r} is not a string")
    return key

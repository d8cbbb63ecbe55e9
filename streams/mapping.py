"""The one place where Avro values become domain types, and back.

:func:`to_domain` turns a decoded Avro dict into an :data:`~processors.model.InputEvent`;
:func:`from_domain` turns an event into the dict the encoder writes. Nothing else in the project
converts between the two, so fastavro dicts never reach ``processors/``.

The conversions follow the field annotations of the frozen dataclasses in ``processors.model``
(read once, at import): enums by value, tuples as Avro arrays, instants as timezone-aware UTC
datetimes, money as ``Decimal`` yuan. Dates, strings and numbers pass through as fastavro reads
and writes them. Instants travel as ``timestamp-millis``: digits finer than a millisecond are
dropped when an event is encoded.

Money arrives from :class:`~streams.codecs.AvroSerde` as the Avro decimal's raw two's-complement
bytes, not as a ``Decimal``: fastavro converts decimals without a size bound, and a hostile
megabyte-long amount would take minutes (see ``streams/codecs.py``). :func:`to_domain` converts
the bytes itself, after a length check.
"""

from __future__ import annotations

import enum
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from processors.model import (
    InputEvent,
    LicensingDecision,
    Objection,
    OverloadDetection,
    PenaltyDecision,
    RepairApplication,
)
from streams.errors import SerializationError, SerializationReason

MONEY_PRECISION = 14
"""Significant digits of an amount: the ``precision`` of the schemas' money decimals."""
MONEY_SCALE = 2
"""Digits after the point: the ``scale`` of the schemas' money decimals (fen)."""

_MAX_UNSCALED_MONEY = 10**MONEY_PRECISION
# Two's-complement bytes of the largest amount, with room for padding a writer may add. Longer
# input is refused before int.from_bytes, so that no amount costs more than a few bytes to read.
_MAX_MONEY_BYTES = 16

DOMAIN_TYPES: Mapping[str, type[InputEvent]] = types.MappingProxyType(
    {
        "OverloadDetection": OverloadDetection,
        "PenaltyDecision": PenaltyDecision,
        "LicensingDecision": LicensingDecision,
        "Objection": Objection,
        # The one record named otherwise than its class: "credit repair" (信用修复) on the wire.
        "CreditRepairApplication": RepairApplication,
    }
)
"""Domain type of each Avro record name that has one (a schema's name is its class's name, but
for ``CreditRepairApplication``, whose class is :class:`~processors.model.RepairApplication`)."""

_Convert = Callable[[Any], Any]


class _FieldConversion(NamedTuple):
    field_name: str
    position: int
    """Index of the field among the dataclass fields (its constructor argument)."""
    convert: _Convert


class _RecordPlan(NamedTuple):
    record_name: str
    domain_type: type[InputEvent]
    field_names: tuple[str, ...]
    """In declaration order. The domain type is built positionally: matching keyword arguments
    was most of the cost of mapping a record."""
    to_domain: tuple[_FieldConversion, ...]
    """Only the fields that need converting; the others pass through as read."""
    from_domain: tuple[_FieldConversion, ...]
    build: Callable[[Mapping[str, Any]], InputEvent]
    """The fast way from a decoded value to the domain event (see :func:`_builder`)."""


# --- conversions of single values ------------------------------------------------------------


def _instant_to_domain(value: datetime) -> datetime:
    if value.tzinfo is UTC:
        return value  # as fastavro reads every instant
    if value.utcoffset() is None:
        raise ValueError("an instant without a time zone")
    return value.astimezone(UTC)


def _instant_from_domain(value: datetime) -> datetime:
    # fastavro would write a naive datetime as if it were UTC: refuse to guess.
    if value.utcoffset() is None:
        raise ValueError("an instant without a time zone")
    return value


def _checked_money(amount: Decimal) -> Decimal:
    if not amount.is_finite():
        raise ValueError("an amount that is not a finite number")
    exponent = amount.as_tuple().exponent
    if not isinstance(exponent, int) or exponent < -MONEY_SCALE:
        raise ValueError(f"an amount with more than {MONEY_SCALE} decimal places")
    if amount.adjusted() >= MONEY_PRECISION - MONEY_SCALE:
        raise ValueError(f"an amount with more than {MONEY_PRECISION} digits")
    return amount


def _money_to_domain(value: bytes | Decimal) -> Decimal:
    if isinstance(value, Decimal):
        return _checked_money(value)
    if not isinstance(value, bytes):
        raise TypeError(f"an amount given as {type(value).__name__}")
    if len(value) > _MAX_MONEY_BYTES:
        raise ValueError(f"an amount of {len(value)} bytes")
    unscaled = int.from_bytes(value, "big", signed=True)
    if not -_MAX_UNSCALED_MONEY < unscaled < _MAX_UNSCALED_MONEY:
        raise ValueError(f"an amount with more than {MONEY_PRECISION} digits")
    return Decimal(unscaled).scaleb(-MONEY_SCALE)


def _enum_by_value(enum_type: type[enum.Enum]) -> Callable[[Any], enum.Enum]:
    # A dict lookup is several times faster than calling the enum class.
    return {member.value: member for member in enum_type}.__getitem__


def _enum_value(member: enum.Enum) -> Any:
    return member.value


def _allow_none(convert: _Convert) -> _Convert:
    return lambda value: None if value is None else convert(value)


def _each_to_tuple(convert: _Convert | None) -> _Convert:
    if convert is None:
        return tuple
    return lambda values: tuple(map(convert, values))


def _each_to_list(convert: _Convert | None) -> _Convert:
    if convert is None:
        return list
    return lambda values: list(map(convert, values))


# --- plans derived from the dataclass annotations ---------------------------------------------


def _conversions(annotation: Any) -> tuple[_Convert | None, _Convert | None]:
    """(to domain, from domain) converters of one annotated type; None means "as is"."""
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        (inner,) = [argument for argument in arguments if argument is not type(None)]
        to_domain, from_domain = _conversions(inner)
        return (
            None if to_domain is None else _allow_none(to_domain),
            None if from_domain is None else _allow_none(from_domain),
        )
    if origin is tuple:
        item_to_domain, item_from_domain = _conversions(arguments[0])
        return _each_to_tuple(item_to_domain), _each_to_list(item_from_domain)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return _enum_by_value(annotation), _enum_value
    if annotation is datetime:
        return _instant_to_domain, _instant_from_domain
    if annotation is Decimal:
        return _money_to_domain, _checked_money
    return None, None


def _plan(record_name: str, domain_type: type[InputEvent]) -> _RecordPlan:
    annotations = typing.get_type_hints(domain_type)
    names = tuple(field.name for field in fields(domain_type))
    to_domain: list[_FieldConversion] = []
    from_domain: list[_FieldConversion] = []
    for position, name in enumerate(names):
        convert_to_domain, convert_from_domain = _conversions(annotations[name])
        if convert_to_domain is not None:
            to_domain.append(_FieldConversion(name, position, convert_to_domain))
        if convert_from_domain is not None:
            from_domain.append(_FieldConversion(name, position, convert_from_domain))
    return _RecordPlan(
        record_name,
        domain_type,
        names,
        tuple(to_domain),
        tuple(from_domain),
        _builder(domain_type, names, to_domain),
    )


def _stores_into_slots(domain_type: type[InputEvent], names: tuple[str, ...]) -> bool:
    """Whether setting each field's slot makes the same instance as the dataclass constructor.

    True for a slots dataclass whose ``__init__`` takes exactly its fields and only stores them
    (no ``__post_init__``, no ``InitVar``, no ``init=False`` field) and is made by ``object``.
    """
    parameters = tuple(inspect.signature(domain_type.__init__).parameters)[1:]
    return (
        parameters == names
        and not hasattr(domain_type, "__post_init__")
        and domain_type.__new__ is object.__new__
        and all(
            isinstance(vars(domain_type).get(name), types.MemberDescriptorType) for name in names
        )
    )


def _builder(
    domain_type: type[InputEvent],
    names: tuple[str, ...],
    conversions: list[_FieldConversion],
) -> Callable[[Mapping[str, Any]], InputEvent]:
    """A function generated for ``domain_type`` that builds it from a decoded value, fast.

    Mapping a record costs as much as a third of reading it with fastavro when done field by
    field in a loop, and a frozen dataclass's ``__init__`` stores each field through
    ``object.__setattr__``, which is slow. So, as ``dataclasses`` itself does, the source of a
    function is written once per domain type: one subscription per field, a call for each field
    that needs converting, and a store straight into the field's slot, e.g.::

        def build(value):
            event = new(domain_type)
            set_event_id(event, value["event_id"])
            set_event_time(event, convert_event_time(value["event_time"]))
            ...
            return event

    When the type's constructor does more than store its fields (:func:`_stores_into_slots`),
    the function calls the constructor instead. The function checks nothing itself: it raises
    on a value that does not fit, without saying where, and :func:`to_domain` then takes the
    field-by-field way, which says.
    """
    convert_by_position = {conversion.position: conversion.convert for conversion in conversions}
    namespace: dict[str, Any] = {"new": object.__new__, "domain_type": domain_type}
    arguments = []
    for position, name in enumerate(names):
        argument = f"value[{name!r}]"
        if position in convert_by_position:
            namespace[f"convert_{name}"] = convert_by_position[position]
            argument = f"convert_{name}({argument})"
        arguments.append(argument)
    if _stores_into_slots(domain_type, names):
        lines = ["    event = new(domain_type)"]
        for name, argument in zip(names, arguments, strict=True):
            namespace[f"set_{name}"] = vars(domain_type)[name].__set__
            lines.append(f"    set_{name}(event, {argument})")
        lines.append("    return event")
    else:
        lines = [f"    return domain_type({', '.join(arguments)})"]
    source = "def build(value):\n" + "\n".join(lines) + "\n"
    # The source is made only of this module's names and the dataclass's field names, which are
    # identifiers: no outside text reaches exec.
    exec(source, namespace)  # noqa: S102
    build: Callable[[Mapping[str, Any]], InputEvent] = namespace["build"]
    return build


_PLAN_BY_RECORD = {name: _plan(name, domain_type) for name, domain_type in DOMAIN_TYPES.items()}
_PLAN_BY_TYPE = {plan.domain_type: plan for plan in _PLAN_BY_RECORD.values()}

# What a conversion or a dataclass constructor raises on a value of the wrong shape: a missing or
# extra field (KeyError, TypeError), an unknown enum symbol (KeyError), a bad instant or amount
# (ValueError, ArithmeticError), a value of the wrong type (TypeError, AttributeError).
_MAPPING_FAULTS = (KeyError, TypeError, ValueError, AttributeError, ArithmeticError)


def _mapping_failed(record_name: str, field_name: str | None, exc: Exception) -> SerializationError:
    where = record_name if field_name is None else f"{record_name}.{field_name}"
    return SerializationError(
        SerializationReason.MAPPING_FAILED, f"{where}: {type(exc).__name__}: {exc}"[:300]
    )


# --- public API --------------------------------------------------------------------------------


def to_domain(record_name: str, value: Mapping[str, Any]) -> InputEvent:
    """The domain event of a decoded Avro ``value`` of record ``record_name``.

    ``value`` must carry every field of the record, as a decoded value does, and is left
    unchanged. Raises :class:`SerializationError` with reason ``UNKNOWN_RECORD`` for a record
    without a domain type, ``MAPPING_FAILED`` for a value that does not fit it (a missing or
    extra field, an unknown symbol, an instant without a time zone, an amount out of range).
    """
    plan = _PLAN_BY_RECORD.get(record_name)
    if plan is None:
        raise SerializationError(
            SerializationReason.UNKNOWN_RECORD, f"{record_name!r} has no domain type"
        )
    try:
        if len(value) == len(plan.field_names):
            return plan.build(value)
    except _MAPPING_FAULTS:
        pass  # the value does not fit: find out where, field by field
    try:
        arguments = list(map(value.__getitem__, plan.field_names))
    except KeyError as exc:
        raise _mapping_failed(record_name, str(exc.args[0]), exc) from exc
    if len(value) != len(arguments):
        extra = sorted(set(value) - set(plan.field_names))
        raise SerializationError(
            SerializationReason.MAPPING_FAILED, f"{record_name}: unknown fields {extra}"
        )
    for field_name, position, convert in plan.to_domain:
        try:
            arguments[position] = convert(arguments[position])
        except _MAPPING_FAULTS as exc:
            raise _mapping_failed(record_name, field_name, exc) from exc
    try:
        return plan.domain_type(*arguments)
    except _MAPPING_FAULTS as exc:
        raise _mapping_failed(record_name, None, exc) from exc


def from_domain(event: InputEvent) -> dict[str, Any]:
    """The Avro value of ``event``, ready for ``AvroSerde.encode(record_name_of(event), ...)``.

    Raises :class:`SerializationError` with reason ``MAPPING_FAILED`` for a value Avro cannot
    carry faithfully: a naive datetime, or an amount with sub-fen digits or too many digits.
    """
    plan = _PLAN_BY_TYPE.get(type(event))
    if plan is None:
        raise SerializationError(
            SerializationReason.UNKNOWN_RECORD, f"{type(event).__name__} is not an input event"
        )
    value = {name: getattr(event, name) for name in plan.field_names}
    for field_name, _, convert in plan.from_domain:
        try:
            value[field_name] = convert(value[field_name])
        except _MAPPING_FAULTS as exc:
            raise _mapping_failed(plan.record_name, field_name, exc) from exc
    return value


def record_name_of(event: InputEvent) -> str:
    """The Avro record name of a domain event."""
    plan = _PLAN_BY_TYPE.get(type(event))
    if plan is None:
        raise SerializationError(
            SerializationReason.UNKNOWN_RECORD, f"{type(event).__name__} is not an input event"
        )
    return plan.record_name

"""What a lookup asks for: identifiers validated with ``processors.identifiers``.

Each query becomes a :class:`SubjectQuery` naming the credit file (``KIND:key``, as the worker
keys it) or a :class:`QueryError` naming the field and the reason code. Identifiers are tidied
as people type them (full-width characters, spaces, the plate's separator dot, lower case)
before they are checked. Driver ID numbers are masked wherever a query is shown or audited.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from processors.identifiers import (
    check_plate,
    check_resident_id,
    check_uscc,
    mask_identifier,
    normalise_plate,
    normalise_resident_id,
    normalise_uscc,
)
from processors.model import PlateColour, SubjectKind, vehicle_key

__all__ = [
    "MAX_BATCH",
    "BatchError",
    "Kind",
    "QueryError",
    "SubjectQuery",
    "carrier_query",
    "china_today",
    "driver_query",
    "parse_batch",
    "vehicle_query",
]

MAX_BATCH = 1000
"""Most queries in one POST /v1/lookup."""

PLATE_COLOUR_INVALID = "PLATE_COLOUR_INVALID"
FIELD_REQUIRED = "FIELD_REQUIRED"
QUERY_KIND_INVALID = "QUERY_KIND_INVALID"
BODY_INVALID = "BODY_INVALID"
TOO_MANY_QUERIES = "TOO_MANY_QUERIES"

_CHINA = timezone(timedelta(hours=8))


def china_today() -> date:
    """Today in China, where birth dates in ID numbers are judged."""
    return datetime.now(UTC).astimezone(_CHINA).date()


class Kind(enum.StrEnum):
    """What a query looks up."""

    VEHICLE = "vehicle"
    CARRIER = "carrier"
    DRIVER = "driver"


@dataclass(frozen=True, slots=True)
class SubjectQuery:
    """A valid query."""

    kind: Kind
    """What is looked up."""
    subject: str
    """The credit file, ``KIND:key``."""
    shown: dict[str, str]
    """The query as answers show it (a driver's ID number masked); shared, never to be changed."""
    audit_identifier: str
    """The identifier as the audit log records it (a driver's ID number masked)."""

    packed: bytes = field(init=False, repr=False, compare=False)
    """Subject, kind and audit identifier as the lookup script reads them, joined by the ASCII
    unit separator."""
    resp: bytes = field(init=False, repr=False, compare=False)
    """``packed`` as a RESP bulk string, ready to be written into a script call: queries are
    memoised, so each is encoded once (``api/store.py``)."""

    def __post_init__(self) -> None:
        packed = f"{self.subject}\x1f{self.kind}\x1f{self.audit_identifier}".encode()
        object.__setattr__(self, "packed", packed)
        object.__setattr__(self, "resp", b"$%d\r\n%b\r\n" % (len(packed), packed))


class QueryError(ValueError):
    """An identifier that is not valid."""

    def __init__(self, field: str, code: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        """The request field, e.g. ``plate`` or ``queries[3].uscc``."""
        self.code = code
        """Reason code, e.g. ``PLATE_INVALID`` (``processors.identifiers``)."""
        self.message = message
        """What is wrong, in words; identifiers in it are masked."""

    def as_dict(self) -> dict[str, str]:
        """The error as the API shows it."""
        return {"field": self.field, "code": self.code, "message": self.message}


class BatchError(ValueError):
    """A batch with invalid queries; every error is listed."""

    def __init__(self, errors: list[QueryError]) -> None:
        super().__init__(f"{len(errors)} invalid queries")
        self.errors = errors


# The same trucks, carriers and drivers are asked about all day: each query is memoised on its
# input (a SubjectQuery is immutable; an invalid input raises, and is not memoised). Bounded, so
# that a stream of distinct or hostile values costs a fixed amount of memory.
QUERY_CACHE_SIZE = 65_536
"""Most distinct inputs each query function remembers."""


def vehicle_query(plate: str, colour: str | None, *, field_prefix: str = "") -> SubjectQuery:
    """A vehicle by plate number and plate colour.

    Without a colour a truck's is assumed: yellow, or yellow-green for a large new-energy plate.

    :raises QueryError: ``PLATE_INVALID``, ``PLATE_COLOUR_INVALID`` or ``PLATE_COLOUR_MISMATCH``.
    """
    return _vehicle_query(plate, colour, field_prefix)


@functools.lru_cache(maxsize=QUERY_CACHE_SIZE)
def _vehicle_query(plate: str, colour: str | None, field_prefix: str) -> SubjectQuery:
    number = normalise_plate(plate)
    if colour is None or colour == "":
        rejection = check_plate(number, PlateColour.YELLOW)
        plate_colour = PlateColour.YELLOW
        if rejection is not None and check_plate(number, PlateColour.YELLOW_GREEN) is None:
            rejection, plate_colour = None, PlateColour.YELLOW_GREEN
    else:
        try:
            plate_colour = PlateColour(colour.strip().upper())
        except ValueError:
            names = ", ".join(c.value for c in PlateColour)
            message = f"plate colour must be one of {names}"
            raise QueryError(f"{field_prefix}colour", PLATE_COLOUR_INVALID, message) from None
        rejection = check_plate(number, plate_colour)
    if rejection is not None:
        field = "plate" if rejection.reason_code == "PLATE_INVALID" else "colour"
        raise QueryError(f"{field_prefix}{field}", rejection.reason_code, rejection.message)
    key = vehicle_key(number, plate_colour)
    return SubjectQuery(
        Kind.VEHICLE,
        f"{SubjectKind.VEHICLE.value}:{key}",
        {"kind": Kind.VEHICLE.value, "plate": number, "colour": plate_colour.value},
        key,
    )


def carrier_query(uscc: str, *, field_prefix: str = "") -> SubjectQuery:
    """A carrier by unified social credit code.

    :raises QueryError: ``USCC_INVALID``.
    """
    return _carrier_query(uscc, field_prefix)


@functools.lru_cache(maxsize=QUERY_CACHE_SIZE)
def _carrier_query(uscc: str, field_prefix: str) -> SubjectQuery:
    code = normalise_uscc(uscc)
    rejection = check_uscc(code)
    if rejection is not None:
        raise QueryError(f"{field_prefix}uscc", rejection.reason_code, rejection.message)
    return SubjectQuery(
        Kind.CARRIER,
        f"{SubjectKind.CARRIER.value}:{code}",
        {"kind": Kind.CARRIER.value, "uscc": code},
        code,
    )


def driver_query(id_number: str, today: date, *, field_prefix: str = "") -> SubjectQuery:
    """A driver by resident ID number.

    :raises QueryError: ``RESIDENT_ID_INVALID``.
    """
    return _driver_query(id_number, today, field_prefix)


@functools.lru_cache(maxsize=QUERY_CACHE_SIZE)
def _driver_query(id_number: str, today: date, field_prefix: str) -> SubjectQuery:
    number = normalise_resident_id(id_number)
    rejection = check_resident_id(number, today)
    if rejection is not None:
        raise QueryError(f"{field_prefix}id_number", rejection.reason_code, rejection.message)
    masked = mask_identifier(number)
    return SubjectQuery(
        Kind.DRIVER,
        f"{SubjectKind.DRIVER.value}:{number}",
        {"kind": Kind.DRIVER.value, "id_number": masked},
        masked,
    )


def _field(item: Mapping[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value.strip():
        raise QueryError(f"{where}{name}", FIELD_REQUIRED, f"{name} is required (a string)")
    return value


def _one(item: object, where: str, today: date) -> SubjectQuery:
    if not isinstance(item, dict):
        raise QueryError(where.rstrip("."), BODY_INVALID, "each query must be an object")
    kind = item.get("kind")
    if kind == Kind.VEHICLE:
        colour = item.get("colour")
        if colour is not None and not isinstance(colour, str):
            raise QueryError(f"{where}colour", PLATE_COLOUR_INVALID, "colour must be a string")
        return vehicle_query(_field(item, "plate", where), colour, field_prefix=where)
    if kind == Kind.CARRIER:
        return carrier_query(_field(item, "uscc", where), field_prefix=where)
    if kind == Kind.DRIVER:
        return driver_query(_field(item, "id_number", where), today, field_prefix=where)
    kinds = ", ".join(k.value for k in Kind)
    raise QueryError(f"{where}kind", QUERY_KIND_INVALID, f"kind must be one of {kinds}")


def parse_batch(body: object, today: date) -> list[SubjectQuery]:
    """The queries of a ``POST /v1/lookup`` body ``{"queries": [...]}``.

    :raises BatchError: listing every invalid query (nothing is looked up then).
    """
    queries = body.get("queries") if isinstance(body, dict) else None
    if not isinstance(queries, list) or not queries:
        raise BatchError(
            [QueryError("queries", BODY_INVALID, 'expected {"queries": [...]} with 1 or more')]
        )
    if len(queries) > MAX_BATCH:
        raise BatchError(
            [
                QueryError(
                    "queries",
                    TOO_MANY_QUERIES,
                    f"at most {MAX_BATCH} queries per request, not {len(queries)}",
                )
            ]
        )
    parsed: list[SubjectQuery] = []
    errors: list[QueryError] = []
    for index, item in enumerate(queries):
        try:
            parsed.append(_one(item, f"queries[{index}].", today))
        except QueryError as exc:
            errors.append(exc)
    if errors:
        raise BatchError(errors)
    return parsed

"""The publication API's rules, free of HTTP and SQL.

- :func:`parse_publication` and :func:`parse_withdrawal` turn a decoded JSON body into frozen
  values or raise :class:`InvalidRequestError` (reason code and a message for the sender).
- :func:`decide_put` and :func:`decide_withdrawal` say what a request does to the stored record,
  given its revision; the repository runs them inside its transaction.
- :func:`put_response` and :func:`withdrawal_response` build the JSON bodies that the API returns
  and the idempotency table keeps for replays.

Revisions order the publisher's versions of one publication. A PUT replaces a published record
when its revision is equal or higher (equal: the publisher resent the same version under a new
Idempotency-Key) and is "stale" when lower. A withdrawal at revision *n* beats a PUT at *n*, so
republishing a withdrawn record needs a higher revision. Stale requests are acknowledged with 200
and ``{"status": "stale"}``: the publisher has nothing to retry.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

import orjson

CHINA_TIME: Final = timezone(timedelta(hours=8), "CST")
"""China Standard Time; China has no daylight saving, so a fixed offset is exact."""

MAX_BODY_BYTES: Final = 64 * 1024
"""Largest request body the API reads."""

FieldValue = str | int | float | None
"""What a 双公示 field may hold in the JSON body."""


class Kind(StrEnum):
    """What a publication is."""

    PENALTY = "penalty"
    LICENSING = "licensing"
    BLACKLIST = "blacklist"
    REDLIST = "redlist"


class WithdrawalReason(StrEnum):
    """Why a publication was taken down."""

    REVOKED = "revoked"
    EXPIRED = "expired"
    REPAIRED = "repaired"
    OBJECTION_UPHELD = "objection_upheld"


class PutAction(StrEnum):
    """What a PUT does to the stored record; the value is the response's ``status``."""

    CREATED = "created"
    REPLACED = "replaced"
    REPUBLISHED = "republished"
    """A withdrawn record published again at a higher revision."""
    STALE = "stale"


class WithdrawalAction(StrEnum):
    """What a DELETE does to the stored record."""

    WITHDRAWN = "withdrawn"
    STALE = "stale"
    NOT_FOUND = "not_found"


# --- reason codes of rejected requests ----------------------------------------------------------

MALFORMED_BODY = "MALFORMED_BODY"
UNKNOWN_FIELD = "UNKNOWN_FIELD"
MISSING_FIELD = "MISSING_FIELD"
INVALID_FIELD = "INVALID_FIELD"
UNKNOWN_KIND = "UNKNOWN_KIND"
UNKNOWN_REASON = "UNKNOWN_REASON"
INVALID_AMOUNT = "INVALID_AMOUNT"
INVALID_DATE = "INVALID_DATE"
INVALID_PUBLICATION_ID = "INVALID_PUBLICATION_ID"
UNMASKED_PERSONAL_DATA = "UNMASKED_PERSONAL_DATA"


class InvalidRequestError(ValueError):
    """A request body the API refuses (HTTP 422)."""

    def __init__(self, reason: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        """Stable, machine-readable reason code."""
        self.message = message
        """What is wrong, for the sender; never echoes personal data."""
        self.field = field
        """The body field at fault, where there is one."""


# --- values -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublicationContent:
    """What the publisher sends for one publication."""

    kind: Kind
    subject_name: str
    """行政相对人名称, or a list entry's subject; masked by the sender where it is a person."""
    subject_code: str
    """USCC, masked ID number or plate: what the public searches by."""
    plate: str | None
    """车牌号, when the subject is a vehicle or the record names one."""
    fields: Mapping[str, FieldValue]
    """双公示 standard fields (CF_*, XK_*) or list-entry fields, masked by the sender."""
    decision_date: date
    """处罚/许可决定日期, or the date a list entry took effect."""
    publication_end: date | None
    """公示截止期: the last day the record is shown; shown indefinitely when absent."""
    revision: int
    """The publisher's version of this publication; higher wins."""


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """A DELETE request: take a publication down."""

    reason: WithdrawalReason
    revision: int


@dataclass(frozen=True, slots=True)
class StoredPublication:
    """A publication as the database keeps it."""

    publication_id: str
    content: PublicationContent
    published_at: datetime
    """When this record (last) went public; reset when a withdrawn record is republished."""
    updated_at: datetime
    """Last accepted change, including withdrawal."""
    withdrawn_at: datetime | None
    withdrawal_reason: WithdrawalReason | None

    def status(self, today: date) -> str:
        """``published``, ``withdrawn`` or ``expired`` (past ``publication_end``) on ``today``."""
        if self.withdrawn_at is not None:
            return "withdrawn"
        end = self.content.publication_end
        if end is not None and end < today:
            return "expired"
        return "published"

    def is_public(self, today: date) -> bool:
        """Whether the public pages show the record on ``today``."""
        return self.status(today) == "published"


@dataclass(frozen=True, slots=True)
class ApiResponse:
    """An API answer: what the handler sends and the idempotency table keeps."""

    status: int
    body: Mapping[str, Any]
    action: str
    """For metrics: the :class:`PutAction`/:class:`WithdrawalAction` value, or ``replayed``."""
    kind: Kind | None
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """The ``Idempotency-Key`` header and the fingerprint of the request it came with."""

    key: str
    request_hash: str


# --- parsing ------------------------------------------------------------------------------------

_PUBLICATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")
_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")

AMOUNT_FIELDS: Final = frozenset({"CF_NR_FK", "CF_NR_WFFF"})
"""Fields holding amounts in 万元, as decimal strings."""
MAX_FIELDS: Final = 200
MAX_FIELD_TEXT: Final = 10_000
MAX_SUBJECT_NAME: Final = 200
MAX_SUBJECT_CODE: Final = 64
MAX_PLATE: Final = 16
MAX_REVISION: Final = 2**63 - 1

_PUT_KEYS: Final = frozenset(
    {
        "publication_id",
        "kind",
        "fields",
        "subject_name",
        "subject_code",
        "plate",
        "decision_date",
        "publication_end",
        "revision",
    }
)
_DELETE_KEYS: Final = frozenset({"reason", "revision"})


def is_valid_publication_id(publication_id: str) -> bool:
    """1 to 128 of ``A-Z a-z 0-9 . _ : -``, starting with a letter or digit."""
    return _PUBLICATION_ID.fullmatch(publication_id) is not None


def is_valid_idempotency_key(key: str) -> bool:
    """1 to 255 visible ASCII characters."""
    return _IDEMPOTENCY_KEY.fullmatch(key) is not None


def _reject_unknown_keys(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidRequestError(
            UNKNOWN_FIELD,
            f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}",
            unknown[0],
        )


def _optional_text(body: Mapping[str, Any], name: str, limit: int) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequestError(INVALID_FIELD, f"{name} must be a string", name)
    value = value.strip()
    if len(value) > limit:
        raise InvalidRequestError(INVALID_FIELD, f"{name} is longer than {limit} characters", name)
    return value or None


def _required_text(body: Mapping[str, Any], name: str, limit: int) -> str:
    value = _optional_text(body, name, limit)
    if value is None:
        raise InvalidRequestError(MISSING_FIELD, f"{name} is required and must not be empty", name)
    return value


def _optional_date(body: Mapping[str, Any], name: str) -> date | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise InvalidRequestError(INVALID_DATE, f"{name} must be a date as YYYY-MM-DD", name)
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidRequestError(INVALID_DATE, f"{name} is not a calendar date", name) from None


def _required_date(body: Mapping[str, Any], name: str) -> date:
    value = _optional_date(body, name)
    if value is None:
        raise InvalidRequestError(MISSING_FIELD, f"{name} is required", name)
    return value


def _revision(body: Mapping[str, Any]) -> int:
    value = body.get("revision")
    if value is None:
        raise InvalidRequestError(MISSING_FIELD, "revision is required", "revision")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REVISION:
        raise InvalidRequestError(
            INVALID_FIELD, "revision must be an integer from 0 to 2**63-1", "revision"
        )
    return value


def parse_amount(value: FieldValue) -> Decimal:
    """An amount in 万元 from a decimal string (or a JSON number); finite and not negative.

    :raises ValueError: for anything else, e.g. ``"2000元"``.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError("not an amount")
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise ValueError("not a decimal number") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError("not a finite, non-negative amount")
    return amount


def _fields(body: Mapping[str, Any]) -> Mapping[str, FieldValue]:
    value = body.get("fields")
    if value is None:
        raise InvalidRequestError(MISSING_FIELD, "fields is required", "fields")
    if not isinstance(value, dict):
        raise InvalidRequestError(INVALID_FIELD, "fields must be an object", "fields")
    if len(value) > MAX_FIELDS:
        raise InvalidRequestError(
            INVALID_FIELD, f"fields has more than {MAX_FIELDS} entries", "fields"
        )
    fields: dict[str, FieldValue] = {}
    for name, item in value.items():
        where = f"fields.{name}"
        if not _FIELD_NAME.fullmatch(name):
            raise InvalidRequestError(
                INVALID_FIELD,
                "field names are a letter then up to 63 letters, digits or underscores",
                "fields",
            )
        if isinstance(item, bool) or not isinstance(item, str | int | float | None):
            raise InvalidRequestError(
                INVALID_FIELD, f"{where} must be a string, a number or null", where
            )
        if isinstance(item, str) and len(item) > MAX_FIELD_TEXT:
            raise InvalidRequestError(
                INVALID_FIELD, f"{where} is longer than {MAX_FIELD_TEXT} characters", where
            )
        if name in AMOUNT_FIELDS and item is not None:
            try:
                parse_amount(item)
            except ValueError:
                raise InvalidRequestError(
                    INVALID_AMOUNT,
                    f'{where} must be a non-negative decimal amount in 万元, e.g. "0.2"',
                    where,
                ) from None
        fields[name] = item
    return MappingProxyType(fields)


def _require_object(body: object) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequestError(MALFORMED_BODY, "the body must be a JSON object")
    return body


def parse_publication(publication_id: str, body: object) -> PublicationContent:
    """The content of a PUT body.

    :raises InvalidRequestError: naming the first problem found.
    """
    data = _require_object(body)
    _reject_unknown_keys(data, _PUT_KEYS)
    if "publication_id" in data and data["publication_id"] != publication_id:
        raise InvalidRequestError(
            INVALID_FIELD, "publication_id in the body differs from the URL", "publication_id"
        )
    raw_kind = data.get("kind")
    if raw_kind is None:
        raise InvalidRequestError(MISSING_FIELD, "kind is required", "kind")
    if raw_kind not in set(Kind):
        raise InvalidRequestError(
            UNKNOWN_KIND, f"kind must be one of {', '.join(k.value for k in Kind)}", "kind"
        )
    kind = Kind(raw_kind)
    fields = _fields(data)
    subject_name = _required_text(data, "subject_name", MAX_SUBJECT_NAME)
    subject_code = _required_text(data, "subject_code", MAX_SUBJECT_CODE)
    plate = _optional_text(data, "plate", MAX_PLATE)
    decision_date = _required_date(data, "decision_date")
    publication_end = _optional_date(data, "publication_end")
    revision = _revision(data)
    if publication_end is not None and publication_end < decision_date:
        raise InvalidRequestError(
            INVALID_DATE, "publication_end is before decision_date", "publication_end"
        )
    return PublicationContent(
        kind=kind,
        subject_name=subject_name,
        subject_code=subject_code,
        plate=plate,
        fields=fields,
        decision_date=decision_date,
        publication_end=publication_end,
        revision=revision,
    )


def parse_withdrawal(body: object) -> Withdrawal:
    """The content of a DELETE body.

    :raises InvalidRequestError: naming the first problem found.
    """
    data = _require_object(body)
    _reject_unknown_keys(data, _DELETE_KEYS)
    raw_reason = data.get("reason")
    if raw_reason is None:
        raise InvalidRequestError(MISSING_FIELD, "reason is required", "reason")
    if raw_reason not in set(WithdrawalReason):
        allowed = ", ".join(r.value for r in WithdrawalReason)
        raise InvalidRequestError(UNKNOWN_REASON, f"reason must be one of {allowed}", "reason")
    return Withdrawal(WithdrawalReason(raw_reason), _revision(data))


def texts_to_screen(publication_id: str, content: PublicationContent) -> list[tuple[str, object]]:
    """Every value of a publication the unmasked-data check reads, with its field name."""
    values: list[tuple[str, object]] = [
        ("publication_id", publication_id),
        ("subject_name", content.subject_name),
        ("subject_code", content.subject_code),
        ("plate", content.plate),
    ]
    values.extend((f"fields.{name}", value) for name, value in content.fields.items())
    return values


def request_hash(method: str, publication_id: str, body: object) -> str:
    """Fingerprint of a request for the idempotency table: method, target and the decoded body
    with sorted keys, so that whitespace and key order do not count as a different request."""
    canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256()
    digest.update(f"{method}\n{publication_id}\n".encode())
    digest.update(canonical)
    return digest.hexdigest()


# --- decisions ----------------------------------------------------------------------------------


def decide_put(stored: StoredPublication | None, revision: int) -> PutAction:
    """What a PUT at ``revision`` does to ``stored``."""
    if stored is None:
        return PutAction.CREATED
    if stored.withdrawn_at is not None:
        return PutAction.REPUBLISHED if revision > stored.content.revision else PutAction.STALE
    return PutAction.REPLACED if revision >= stored.content.revision else PutAction.STALE


def decide_withdrawal(stored: StoredPublication | None, revision: int) -> WithdrawalAction:
    """What a DELETE at ``revision`` does to ``stored``.

    Withdrawing an already withdrawn record at the same or a higher revision succeeds again (the
    reason and revision are updated, ``withdrawn_at`` is kept).
    """
    if stored is None:
        return WithdrawalAction.NOT_FOUND
    if revision < stored.content.revision:
        return WithdrawalAction.STALE
    return WithdrawalAction.WITHDRAWN


# --- responses ----------------------------------------------------------------------------------


def timestamp(moment: datetime) -> str:
    """How the API and the database write instants: ISO 8601 in UTC, microseconds."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def put_response(
    action: PutAction, publication_id: str, stored: StoredPublication, received_revision: int
) -> ApiResponse:
    """The answer to a PUT; ``stored`` is the record after the request."""
    body: dict[str, Any] = {
        "status": action.value,
        "publication_id": publication_id,
        "kind": stored.content.kind.value,
        "revision": stored.content.revision,
        "published_at": timestamp(stored.published_at),
    }
    if action is PutAction.STALE:
        body["received_revision"] = received_revision
        body["withdrawn"] = stored.withdrawn_at is not None
    status = 201 if action is PutAction.CREATED else 200
    return ApiResponse(status, body, action.value, stored.content.kind)


def withdrawal_response(
    action: WithdrawalAction,
    publication_id: str,
    stored: StoredPublication | None,
    received_revision: int,
) -> ApiResponse:
    """The answer to a DELETE; ``stored`` is the record after the request."""
    if stored is None:
        body: dict[str, Any] = {"status": action.value, "publication_id": publication_id}
        return ApiResponse(404, body, action.value, None)
    body = {
        "status": action.value,
        "publication_id": publication_id,
        "kind": stored.content.kind.value,
        "revision": stored.content.revision,
    }
    if stored.withdrawn_at is not None:
        body["withdrawn_at"] = timestamp(stored.withdrawn_at)
        body["withdrawal_reason"] = (
            stored.withdrawal_reason.value if stored.withdrawal_reason else None
        )
    if action is WithdrawalAction.STALE:
        body["received_revision"] = received_revision
    return ApiResponse(200, body, action.value, stored.content.kind)


def publication_record(stored: StoredPublication, today: date) -> dict[str, Any]:
    """The JSON of ``GET /api/v1/publications/{id}``: everything stored, and the status."""
    content = stored.content
    return {
        "publication_id": stored.publication_id,
        "status": stored.status(today),
        "kind": content.kind.value,
        "subject_name": content.subject_name,
        "subject_code": content.subject_code,
        "plate": content.plate,
        "fields": dict(content.fields),
        "decision_date": content.decision_date.isoformat(),
        "publication_end": (
            content.publication_end.isoformat() if content.publication_end else None
        ),
        "revision": content.revision,
        "published_at": timestamp(stored.published_at),
        "updated_at": timestamp(stored.updated_at),
        "withdrawn_at": timestamp(stored.withdrawn_at) if stored.withdrawn_at else None,
        "withdrawal_reason": (stored.withdrawal_reason.value if stored.withdrawal_reason else None),
    }

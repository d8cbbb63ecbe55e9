"""Validation of input events before any credit rule sees them.

:func:`validate` returns every problem of an event at once, each as a
:class:`~processors.model.Rejection` with a stable reason code; an event with any rejection goes
to the dead letters instead of the rules. The reason codes below are a public contract (metrics,
dead-letter records, dashboards): add new ones, never rename or reuse one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from operator import attrgetter
from types import MappingProxyType
from typing import Any, NamedTuple, assert_never

# The identifier reason codes live next to their checks and are re-exported as part of this
# module's set of reason codes.
from processors.identifiers import PLATE_COLOUR_MISMATCH as PLATE_COLOUR_MISMATCH
from processors.identifiers import PLATE_INVALID as PLATE_INVALID
from processors.identifiers import RESIDENT_ID_INVALID as RESIDENT_ID_INVALID
from processors.identifiers import USCC_INVALID as USCC_INVALID
from processors.identifiers import check_plate, check_resident_id, check_uscc
from processors.lists import ListName
from processors.model import (
    ChangeType,
    InputEvent,
    LicenceType,
    LicensingDecision,
    Objection,
    ObjectionTarget,
    OverloadDetection,
    PenaltyCategory,
    PenaltyDecision,
    PlateColour,
    Rejection,
    RepairApplication,
    SubjectKind,
    SubjectType,
    ValidationResult,
)

# --- reason codes -------------------------------------------------------------------------------

EMPTY_REQUIRED_FIELD = "EMPTY_REQUIRED_FIELD"
TIMESTAMP_WITHOUT_TIMEZONE = "TIMESTAMP_WITHOUT_TIMEZONE"
EVENT_TIME_IN_FUTURE = "EVENT_TIME_IN_FUTURE"
DECISION_DATE_IN_FUTURE = "DECISION_DATE_IN_FUTURE"
WEIGHT_NOT_POSITIVE = "WEIGHT_NOT_POSITIVE"
AXLE_COUNT_OUT_OF_RANGE = "AXLE_COUNT_OUT_OF_RANGE"
LEGAL_LIMIT_MISMATCH = "LEGAL_LIMIT_MISMATCH"
OVERLOAD_RATIO_MISMATCH = "OVERLOAD_RATIO_MISMATCH"
AMOUNT_NOT_FINITE = "AMOUNT_NOT_FINITE"
FINE_NEGATIVE = "FINE_NEGATIVE"
CONFISCATED_AMOUNT_NEGATIVE = "CONFISCATED_AMOUNT_NEGATIVE"
FINE_WITHOUT_FINE_CATEGORY = "FINE_WITHOUT_FINE_CATEGORY"
FINE_CATEGORY_WITHOUT_AMOUNT = "FINE_CATEGORY_WITHOUT_AMOUNT"
SUBJECT_IDENTIFIER_MISSING = "SUBJECT_IDENTIFIER_MISSING"
VALIDITY_RANGE_INVALID = "VALIDITY_RANGE_INVALID"
PERMIT_WITHOUT_VEHICLE = "PERMIT_WITHOUT_VEHICLE"
CERTIFICATE_WITHOUT_CARRIER = "CERTIFICATE_WITHOUT_CARRIER"
REVISION_NEGATIVE = "REVISION_NEGATIVE"
REVOCATION_OF_ORIGINAL = "REVOCATION_OF_ORIGINAL"
SUBJECT_IDENTIFIER_CONFLICT = "SUBJECT_IDENTIFIER_CONFLICT"
OBJECTION_TARGET_INCOMPLETE = "OBJECTION_TARGET_INCOMPLETE"
LIST_NAME_UNKNOWN = "LIST_NAME_UNKNOWN"

REASON_CODES: frozenset[str] = frozenset(
    {
        USCC_INVALID,
        RESIDENT_ID_INVALID,
        PLATE_INVALID,
        PLATE_COLOUR_MISMATCH,
        EMPTY_REQUIRED_FIELD,
        TIMESTAMP_WITHOUT_TIMEZONE,
        EVENT_TIME_IN_FUTURE,
        DECISION_DATE_IN_FUTURE,
        WEIGHT_NOT_POSITIVE,
        AXLE_COUNT_OUT_OF_RANGE,
        LEGAL_LIMIT_MISMATCH,
        OVERLOAD_RATIO_MISMATCH,
        AMOUNT_NOT_FINITE,
        FINE_NEGATIVE,
        CONFISCATED_AMOUNT_NEGATIVE,
        FINE_WITHOUT_FINE_CATEGORY,
        FINE_CATEGORY_WITHOUT_AMOUNT,
        SUBJECT_IDENTIFIER_MISSING,
        VALIDITY_RANGE_INVALID,
        PERMIT_WITHOUT_VEHICLE,
        CERTIFICATE_WITHOUT_CARRIER,
        REVISION_NEGATIVE,
        REVOCATION_OF_ORIGINAL,
        SUBJECT_IDENTIFIER_CONFLICT,
        OBJECTION_TARGET_INCOMPLETE,
        LIST_NAME_UNKNOWN,
    }
)
"""Every reason code :func:`validate` can return (identifier codes included)."""

# --- policy -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ValidationPolicy:
    """Tolerances of validation; the defaults are local choices the bureau may tune."""

    max_clock_skew: timedelta = timedelta(minutes=10)
    """How far ahead of ``now`` a timestamp may be before it counts as in the future."""
    overload_ratio_warning_tolerance: float = 0.005
    """A reported ratio further than this from the recomputed one is worth a warning."""
    overload_ratio_rejection_tolerance: float = 0.05
    """A reported ratio further than this from the recomputed one rejects the detection."""
    min_axle_count: int = 2
    """Fewest axles a weighed goods vehicle has."""
    max_axle_count: int = 12
    """Most axles a weighed vehicle plausibly has; more is a counting fault of the station."""


DEFAULT = ValidationPolicy()

CHINA_STANDARD_TIME = timezone(timedelta(hours=8), "CST")
"""Decision dates and birth dates are dates in China (UTC+8, no daylight saving)."""

# --- statutory gross weight limits --------------------------------------------------------------

# 车货总质量 limits by axle count: 超限运输车辆行驶公路管理规定 (交通运输部令2016年第62号)
# 第三条, which follows GB 1589-2016. Several limits share an axle count: 3 axles are 25 t for a
# truck and 27 t for a combination; 4 axles 31 t and 36 t; 6 and more 49 t, or 46 t when the
# tractor has a single drive axle. GB 1589-2016 allows 1 t more for three- and four-axle trucks
# whose twin-tyred drive axles have air suspension (26 t, 32 t), and 37 t for four-axle
# articulated combinations so equipped; 第三条第二款(五) defers to GB 1589 for such vehicles.
_SIX_OR_MORE_AXLES = 6
STATUTORY_GROSS_LIMITS_KG: Mapping[int, frozenset[int]] = MappingProxyType(
    {
        2: frozenset({18_000}),
        3: frozenset({25_000, 26_000, 27_000}),
        4: frozenset({31_000, 32_000, 36_000, 37_000}),
        5: frozenset({43_000}),
        _SIX_OR_MORE_AXLES: frozenset({46_000, 49_000}),
    }
)
# 第三条第二款: an axle (other than the drive axle) with single tyres lowers the limit by 3 t.
SINGLE_TYRE_REDUCTION_KG = 3_000
# A two-axle truck is also limited by the total mass on its 行驶证 (2016 车辆超限超载认定标准,
# 交公路发〔2016〕124号; 第三条第二款(四) for low-speed trucks), so any limit up to 18 t is lawful.
_TWO_AXLES = 2


def statutory_limits_kg(axle_count: int) -> frozenset[int]:
    """The table limits for ``axle_count`` axles; six and more share the six-axle row."""
    return STATUTORY_GROSS_LIMITS_KG.get(min(axle_count, _SIX_OR_MORE_AXLES), frozenset())


def _lowered_limits_kg(table: frozenset[int]) -> frozenset[int]:
    """The table limits and every positive limit 3 t, 6 t, ... below one of them."""
    return frozenset(
        lowered for limit in table for lowered in range(limit, 0, -SINGLE_TYRE_REDUCTION_KG)
    )


# Every lawful limit of each row but the two-axle one, worked out once: checking one is then a
# set lookup.
_MAX_TWO_AXLE_LIMIT_KG = max(STATUTORY_GROSS_LIMITS_KG[_TWO_AXLES])
_NO_LIMITS: frozenset[int] = frozenset()
_LAWFUL_LIMITS_KG: Mapping[int, frozenset[int]] = MappingProxyType(
    {
        axles: _lowered_limits_kg(table)
        for axles, table in STATUTORY_GROSS_LIMITS_KG.items()
        if axles != _TWO_AXLES
    }
)


def is_lawful_limit(axle_count: int, legal_limit_kg: int) -> bool:
    """Whether a reported gross weight limit is one the law allows for this axle count.

    A table limit, a table limit lowered in 3 t steps for single tyres, or, for two axles, any
    positive limit up to 18 t. A limit above the table never is: it would hide an overload.
    """
    if axle_count == _TWO_AXLES:
        return not (legal_limit_kg <= 0 or legal_limit_kg > _MAX_TWO_AXLE_LIMIT_KG)
    row = _SIX_OR_MORE_AXLES if axle_count > _SIX_OR_MORE_AXLES else axle_count
    return legal_limit_kg in _LAWFUL_LIMITS_KG.get(row, _NO_LIMITS)


# --- required fields ----------------------------------------------------------------------------


class _RequiredFields(NamedTuple):
    """Fields of an event type that must not be blank, and a getter reading them in one call."""

    names: tuple[str, ...]
    values_of: Callable[[Any], tuple[object, ...]]
    """Their values, in the order of ``names`` (an ``attrgetter``)."""


def _required(*names: str) -> _RequiredFields:
    # Every event type has several required fields, so the getter always returns a tuple.
    return _RequiredFields(names, attrgetter(*names))


_DETECTION_REQUIRED = _required(
    "event_id",
    "detection_id",
    "station_id",
    "station_name",
    "plate_number",
    "vehicle_class",
)
_PENALTY_REQUIRED = _required(
    "event_id",
    "decision_number",
    "subject_name",
    "violation_type",
    "facts",
    "legal_basis",
    "penalty_categories",
    "content",
    "authority",
    "authority_code",
)
_LICENSING_REQUIRED = _required(
    "event_id",
    "licence_number",
    "document_number",
    "document_name",
    "subject_name",
    "licence_category",
    "certificate_name",
    "content",
    "authority",
    "authority_code",
)

_OBJECTION_REQUIRED = _required("event_id", "objection_id", "handled_by")
_REPAIR_REQUIRED = _required("event_id", "application_id", "decision_number")

LIST_NAMES: frozenset[str] = frozenset(name.value for name in ListName)
"""The lists an objection's LIST_ENTRY target may name: BLACKLIST, WATCHLIST, RED_LIST."""

_NO_REJECTIONS = ValidationResult(())


def _result(rejections: list[Rejection]) -> ValidationResult:
    return ValidationResult(tuple(rejections)) if rejections else _NO_REJECTIONS


# --- entry points -------------------------------------------------------------------------------


def validate(
    event: InputEvent, *, now: datetime, policy: ValidationPolicy = DEFAULT
) -> ValidationResult:
    """Every rejection of ``event`` at ``now`` (timezone-aware), or an ok result."""
    match event:
        case OverloadDetection():
            return validate_detection(event, now=now, policy=policy)
        case PenaltyDecision():
            return validate_penalty(event, now=now, policy=policy)
        case LicensingDecision():
            return validate_licensing(event, now=now, policy=policy)
        case Objection():
            return validate_objection(event, now=now, policy=policy)
        case RepairApplication():
            return validate_repair_application(event, now=now, policy=policy)
        case _:
            assert_never(event)


def validate_detection(
    detection: OverloadDetection, *, now: datetime, policy: ValidationPolicy = DEFAULT
) -> ValidationResult:
    """Every rejection of a weigh-station or weigh-in-motion detection."""
    latest = _latest_acceptable(now, policy)
    if _is_plainly_valid(detection, latest, policy):
        return _NO_REJECTIONS
    rejections = _empty_fields(detection, _DETECTION_REQUIRED)
    rejections += _optional(_event_time_rejection(detection.event_time, now, latest, policy))
    rejections += _plate_rejections(detection.plate_number, detection.plate_colour)
    rejections += _weight_rejections(detection, policy)
    rejections += _uscc_rejections(detection, "carrier_uscc", "loading_source_uscc")
    if detection.driver_id_number is not None:  # the date in China is only needed for it
        rejections += _resident_id_rejections(detection, _date_in_china(latest), "driver_id_number")
    return _result(rejections)


def _is_plainly_valid(
    detection: OverloadDetection, latest: datetime, policy: ValidationPolicy
) -> bool:
    """True only if :func:`validate_detection` would find nothing: its checks, in a hurry.

    Nearly every detection is valid, and telling so in one function, with the identifier
    checks answered from their caches, is several times faster than collecting rejections.
    The test is conservative: any doubt (an unusual type, a blank optional identifier, anything
    a check rejects) answers False, and the detection goes through every check the long way.
    """
    if not _all_filled(_DETECTION_REQUIRED.values_of(detection)):
        return False
    event_time = detection.event_time
    if event_time.tzinfo is None or event_time.utcoffset() is None or event_time > latest:
        return False
    if check_plate(detection.plate_number, detection.plate_colour) is not None:
        return False
    gross, limit, axle_count = (
        detection.gross_weight_kg,
        detection.legal_limit_kg,
        detection.axle_count,
    )
    if not (
        gross > 0
        and limit > 0
        and policy.min_axle_count <= axle_count <= policy.max_axle_count
        and is_lawful_limit(axle_count, limit)
        # False for a NaN or infinite reported ratio too.
        and abs(detection.reported_overload_ratio - detection.overload_ratio)
        <= policy.overload_ratio_rejection_tolerance
    ):
        return False
    for uscc in (detection.carrier_uscc, detection.loading_source_uscc):
        if uscc is not None and check_uscc(uscc) is not None:
            return False
    driver_id_number = detection.driver_id_number
    return driver_id_number is None or (
        check_resident_id(driver_id_number, _date_in_china(latest)) is None
    )


def validate_penalty(
    penalty: PenaltyDecision, *, now: datetime, policy: ValidationPolicy = DEFAULT
) -> ValidationResult:
    """Every rejection of a penalty decision (行政处罚) or a change to one."""
    today = _today_in_china(now, policy)
    rejections = _empty_fields(penalty, _PENALTY_REQUIRED)
    rejections += _revision_rejections(penalty.revision)
    if penalty.revision == 0 and penalty.change_type is not ChangeType.ISSUED:
        rejections.append(
            Rejection(
                REVOCATION_OF_ORIGINAL,
                f"a {penalty.change_type.value} decision changes an earlier one, "
                "so its revision cannot be 0",
                "change_type",
            )
        )
    rejections += _optional(_decision_date_rejection(penalty.decision_date, today))
    rejections += _amount_rejections(penalty)
    rejections += _subject_identifier_rejections(penalty, today)
    rejections += _uscc_rejections(penalty, "authority_code", "carrier_uscc")
    rejections += _resident_id_rejections(penalty, today, "driver_id_number")
    rejections += _optional_plate_rejections(penalty.plate_number, penalty.plate_colour)
    return _result(rejections)


def validate_licensing(
    licensing: LicensingDecision, *, now: datetime, policy: ValidationPolicy = DEFAULT
) -> ValidationResult:
    """Every rejection of a licensing decision (行政许可) or a status change of a licence."""
    today = _today_in_china(now, policy)
    rejections = _empty_fields(licensing, _LICENSING_REQUIRED)
    rejections += _revision_rejections(licensing.revision)
    rejections += _optional(_decision_date_rejection(licensing.decision_date, today))
    rejections += _subject_identifier_rejections(licensing, today)
    rejections += _uscc_rejections(licensing, "authority_code", "carrier_uscc")
    rejections += _optional_plate_rejections(licensing.plate_number, licensing.plate_colour)
    rejections += _licence_kind_rejections(licensing)
    rejections += _validity_rejections(licensing)
    return _result(rejections)


def validate_objection(
    objection: Objection, *, now: datetime, policy: ValidationPolicy = DEFAULT
) -> ValidationResult:
    """Every rejection of an objection (异议) event: filed, upheld or rejected."""
    latest = _latest_acceptable(now, policy)
    rejections = _empty_fields(objection, _OBJECTION_REQUIRED)
    rejections += _optional(
        _event_time_rejection(objection.occurred_at, now, latest, policy, "occurred_at")
    )
    rejections += _file_subject_rejections(objection, _date_in_china(latest))
    rejections += _objection_target_rejections(objection)
    return _result(rejections)


def validate_repair_application(
    application: RepairApplication, *, now: datetime, policy: ValidationPolicy = DEFAULT
) -> ValidationResult:
    """Every rejection of a credit repair (信用修复) application.

    Unmet repair conditions (obligations not fulfilled, no public commitment) are no rejection:
    the application is valid, and the credit file refuses it by the rules (RULES.md §3).
    """
    latest = _latest_acceptable(now, policy)
    rejections = _empty_fields(application, _REPAIR_REQUIRED)
    rejections += _optional(
        _event_time_rejection(application.applied_at, now, latest, policy, "applied_at")
    )
    rejections += _file_subject_rejections(application, _date_in_china(latest))
    return _result(rejections)


def overload_ratio_drift(
    detection: OverloadDetection, *, policy: ValidationPolicy = DEFAULT
) -> float | None:
    """How far the reported overload ratio is from the recomputed one, when worth a warning.

    None when the drift is within the warning tolerance, or when :func:`validate` rejects the
    ratio anyway. The rules never use the reported ratio, so a drift is only a hint that the
    station's software rounds or computes differently; the caller logs and counts it.
    """
    drift = _overload_ratio_drift(detection)
    if drift is None or drift <= policy.overload_ratio_warning_tolerance:
        return None
    if drift > policy.overload_ratio_rejection_tolerance:
        return None
    return drift


# --- checks -------------------------------------------------------------------------------------


# A check returns what it rejects as a sequence; the checks that every event meets return the
# empty tuple, which costs no allocation, when there is nothing to report.


def _optional(rejection: Rejection | None) -> Sequence[Rejection]:
    return () if rejection is None else (rejection,)


def _is_blank(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, tuple):
        return not value
    return False


def _empty_fields(event: InputEvent, required: _RequiredFields) -> list[Rejection]:
    values = required.values_of(event)
    if _all_filled(values):
        return []
    return [
        Rejection(EMPTY_REQUIRED_FIELD, f"{name} is empty", name)
        for name, value in zip(required.names, values, strict=True)
        if _is_blank(value)
    ]


def _all_filled(values: Iterable[object]) -> bool:
    """No value is blank: :func:`_is_blank`, with the common case of a text handled inline."""
    for value in values:
        if value.__class__ is str:
            if value and not value.isspace():
                continue
        elif not _is_blank(value):
            continue
        return False
    return True


def _latest_acceptable(now: datetime, policy: ValidationPolicy) -> datetime:
    """The latest instant that is not in the future, allowing for clock skew."""
    if not _is_aware(now):
        raise ValueError("now must be timezone-aware")
    return now + policy.max_clock_skew


def _date_in_china(instant: datetime) -> date:
    return instant.astimezone(CHINA_STANDARD_TIME).date()


def _today_in_china(now: datetime, policy: ValidationPolicy) -> date:
    """The latest date that is not in the future in China, allowing for clock skew."""
    return _date_in_china(_latest_acceptable(now, policy))


def _is_aware(instant: datetime) -> bool:
    return instant.tzinfo is not None and instant.utcoffset() is not None


def _event_time_rejection(
    event_time: datetime,
    now: datetime,
    latest: datetime,
    policy: ValidationPolicy,
    field_name: str = "event_time",
) -> Rejection | None:
    if not _is_aware(event_time):
        return Rejection(TIMESTAMP_WITHOUT_TIMEZONE, f"{field_name} has no timezone", field_name)
    if event_time > latest:
        return Rejection(
            EVENT_TIME_IN_FUTURE,
            f"{field_name} {event_time.isoformat()} is more than "
            f"{policy.max_clock_skew} ahead of {now.isoformat()}",
            field_name,
        )
    return None


def _decision_date_rejection(decision_date: date, today: date) -> Rejection | None:
    if decision_date > today:
        return Rejection(
            DECISION_DATE_IN_FUTURE,
            f"decision_date {decision_date.isoformat()} is after today ({today.isoformat()})",
            "decision_date",
        )
    return None


def _revision_rejections(revision: int) -> Sequence[Rejection]:
    if revision < 0:
        return (Rejection(REVISION_NEGATIVE, f"revision {revision} is negative", "revision"),)
    return ()


def _plate_rejections(plate_number: str, plate_colour: PlateColour | None) -> Sequence[Rejection]:
    if _is_blank(plate_number):
        return ()  # reported as an empty required field
    rejection = check_plate(plate_number, plate_colour)
    if rejection is None:
        return ()
    return (replace(rejection, field_name="plate_number"),)


def _optional_plate_rejections(
    plate_number: str | None, plate_colour: PlateColour | None
) -> Sequence[Rejection]:
    # A vehicle's credit file is keyed by plate and colour together: one without the other
    # cannot be filed.
    if plate_number is None or _is_blank(plate_number):
        if plate_colour is None:
            return ()
        return (
            Rejection(
                EMPTY_REQUIRED_FIELD, "plate_colour is given without plate_number", "plate_number"
            ),
        )
    rejections = _plate_rejections(plate_number, plate_colour)
    if plate_colour is None:
        return (
            *rejections,
            Rejection(
                EMPTY_REQUIRED_FIELD, "plate_number is given without plate_colour", "plate_colour"
            ),
        )
    return rejections


# Identifier checks skip blank values: a blank optional field counts as absent (exports write ""
# for "unknown"), and a blank required one is reported once, by the check that requires it.


def _uscc_rejections(event: InputEvent, *field_names: str) -> Sequence[Rejection]:
    rejections: Sequence[Rejection] = ()
    for name in field_names:
        value = getattr(event, name)
        if value is None or _is_blank(value):
            continue
        rejection = check_uscc(value)
        if rejection is not None:
            rejections = (*rejections, replace(rejection, field_name=name))
    return rejections


def _resident_id_rejections(
    event: InputEvent, today: date, *field_names: str
) -> Sequence[Rejection]:
    rejections: Sequence[Rejection] = ()
    for name in field_names:
        value = getattr(event, name)
        if value is None or _is_blank(value):
            continue
        rejection = check_resident_id(value, today)
        if rejection is not None:
            rejections = (*rejections, replace(rejection, field_name=name))
    return rejections


def _subject_identifier_rejections(
    decision: PenaltyDecision | LicensingDecision, today: date
) -> list[Rejection]:
    """The identifier the subject type requires, and any identifier given, must be valid.

    Organisations and individual businesses are identified by USCC (CF_XDR_SHXYM), natural
    persons by resident ID number (CF_XDR_ZJHM); a credit file cannot be keyed without it.
    """
    if decision.subject_type is SubjectType.NATURAL_PERSON:
        required_name, required_value = "subject_id_number", decision.subject_id_number
    else:
        required_name, required_value = "subject_uscc", decision.subject_uscc
    rejections: list[Rejection] = []
    if _is_blank(required_value):
        rejections.append(
            Rejection(
                SUBJECT_IDENTIFIER_MISSING,
                f"a {decision.subject_type.value} subject needs {required_name}",
                required_name,
            )
        )
    rejections += _uscc_rejections(decision, "subject_uscc")
    rejections += _resident_id_rejections(decision, today, "subject_id_number")
    return rejections


_KINDS_KEYED_BY_USCC = frozenset({SubjectKind.CARRIER, SubjectKind.LOADING_SOURCE})
# 17 digits and a digit or X: what a resident ID number looks like (some USCCs do too).
_RESIDENT_ID_LIKE = re.compile("[0-9]{17}[0-9X]")


def _file_subject_rejections(event: Objection | RepairApplication, today: date) -> list[Rejection]:
    """The event names the credit file it concerns, by the identifier of the subject's kind.

    A vehicle's file is keyed by plate and colour together, an organisation's by USCC, a
    driver's by resident ID number, and any other party's (``PERSON``) by either. The identifier
    of another kind is refused rather than ignored: it would mean the event is about another file.
    """
    rejections: list[Rejection] = []
    kind = event.subject_kind
    if kind is SubjectKind.VEHICLE:
        for name, value in (
            ("plate_number", event.plate_number),
            ("plate_colour", event.plate_colour),
        ):
            if _is_blank(value):
                rejections.append(
                    Rejection(SUBJECT_IDENTIFIER_MISSING, f"a VEHICLE subject needs {name}", name)
                )
        if event.plate_number is not None:
            rejections += _plate_rejections(event.plate_number, event.plate_colour)
        if not _is_blank(event.subject_code):
            rejections.append(
                Rejection(
                    SUBJECT_IDENTIFIER_CONFLICT,
                    "a VEHICLE subject is identified by its plate: subject_code must be empty",
                    "subject_code",
                )
            )
        return rejections
    code = event.subject_code
    if code is None or _is_blank(code):
        rejections.append(
            Rejection(
                SUBJECT_IDENTIFIER_MISSING,
                f"a {kind.value} subject needs subject_code",
                "subject_code",
            )
        )
    elif kind in _KINDS_KEYED_BY_USCC:
        rejections += _uscc_rejections(event, "subject_code")
    elif kind is SubjectKind.DRIVER:
        rejections += _resident_id_rejections(event, today, "subject_code")
    elif check_uscc(code) is not None and check_resident_id(code, today) is not None:
        # A PERSON may be either: report the check of the identifier it looks like.
        if _RESIDENT_ID_LIKE.fullmatch(code):
            rejections += _resident_id_rejections(event, today, "subject_code")
        else:
            rejections += _uscc_rejections(event, "subject_code")
    for name in ("plate_number", "plate_colour"):
        if not _is_blank(getattr(event, name)):
            rejections.append(
                Rejection(
                    SUBJECT_IDENTIFIER_CONFLICT,
                    f"a {kind.value} subject is identified by subject_code: {name} must be empty",
                    name,
                )
            )
    return rejections


def _objection_target_rejections(objection: Objection) -> list[Rejection]:
    """A list entry is named by its list and rule, a decision record by its decision number."""
    rejections = []
    if objection.target is ObjectionTarget.LIST_ENTRY:
        list_name = objection.list_name
        if list_name is None or _is_blank(list_name):
            rejections.append(
                Rejection(
                    OBJECTION_TARGET_INCOMPLETE,
                    "a LIST_ENTRY objection needs list_name",
                    "list_name",
                )
            )
        elif list_name not in LIST_NAMES:
            rejections.append(
                Rejection(
                    LIST_NAME_UNKNOWN,
                    # Not echoed: a free text field may hold anything, personal data included.
                    f"list_name is not one of {', '.join(sorted(LIST_NAMES))} (upper case)",
                    "list_name",
                )
            )
        if _is_blank(objection.rule_id):
            rejections.append(
                Rejection(
                    OBJECTION_TARGET_INCOMPLETE, "a LIST_ENTRY objection needs rule_id", "rule_id"
                )
            )
    elif _is_blank(objection.decision_number):
        rejections.append(
            Rejection(
                OBJECTION_TARGET_INCOMPLETE,
                "a DECISION objection needs decision_number",
                "decision_number",
            )
        )
    return rejections


def _weight_rejections(detection: OverloadDetection, policy: ValidationPolicy) -> list[Rejection]:
    rejections = [
        Rejection(WEIGHT_NOT_POSITIVE, f"{name} is {value}, not a positive weight", name)
        for name, value in (
            ("gross_weight_kg", detection.gross_weight_kg),
            ("legal_limit_kg", detection.legal_limit_kg),
        )
        if value <= 0
    ]
    axle_count = detection.axle_count
    if not policy.min_axle_count <= axle_count <= policy.max_axle_count:
        rejections.append(
            Rejection(
                AXLE_COUNT_OUT_OF_RANGE,
                f"axle_count {axle_count} is outside "
                f"{policy.min_axle_count}..{policy.max_axle_count}",
                "axle_count",
            )
        )
    elif detection.legal_limit_kg > 0 and not is_lawful_limit(axle_count, detection.legal_limit_kg):
        table = ", ".join(str(limit) for limit in sorted(statutory_limits_kg(axle_count)))
        rejections.append(
            Rejection(
                LEGAL_LIMIT_MISMATCH,
                f"legal_limit_kg {detection.legal_limit_kg} is not a lawful limit for "
                f"{axle_count} axles (table: {table} kg)",
                "legal_limit_kg",
            )
        )
    # With a bad weight, axle count or limit the recomputed ratio is itself wrong: comparing the
    # reported one with it would only add noise.
    if not rejections:
        rejections += _optional(_overload_ratio_rejection(detection, policy))
    return rejections


def _overload_ratio_drift(detection: OverloadDetection) -> float | None:
    """|reported - recomputed| ratio; infinite when the report is not a number at all."""
    if detection.gross_weight_kg <= 0 or detection.legal_limit_kg <= 0:
        return None
    if not math.isfinite(detection.reported_overload_ratio):
        return math.inf
    return abs(detection.reported_overload_ratio - detection.overload_ratio)


def _overload_ratio_rejection(
    detection: OverloadDetection, policy: ValidationPolicy
) -> Rejection | None:
    # The rules always use the recomputed ratio, so a small drift (rounding, a station that
    # truncates) harms nothing and is only a warning (overload_ratio_drift). A gross drift, by
    # default five percentage points, means the station sends a ratio of something else (percent
    # instead of a fraction, another limit, swapped fields): its weights are then suspect too.
    drift = _overload_ratio_drift(detection)
    if drift is None or drift <= policy.overload_ratio_rejection_tolerance:
        return None
    return Rejection(
        OVERLOAD_RATIO_MISMATCH,
        f"reported_overload_ratio {detection.reported_overload_ratio} differs from "
        f"gross/limit - 1 = {detection.overload_ratio:.4f} by more than "
        f"{policy.overload_ratio_rejection_tolerance}",
        "reported_overload_ratio",
    )


def _amount_rejections(penalty: PenaltyDecision) -> list[Rejection]:
    rejections = []
    for name, amount, negative_code in (
        ("fine_amount_yuan", penalty.fine_amount_yuan, FINE_NEGATIVE),
        ("confiscated_amount_yuan", penalty.confiscated_amount_yuan, CONFISCATED_AMOUNT_NEGATIVE),
    ):
        # Ordering comparisons with a Decimal NaN raise, so finiteness is checked first.
        if not amount.is_finite():
            rejections.append(Rejection(AMOUNT_NOT_FINITE, f"{name} is {amount}", name))
        elif amount < 0:
            rejections.append(Rejection(negative_code, f"{name} {amount} is negative", name))
    fine = penalty.fine_amount_yuan
    if not fine.is_finite():
        return rejections
    has_fine_category = PenaltyCategory.FINE in penalty.penalty_categories
    if fine > 0 and not has_fine_category:
        rejections.append(
            Rejection(
                FINE_WITHOUT_FINE_CATEGORY,
                f"fine_amount_yuan is {fine} but penalty_categories has no FINE",
                "penalty_categories",
            )
        )
    if has_fine_category and fine <= Decimal(0):
        rejections.append(
            Rejection(
                FINE_CATEGORY_WITHOUT_AMOUNT,
                "penalty_categories has FINE but fine_amount_yuan is not positive",
                "fine_amount_yuan",
            )
        )
    return rejections


_LICENCES_NAMING_A_VEHICLE = frozenset(
    {LicenceType.VEHICLE_OPERATING_CERTIFICATE, LicenceType.OVERSIZE_TRANSPORT_PERMIT}
)


def _licence_kind_rejections(licensing: LicensingDecision) -> list[Rejection]:
    rejections = []
    needs_vehicle = licensing.licence_type in _LICENCES_NAMING_A_VEHICLE
    if needs_vehicle and _is_blank(licensing.plate_number):
        rejections.append(
            Rejection(
                PERMIT_WITHOUT_VEHICLE,
                f"a {licensing.licence_type.value} names a vehicle, but plate_number is empty",
                "plate_number",
            )
        )
    if licensing.licence_type is LicenceType.VEHICLE_OPERATING_CERTIFICATE and _is_blank(
        licensing.carrier_uscc
    ):
        rejections.append(
            Rejection(
                CERTIFICATE_WITHOUT_CARRIER,
                "a vehicle operating certificate ties the vehicle to a carrier, "
                "but carrier_uscc is empty",
                "carrier_uscc",
            )
        )
    return rejections


def _validity_rejections(licensing: LicensingDecision) -> list[Rejection]:
    rejections = []
    if licensing.valid_until is not None and licensing.valid_until < licensing.valid_from:
        rejections.append(
            Rejection(
                VALIDITY_RANGE_INVALID,
                f"valid_until {licensing.valid_until} is before valid_from {licensing.valid_from}",
                "valid_until",
            )
        )
    start, end = licensing.permit_valid_from, licensing.permit_valid_until
    naive = [
        Rejection(TIMESTAMP_WITHOUT_TIMEZONE, f"{name} has no timezone", name)
        for name, instant in (("permit_valid_from", start), ("permit_valid_until", end))
        if instant is not None and not _is_aware(instant)
    ]
    rejections += naive
    if start is not None and end is not None and not naive and end < start:
        rejections.append(
            Rejection(
                VALIDITY_RANGE_INVALID,
                f"permit_valid_until {end.isoformat()} is before "
                f"permit_valid_from {start.isoformat()}",
                "permit_valid_until",
            )
        )
    return rejections

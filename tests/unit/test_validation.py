"""Validation of input events: every rejection, with a stable reason code and no personal data."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from processors import validation
from processors.identifiers import resident_id_check_digit, uscc_check_character
from processors.model import (
    ChangeType,
    LicenceStatus,
    LicenceType,
    LicensingDecision,
    Objection,
    ObjectionAction,
    ObjectionTarget,
    OverloadDetection,
    PenaltyCategory,
    PenaltyDecision,
    PlateColour,
    Procedure,
    RepairApplication,
    StationType,
    SubjectKind,
    SubjectType,
    ValidationResult,
    ViolationCode,
)
from processors.validation import (
    AMOUNT_NOT_FINITE,
    AXLE_COUNT_OUT_OF_RANGE,
    CERTIFICATE_WITHOUT_CARRIER,
    CONFISCATED_AMOUNT_NEGATIVE,
    DECISION_DATE_IN_FUTURE,
    DEFAULT,
    EMPTY_REQUIRED_FIELD,
    EVENT_TIME_IN_FUTURE,
    FINE_CATEGORY_WITHOUT_AMOUNT,
    FINE_NEGATIVE,
    FINE_WITHOUT_FINE_CATEGORY,
    LEGAL_LIMIT_MISMATCH,
    LIST_NAME_UNKNOWN,
    OBJECTION_TARGET_INCOMPLETE,
    OVERLOAD_RATIO_MISMATCH,
    PERMIT_WITHOUT_VEHICLE,
    PLATE_COLOUR_MISMATCH,
    PLATE_INVALID,
    REASON_CODES,
    RESIDENT_ID_INVALID,
    REVISION_NEGATIVE,
    REVOCATION_OF_ORIGINAL,
    SUBJECT_IDENTIFIER_CONFLICT,
    SUBJECT_IDENTIFIER_MISSING,
    TIMESTAMP_WITHOUT_TIMEZONE,
    USCC_INVALID,
    VALIDITY_RANGE_INVALID,
    WEIGHT_NOT_POSITIVE,
    ValidationPolicy,
    is_lawful_limit,
    overload_ratio_drift,
    validate,
    validate_detection,
    validate_licensing,
    validate_objection,
    validate_penalty,
    validate_repair_application,
)

NOW = datetime(2025, 10, 13, 2, 0, tzinfo=UTC)  # 10:00 in 东阿县
TODAY_IN_CHINA = date(2025, 10, 13)

# Identifiers: one published code, the others built with the check functions that
# test_identifiers.py verifies against published codes.
CARRIER_USCC = "91371082775260043P"
LOADING_SOURCE_USCC = "91371524MA3C00001" + uscc_check_character("91371524MA3C00001")
AUTHORITY_CODE = "11371524004311071" + uscc_check_character("11371524004311071")
DRIVER_ID = "37152419900101123" + resident_id_check_digit("37152419900101123")
PERSON_ID = "37152419851231456" + resident_id_check_digit("37152419851231456")
BAD_ID = "371524199001011230" if DRIVER_ID[-1] != "0" else "371524199001011231"
BAD_USCC = "91370000163042397U"  # check character should be C


def make_detection(**overrides: Any) -> OverloadDetection:
    """A valid precise weighing of a six-axle combination 25 % over its limit, then overrides."""
    detection = OverloadDetection(
        event_id="det-evt-0001",
        detection_id="DA-20251013-0001",
        event_time=NOW - timedelta(hours=1),
        station_id="371524-01",
        station_name="东阿县超限检测站",
        station_type=StationType.FIXED_STATION_PRECISE,
        plate_number="鲁P12345",
        plate_colour=PlateColour.YELLOW,
        vehicle_class="六轴列车",
        axle_count=6,
        gross_weight_kg=61_250,
        legal_limit_kg=49_000,
        reported_overload_ratio=0.25,
        carrier_uscc=CARRIER_USCC,
        carrier_name="聊城某运输有限公司",
        driver_id_number=DRIVER_ID,
        driver_name="张某",
        loading_source_uscc=LOADING_SOURCE_USCC,
        loading_source_name="东阿某砂石厂",
    )
    return dataclasses.replace(detection, **overrides)


def make_penalty(**overrides: Any) -> PenaltyDecision:
    """A valid fine of a carrier for overload transport, then overrides."""
    penalty = PenaltyDecision(
        event_id="pen-evt-0001",
        decision_number="东交罚〔2025〕123号",
        revision=0,
        change_type=ChangeType.ISSUED,
        subject_name="聊城某运输有限公司",
        subject_type=SubjectType.LEGAL_PERSON,
        violation_code=ViolationCode.OVERLOAD_TRANSPORT,
        violation_type="违法超限运输",
        facts="2025年10月1日，车辆鲁P12345车货总质量61.25吨，超限25%。",
        legal_basis="《公路安全保护条例》第六十六条",
        penalty_categories=(PenaltyCategory.FINE,),
        content="罚款2000元",
        fine_amount_yuan=Decimal("2000"),
        decision_date=date(2025, 10, 10),
        authority="东阿县交通运输局",
        authority_code=AUTHORITY_CODE,
        procedure=Procedure.GENERAL,
        subject_uscc=CARRIER_USCC,
        plate_number="鲁P12345",
        plate_colour=PlateColour.YELLOW,
        driver_id_number=DRIVER_ID,
    )
    return dataclasses.replace(penalty, **overrides)


def make_licensing(**overrides: Any) -> LicensingDecision:
    """A valid vehicle operating certificate tying 鲁P12345 to its carrier, then overrides."""
    licensing = LicensingDecision(
        event_id="lic-evt-0001",
        licence_number="鲁交运管聊字371524000123号",
        document_number="东交许〔2025〕45号",
        document_name="道路运输证核发决定书",
        revision=0,
        licence_type=LicenceType.VEHICLE_OPERATING_CERTIFICATE,
        status=LicenceStatus.GRANTED,
        subject_name="聊城某运输有限公司",
        subject_type=SubjectType.LEGAL_PERSON,
        licence_category="普通",
        certificate_name="道路运输证",
        content="道路普通货物运输",
        decision_date=date(2025, 10, 9),
        valid_from=date(2025, 10, 9),
        valid_until=date(2031, 10, 8),
        authority="东阿县交通运输局",
        authority_code=AUTHORITY_CODE,
        subject_uscc=CARRIER_USCC,
        plate_number="鲁P12345",
        plate_colour=PlateColour.YELLOW,
        carrier_uscc=CARRIER_USCC,
    )
    return dataclasses.replace(licensing, **overrides)


def make_objection(**overrides: Any) -> Objection:
    """A valid filing of an objection to 鲁P12345's blacklist entry, then overrides."""
    objection = Objection(
        event_id="obj-evt-0001",
        objection_id="YY-2025-0001",
        action=ObjectionAction.FILED,
        subject_kind=SubjectKind.VEHICLE,
        target=ObjectionTarget.LIST_ENTRY,
        occurred_at=NOW - timedelta(hours=1),
        handled_by="东阿县交通运输局",
        plate_number="鲁P12345",
        plate_colour=PlateColour.YELLOW,
        list_name="BLACKLIST",
        rule_id="overload.vehicle",
        reason="两次检测系同一次运输",
    )
    return dataclasses.replace(objection, **overrides)


def make_repair_application(**overrides: Any) -> RepairApplication:
    """A valid repair application of a carrier for one of its penalties, then overrides."""
    application = RepairApplication(
        event_id="rep-evt-0001",
        application_id="XF-2025-0001",
        subject_kind=SubjectKind.CARRIER,
        decision_number="东交罚〔2025〕123号",
        applied_at=NOW - timedelta(hours=1),
        obligations_fulfilled=True,
        public_commitment=True,
        subject_code=CARRIER_USCC,
        applicant_name="聊城某运输有限公司",
    )
    return dataclasses.replace(application, **overrides)


# An objection to a decision record, held by a carrier's file.
_CARRIER_FILE = {
    "subject_kind": SubjectKind.CARRIER,
    "subject_code": CARRIER_USCC,
    "plate_number": None,
    "plate_colour": None,
}
_DECISION_TARGET = {
    "target": ObjectionTarget.DECISION,
    "list_name": None,
    "rule_id": None,
    "decision_number": "东交罚〔2025〕123号",
}
# The plate fields of a vehicle's file, for applications.
_VEHICLE_FILE = {
    "subject_kind": SubjectKind.VEHICLE,
    "subject_code": None,
    "plate_number": "鲁P12345",
    "plate_colour": PlateColour.YELLOW,
}


def reasons(result: ValidationResult) -> set[tuple[str, str | None]]:
    """The (reason code, field) pairs of a result."""
    return {(rejection.reason_code, rejection.field_name) for rejection in result.rejections}


# --- valid events -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        make_detection(),
        make_detection(
            station_type=StationType.WEIGH_IN_MOTION,
            carrier_uscc=None,
            driver_id_number=None,
            loading_source_uscc=None,
        ),
        make_detection(plate_number="鲁P12345D", plate_colour=PlateColour.YELLOW_GREEN),
        make_detection(event_time=NOW + DEFAULT.max_clock_skew),  # skew is tolerated
        make_detection(reported_overload_ratio=0.2549),  # rounding drift is no rejection
        make_detection(driver_id_number="", carrier_uscc=" "),  # blank optional = unknown
        make_penalty(),
        make_penalty(
            subject_type=SubjectType.NATURAL_PERSON,
            subject_name="张某",
            subject_uscc=None,
            subject_id_number=PERSON_ID,
        ),
        make_penalty(
            subject_type=SubjectType.INDIVIDUAL_BUSINESS,
            subject_uscc="92340602MA2PBMEM24",
        ),
        make_penalty(penalty_categories=(PenaltyCategory.WARNING,), fine_amount_yuan=Decimal(0)),
        make_penalty(plate_number=None, plate_colour=None, driver_id_number=None),
        make_penalty(revision=2, change_type=ChangeType.REVOKED),
        make_penalty(decision_date=TODAY_IN_CHINA),
        make_licensing(),
        make_licensing(
            licence_type=LicenceType.ROAD_TRANSPORT_OPERATING_LICENCE,
            plate_number=None,
            plate_colour=None,
            carrier_uscc=None,
            valid_until=None,
        ),
        make_licensing(
            licence_type=LicenceType.OVERSIZE_TRANSPORT_PERMIT,
            carrier_uscc=None,
            permit_valid_from=NOW,
            permit_valid_until=NOW + timedelta(days=3),
        ),
        make_licensing(valid_until=date(2025, 10, 9)),  # a one-day licence
        make_objection(),
        make_objection(action=ObjectionAction.REJECTED, reason=""),  # no statement needed
        make_objection(occurred_at=NOW + DEFAULT.max_clock_skew),  # skew is tolerated
        make_objection(list_name="WATCHLIST", rule_id="watchlist.repeated_minor"),
        make_objection(**_CARRIER_FILE, list_name="RED_LIST", rule_id="red_list.clean_top_grade"),
        make_objection(**_CARRIER_FILE, **_DECISION_TARGET),
        # A DECISION objection may still say which list entry made the subject object.
        make_objection(**_CARRIER_FILE, **(_DECISION_TARGET | {"rule_id": "overload.vehicle"})),
        make_objection(
            subject_kind=SubjectKind.LOADING_SOURCE,
            subject_code=LOADING_SOURCE_USCC,
            plate_number=None,
            plate_colour=None,
        ),
        make_objection(
            subject_kind=SubjectKind.DRIVER,
            subject_code=DRIVER_ID,
            plate_number="",  # blank = absent
            plate_colour=None,
        ),
        # A PERSON is keyed by either identifier.
        make_objection(**(_CARRIER_FILE | {"subject_kind": SubjectKind.PERSON})),
        make_objection(
            **(_CARRIER_FILE | {"subject_kind": SubjectKind.PERSON, "subject_code": PERSON_ID})
        ),
        make_repair_application(),
        # Unmet repair conditions are the credit file's to refuse, not validation's.
        make_repair_application(obligations_fulfilled=False, public_commitment=False),
        make_repair_application(**_VEHICLE_FILE, applicant_name=""),
        make_repair_application(subject_kind=SubjectKind.DRIVER, subject_code=DRIVER_ID),
    ],
)
def test_valid_events_have_no_rejections(
    event: OverloadDetection | PenaltyDecision | LicensingDecision | Objection | RepairApplication,
) -> None:
    """Well-formed detections, decisions, objections and repair applications pass validation."""
    result = validate(event, now=NOW)
    assert result.ok, result.rejections


def test_validate_dispatches_on_the_event_type() -> None:
    """validate() gives the same result as the validator for the event's type."""
    bad = {"event_id": ""}
    assert validate(make_detection(**bad), now=NOW) == validate_detection(
        make_detection(**bad), now=NOW
    )
    assert validate(make_penalty(**bad), now=NOW) == validate_penalty(make_penalty(**bad), now=NOW)
    assert validate(make_licensing(**bad), now=NOW) == validate_licensing(
        make_licensing(**bad), now=NOW
    )
    assert validate(make_objection(**bad), now=NOW) == validate_objection(
        make_objection(**bad), now=NOW
    )
    assert validate(make_repair_application(**bad), now=NOW) == validate_repair_application(
        make_repair_application(**bad), now=NOW
    )


# --- detections ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"event_id": ""}, {(EMPTY_REQUIRED_FIELD, "event_id")}),
        ({"station_id": "  "}, {(EMPTY_REQUIRED_FIELD, "station_id")}),
        # An empty plate is reported once, as empty, not also as malformed.
        ({"plate_number": ""}, {(EMPTY_REQUIRED_FIELD, "plate_number")}),
        ({"plate_number": "鲁P1234O"}, {(PLATE_INVALID, "plate_number")}),
        ({"plate_number": "鲁p12345"}, {(PLATE_INVALID, "plate_number")}),  # codec normalises
        ({"plate_colour": PlateColour.GREEN}, {(PLATE_COLOUR_MISMATCH, "plate_number")}),
        ({"event_time": NOW + timedelta(minutes=11)}, {(EVENT_TIME_IN_FUTURE, "event_time")}),
        (
            {"event_time": datetime(2025, 10, 13, 9, 0)},  # naive on purpose
            {(TIMESTAMP_WITHOUT_TIMEZONE, "event_time")},
        ),
        (
            {"gross_weight_kg": 0, "reported_overload_ratio": -1.0},
            {(WEIGHT_NOT_POSITIVE, "gross_weight_kg")},
        ),
        # A zero limit must not reach gross / limit.
        ({"legal_limit_kg": 0}, {(WEIGHT_NOT_POSITIVE, "legal_limit_kg")}),
        ({"axle_count": 1}, {(AXLE_COUNT_OUT_OF_RANGE, "axle_count")}),
        ({"axle_count": 13}, {(AXLE_COUNT_OUT_OF_RANGE, "axle_count")}),
        # A three-axle truck can never have a 49 t limit: the ratio would hide its overload.
        ({"axle_count": 3}, {(LEGAL_LIMIT_MISMATCH, "legal_limit_kg")}),
        # Tonnes instead of kilograms.
        (
            {"legal_limit_kg": 49, "reported_overload_ratio": 1249.0},
            {(LEGAL_LIMIT_MISMATCH, "legal_limit_kg")},
        ),
        # Percent instead of a fraction: the station's arithmetic is broken.
        ({"reported_overload_ratio": 25.0}, {(OVERLOAD_RATIO_MISMATCH, "reported_overload_ratio")}),
        (
            {"reported_overload_ratio": 0.31},
            {(OVERLOAD_RATIO_MISMATCH, "reported_overload_ratio")},
        ),
        (
            {"reported_overload_ratio": math.nan},
            {(OVERLOAD_RATIO_MISMATCH, "reported_overload_ratio")},
        ),
        ({"carrier_uscc": BAD_USCC}, {(USCC_INVALID, "carrier_uscc")}),
        ({"loading_source_uscc": "91371524"}, {(USCC_INVALID, "loading_source_uscc")}),
        ({"driver_id_number": BAD_ID}, {(RESIDENT_ID_INVALID, "driver_id_number")}),
    ],
)
def test_detection_rejections(
    overrides: dict[str, Any], expected: set[tuple[str, str | None]]
) -> None:
    """Each malformed detection field yields exactly its reason code (GB 1589-2016, GA 36-2018)."""
    assert reasons(validate_detection(make_detection(**overrides), now=NOW)) == expected


@pytest.mark.parametrize(
    ("axle_count", "legal_limit_kg", "lawful"),
    [
        (2, 18_000, True),
        (2, 4_495, True),  # a light truck: the mass on its 行驶证
        (2, 18_001, False),
        (3, 25_000, True),  # truck
        (3, 26_000, True),  # truck with air suspension (GB 1589-2016)
        (3, 27_000, True),  # combination
        (3, 22_000, True),  # single tyres: 25 t - 3 t
        (3, 23_500, False),
        (3, 28_000, False),
        (4, 31_000, True),
        (4, 32_000, True),
        (4, 36_000, True),
        (4, 37_000, True),  # articulated, air suspension (GB 1589-2016)
        (4, 38_000, False),
        (5, 43_000, True),
        (5, 40_000, True),
        (5, 42_000, False),
        (6, 49_000, True),
        (6, 46_000, True),  # tractor with a single drive axle
        (6, 50_000, False),
        (6, 49, False),  # tonnes
        (8, 49_000, True),  # six axles and more share one limit
        (1, 18_000, False),
    ],
)
def test_lawful_limits_follow_the_statutory_table(
    axle_count: int, legal_limit_kg: int, lawful: bool
) -> None:
    """Limits follow 62号令 第三条 and GB 1589-2016, incl. tyre and air-suspension variants."""
    assert is_lawful_limit(axle_count, legal_limit_kg) is lawful


@pytest.mark.parametrize(
    ("reported", "drift"),
    [
        (0.25, None),
        (0.2549, None),  # within the warning tolerance
        (0.26, 0.01),  # worth a warning
        (0.30, 0.05),  # still only a warning at the rejection tolerance
        (0.31, None),  # rejected by validate() instead
    ],
)
def test_overload_ratio_drift_is_reported_between_the_tolerances(
    reported: float, drift: float | None
) -> None:
    """A small drift of the reported ratio is a warning; the product uses gross/limit - 1."""
    found = overload_ratio_drift(make_detection(reported_overload_ratio=reported))
    assert found == pytest.approx(drift)


def test_policy_tolerances_change_the_verdict() -> None:
    """A stricter ValidationPolicy turns a tolerated skew and drift into rejections."""
    strict = ValidationPolicy(max_clock_skew=timedelta(0), overload_ratio_rejection_tolerance=0.001)
    detection = make_detection(event_time=NOW + timedelta(minutes=1), reported_overload_ratio=0.26)
    assert validate(detection, now=NOW).ok
    assert reasons(validate(detection, now=NOW, policy=strict)) == {
        (EVENT_TIME_IN_FUTURE, "event_time"),
        (OVERLOAD_RATIO_MISMATCH, "reported_overload_ratio"),
    }


def test_naive_now_is_a_programming_error() -> None:
    """now must be timezone-aware: comparing instants without one would be wrong by hours."""
    with pytest.raises(ValueError, match="timezone-aware"):
        validate(make_detection(), now=datetime(2025, 10, 13, 10, 0))  # naive on purpose


# --- penalties ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"decision_number": ""}, {(EMPTY_REQUIRED_FIELD, "decision_number")}),
        (
            {"penalty_categories": (), "fine_amount_yuan": Decimal(0)},
            {(EMPTY_REQUIRED_FIELD, "penalty_categories")},
        ),
        ({"authority_code": ""}, {(EMPTY_REQUIRED_FIELD, "authority_code")}),
        ({"authority_code": BAD_USCC}, {(USCC_INVALID, "authority_code")}),
        ({"revision": -1}, {(REVISION_NEGATIVE, "revision")}),
        ({"change_type": ChangeType.REVOKED}, {(REVOCATION_OF_ORIGINAL, "change_type")}),
        ({"change_type": ChangeType.MODIFIED}, {(REVOCATION_OF_ORIGINAL, "change_type")}),
        (
            {"decision_date": TODAY_IN_CHINA + timedelta(days=1)},
            {(DECISION_DATE_IN_FUTURE, "decision_date")},
        ),
        (
            {"fine_amount_yuan": Decimal("-2000")},
            {
                (FINE_NEGATIVE, "fine_amount_yuan"),
                (FINE_CATEGORY_WITHOUT_AMOUNT, "fine_amount_yuan"),
            },
        ),
        ({"fine_amount_yuan": Decimal("NaN")}, {(AMOUNT_NOT_FINITE, "fine_amount_yuan")}),
        (
            {"confiscated_amount_yuan": Decimal("-1")},
            {(CONFISCATED_AMOUNT_NEGATIVE, "confiscated_amount_yuan")},
        ),
        (
            {"confiscated_amount_yuan": Decimal("Infinity")},
            {(AMOUNT_NOT_FINITE, "confiscated_amount_yuan")},
        ),
        (
            {"penalty_categories": (PenaltyCategory.WARNING,)},
            {(FINE_WITHOUT_FINE_CATEGORY, "penalty_categories")},
        ),
        (
            {"fine_amount_yuan": Decimal(0)},
            {(FINE_CATEGORY_WITHOUT_AMOUNT, "fine_amount_yuan")},
        ),
        ({"subject_uscc": None}, {(SUBJECT_IDENTIFIER_MISSING, "subject_uscc")}),
        (
            {"subject_type": SubjectType.INDIVIDUAL_BUSINESS, "subject_uscc": ""},
            {(SUBJECT_IDENTIFIER_MISSING, "subject_uscc")},
        ),
        # A natural person is keyed by resident ID number; a USCC does not stand in for it.
        (
            {"subject_type": SubjectType.NATURAL_PERSON},
            {(SUBJECT_IDENTIFIER_MISSING, "subject_id_number")},
        ),
        ({"subject_uscc": BAD_USCC}, {(USCC_INVALID, "subject_uscc")}),
        (
            {"subject_type": SubjectType.NATURAL_PERSON, "subject_id_number": BAD_ID},
            {(RESIDENT_ID_INVALID, "subject_id_number")},
        ),
        ({"driver_id_number": BAD_ID}, {(RESIDENT_ID_INVALID, "driver_id_number")}),
        ({"carrier_uscc": BAD_USCC}, {(USCC_INVALID, "carrier_uscc")}),
        ({"plate_number": "鲁P1234"}, {(PLATE_INVALID, "plate_number")}),
        ({"plate_colour": None}, {(EMPTY_REQUIRED_FIELD, "plate_colour")}),
        ({"plate_number": None}, {(EMPTY_REQUIRED_FIELD, "plate_number")}),
    ],
)
def test_penalty_rejections(
    overrides: dict[str, Any], expected: set[tuple[str, str | None]]
) -> None:
    """Each malformed penalty field yields exactly its reason code (GB 32100, GB 11643)."""
    assert reasons(validate_penalty(make_penalty(**overrides), now=NOW)) == expected


def test_decision_date_is_judged_in_china_time() -> None:
    """A decision dated today in China is not in the future while UTC is still on yesterday."""
    just_after_midnight_in_china = datetime(2025, 10, 12, 16, 30, tzinfo=UTC)
    penalty = make_penalty(decision_date=date(2025, 10, 13))
    assert validate(penalty, now=just_after_midnight_in_china).ok
    assert reasons(validate(penalty, now=just_after_midnight_in_china - timedelta(hours=1))) == {
        (DECISION_DATE_IN_FUTURE, "decision_date")
    }


def test_resident_id_birth_date_is_judged_in_china_time() -> None:
    """A driver born today in China is valid even while UTC is still on yesterday."""
    born_today = "37152420251013123" + resident_id_check_digit("37152420251013123")
    detection = make_detection(
        driver_id_number=born_today, event_time=datetime(2025, 10, 12, 16, 30, tzinfo=UTC)
    )
    assert validate(detection, now=datetime(2025, 10, 12, 16, 30, tzinfo=UTC)).ok


# --- licensing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"licence_number": ""}, {(EMPTY_REQUIRED_FIELD, "licence_number")}),
        ({"revision": -1}, {(REVISION_NEGATIVE, "revision")}),
        (
            {"decision_date": TODAY_IN_CHINA + timedelta(days=1)},
            {(DECISION_DATE_IN_FUTURE, "decision_date")},
        ),
        ({"valid_until": date(2025, 10, 8)}, {(VALIDITY_RANGE_INVALID, "valid_until")}),
        (
            {"plate_number": None, "plate_colour": None},
            {(PERMIT_WITHOUT_VEHICLE, "plate_number")},
        ),
        (
            {
                "licence_type": LicenceType.OVERSIZE_TRANSPORT_PERMIT,
                "plate_number": None,
                "plate_colour": None,
            },
            {(PERMIT_WITHOUT_VEHICLE, "plate_number")},
        ),
        ({"carrier_uscc": None}, {(CERTIFICATE_WITHOUT_CARRIER, "carrier_uscc")}),
        ({"carrier_uscc": "91371082775260043"}, {(USCC_INVALID, "carrier_uscc")}),
        ({"plate_colour": PlateColour.GREEN}, {(PLATE_COLOUR_MISMATCH, "plate_number")}),
        (
            {"permit_valid_from": NOW, "permit_valid_until": NOW - timedelta(seconds=1)},
            {(VALIDITY_RANGE_INVALID, "permit_valid_until")},
        ),
        (
            {
                "permit_valid_from": datetime(2025, 10, 13, 8, 0),  # naive on purpose
                "permit_valid_until": NOW,
            },
            {(TIMESTAMP_WITHOUT_TIMEZONE, "permit_valid_from")},
        ),
        (
            {
                "subject_type": SubjectType.NATURAL_PERSON,
                "subject_uscc": None,
                "subject_id_number": None,
            },
            {(SUBJECT_IDENTIFIER_MISSING, "subject_id_number")},
        ),
    ],
)
def test_licensing_rejections(
    overrides: dict[str, Any], expected: set[tuple[str, str | None]]
) -> None:
    """Each malformed licensing field yields exactly its reason code."""
    assert reasons(validate_licensing(make_licensing(**overrides), now=NOW)) == expected


def test_permit_validity_compares_instants_across_timezones() -> None:
    """Permit validity is compared as instants: 09:00+08:00 is before 02:00Z the same day."""
    china = timezone(timedelta(hours=8))
    licensing = make_licensing(
        licence_type=LicenceType.OVERSIZE_TRANSPORT_PERMIT,
        permit_valid_from=datetime(2025, 10, 13, 9, 0, tzinfo=china),
        permit_valid_until=datetime(2025, 10, 13, 2, 0, tzinfo=UTC),
    )
    assert validate(licensing, now=NOW).ok


# --- objections and repair applications ---------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"event_id": ""}, {(EMPTY_REQUIRED_FIELD, "event_id")}),
        ({"objection_id": " "}, {(EMPTY_REQUIRED_FIELD, "objection_id")}),
        ({"handled_by": ""}, {(EMPTY_REQUIRED_FIELD, "handled_by")}),
        ({"occurred_at": NOW + timedelta(minutes=11)}, {(EVENT_TIME_IN_FUTURE, "occurred_at")}),
        (
            {"occurred_at": datetime(2025, 10, 13, 9, 0)},  # naive on purpose
            {(TIMESTAMP_WITHOUT_TIMEZONE, "occurred_at")},
        ),
        # A vehicle's file is keyed by plate and colour together.
        ({"plate_number": None}, {(SUBJECT_IDENTIFIER_MISSING, "plate_number")}),
        ({"plate_number": "  "}, {(SUBJECT_IDENTIFIER_MISSING, "plate_number")}),
        ({"plate_colour": None}, {(SUBJECT_IDENTIFIER_MISSING, "plate_colour")}),
        ({"plate_number": "鲁P1234O"}, {(PLATE_INVALID, "plate_number")}),
        ({"plate_colour": PlateColour.GREEN}, {(PLATE_COLOUR_MISMATCH, "plate_number")}),
        # The identifier of another kind of subject: which file is meant?
        ({"subject_code": CARRIER_USCC}, {(SUBJECT_IDENTIFIER_CONFLICT, "subject_code")}),
        (
            {"subject_kind": SubjectKind.CARRIER, "subject_code": CARRIER_USCC},
            {
                (SUBJECT_IDENTIFIER_CONFLICT, "plate_number"),
                (SUBJECT_IDENTIFIER_CONFLICT, "plate_colour"),
            },
        ),
        (
            _CARRIER_FILE | {"subject_code": None},
            {(SUBJECT_IDENTIFIER_MISSING, "subject_code")},
        ),
        (_CARRIER_FILE | {"subject_code": BAD_USCC}, {(USCC_INVALID, "subject_code")}),
        # A carrier is keyed by USCC: an ID number is no USCC (and stays masked).
        (_CARRIER_FILE | {"subject_code": DRIVER_ID}, {(USCC_INVALID, "subject_code")}),
        (
            _CARRIER_FILE | {"subject_kind": SubjectKind.LOADING_SOURCE, "subject_code": "9137"},
            {(USCC_INVALID, "subject_code")},
        ),
        (
            _CARRIER_FILE | {"subject_kind": SubjectKind.DRIVER, "subject_code": BAD_ID},
            {(RESIDENT_ID_INVALID, "subject_code")},
        ),
        (
            _CARRIER_FILE | {"subject_kind": SubjectKind.DRIVER, "subject_code": CARRIER_USCC},
            {(RESIDENT_ID_INVALID, "subject_code")},
        ),
        # A PERSON that is neither is judged as what it looks like: digits and X, an ID number.
        (
            _CARRIER_FILE | {"subject_kind": SubjectKind.PERSON, "subject_code": BAD_ID},
            {(RESIDENT_ID_INVALID, "subject_code")},
        ),
        (
            _CARRIER_FILE | {"subject_kind": SubjectKind.PERSON, "subject_code": BAD_USCC},
            {(USCC_INVALID, "subject_code")},
        ),
        # The target: a list entry by list and rule, a decision record by its number.
        ({"list_name": None}, {(OBJECTION_TARGET_INCOMPLETE, "list_name")}),
        ({"rule_id": " "}, {(OBJECTION_TARGET_INCOMPLETE, "rule_id")}),
        (
            {"list_name": "", "rule_id": None},
            {(OBJECTION_TARGET_INCOMPLETE, "list_name"), (OBJECTION_TARGET_INCOMPLETE, "rule_id")},
        ),
        ({"list_name": "blacklist"}, {(LIST_NAME_UNKNOWN, "list_name")}),  # upper case only
        ({"list_name": "黑名单"}, {(LIST_NAME_UNKNOWN, "list_name")}),
        (
            _DECISION_TARGET | {"decision_number": None},
            {(OBJECTION_TARGET_INCOMPLETE, "decision_number")},
        ),
        # A list entry's target does not need the decision number, nor the other way round.
        (
            _DECISION_TARGET | {"decision_number": "", "list_name": "BLACKLIST"},
            {(OBJECTION_TARGET_INCOMPLETE, "decision_number")},
        ),
    ],
)
def test_objection_rejections(
    overrides: dict[str, Any], expected: set[tuple[str, str | None]]
) -> None:
    """Each malformed objection field yields exactly its reason code."""
    assert reasons(validate_objection(make_objection(**overrides), now=NOW)) == expected


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"event_id": ""}, {(EMPTY_REQUIRED_FIELD, "event_id")}),
        ({"application_id": ""}, {(EMPTY_REQUIRED_FIELD, "application_id")}),
        ({"decision_number": " "}, {(EMPTY_REQUIRED_FIELD, "decision_number")}),
        ({"applied_at": NOW + timedelta(minutes=11)}, {(EVENT_TIME_IN_FUTURE, "applied_at")}),
        (
            {"applied_at": datetime(2025, 10, 13, 9, 0)},  # naive on purpose
            {(TIMESTAMP_WITHOUT_TIMEZONE, "applied_at")},
        ),
        ({"subject_code": None}, {(SUBJECT_IDENTIFIER_MISSING, "subject_code")}),
        ({"subject_code": BAD_USCC}, {(USCC_INVALID, "subject_code")}),
        (
            {"plate_number": "鲁P12345", "plate_colour": PlateColour.YELLOW},
            {
                (SUBJECT_IDENTIFIER_CONFLICT, "plate_number"),
                (SUBJECT_IDENTIFIER_CONFLICT, "plate_colour"),
            },
        ),
        (
            _VEHICLE_FILE | {"plate_colour": None},
            {(SUBJECT_IDENTIFIER_MISSING, "plate_colour")},
        ),
        (
            _VEHICLE_FILE | {"plate_number": "鲁P12345D"},  # new-energy plate, yellow colour
            {(PLATE_COLOUR_MISMATCH, "plate_number")},
        ),
        (
            _VEHICLE_FILE | {"subject_code": CARRIER_USCC},
            {(SUBJECT_IDENTIFIER_CONFLICT, "subject_code")},
        ),
        (
            {"subject_kind": SubjectKind.DRIVER, "subject_code": BAD_ID},
            {(RESIDENT_ID_INVALID, "subject_code")},
        ),
    ],
)
def test_repair_application_rejections(
    overrides: dict[str, Any], expected: set[tuple[str, str | None]]
) -> None:
    """Each malformed repair application field yields exactly its reason code."""
    application = make_repair_application(**overrides)
    assert reasons(validate_repair_application(application, now=NOW)) == expected


def test_objection_messages_never_contain_unmasked_identifiers() -> None:
    """A rejected subject code of an objection appears masked, whatever kind it is checked as."""
    for kind in (SubjectKind.CARRIER, SubjectKind.DRIVER, SubjectKind.PERSON):
        objection = make_objection(
            **(_CARRIER_FILE | {"subject_kind": kind, "subject_code": BAD_ID})
        )
        messages = " ".join(r.message for r in validate(objection, now=NOW).rejections)
        assert messages
        assert BAD_ID not in messages
        assert "19900101" not in messages


# --- across event types -------------------------------------------------------------------------


def test_all_rejections_are_collected_not_just_the_first() -> None:
    """Every problem of an event is reported at once."""
    penalty = make_penalty(
        event_id="",
        revision=-1,
        fine_amount_yuan=Decimal("-1"),
        subject_uscc=BAD_USCC,
        driver_id_number=BAD_ID,
        plate_colour=PlateColour.GREEN,
    )
    assert reasons(validate(penalty, now=NOW)) == {
        (EMPTY_REQUIRED_FIELD, "event_id"),
        (REVISION_NEGATIVE, "revision"),
        (FINE_NEGATIVE, "fine_amount_yuan"),
        (FINE_CATEGORY_WITHOUT_AMOUNT, "fine_amount_yuan"),
        (USCC_INVALID, "subject_uscc"),
        (RESIDENT_ID_INVALID, "driver_id_number"),
        (PLATE_COLOUR_MISMATCH, "plate_number"),
    }


def test_messages_never_contain_unmasked_identifiers() -> None:
    """Rejected identifiers appear masked (first 3 and last 2 characters) in every message."""
    bad_person_id = "37152419851231456" + ("0" if PERSON_ID[-1] != "0" else "1")
    penalty = make_penalty(
        subject_type=SubjectType.NATURAL_PERSON,
        subject_id_number=bad_person_id,
        driver_id_number=BAD_ID,
        subject_uscc=bad_person_id,  # an ID number in the USCC field is still personal data
        plate_number="鲁P1234O",
    )
    messages = " ".join(rejection.message for rejection in validate(penalty, now=NOW).rejections)
    for value in (bad_person_id, BAD_ID, "鲁P1234O", "19851231", "19900101"):
        assert value not in messages
    assert f"{bad_person_id[:3]}{'*' * 13}{bad_person_id[-2:]}" in messages


def test_every_reason_code_is_listed_and_named_after_itself() -> None:
    """Reason codes are stable strings: each constant's value is its own name."""
    constants = {
        name: value
        for name, value in vars(validation).items()
        if name.isupper() and isinstance(value, str) and value in REASON_CODES
    }
    assert set(constants.values()) == REASON_CODES
    assert all(name == value for name, value in constants.items())

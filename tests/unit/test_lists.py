"""List rules as tables, one row per scenario (RULES.md §2, §6).

Sources: 公路安全保护条例 第66条 and 交通运输部办公厅 2017 通知 (the list criteria): "超过3次" is
strict and "以上" inclusive; "1年内" is a rolling 365-day window keyed on the decision date.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import yaml

from processors.ledger import held_violations
from processors.lists import (
    CARRIER_FLEET_RATIO,
    CLEAN_TOP_GRADE,
    DRIVER_OVERLOAD,
    GROSS_OVERWEIGHT,
    INSTIGATOR_FINE,
    INSTIGATOR_REPEAT,
    REPEATED_MINOR,
    VEHICLE_OVERLOAD,
    AlertKind,
    ListAction,
    ListName,
)
from processors.model import (
    ChangeType,
    InputEvent,
    LicenceStatus,
    LicenceType,
    PenaltyCategory,
    PenaltyDecision,
    SubjectKind,
    SubjectRef,
    ViolationCode,
)
from processors.policy import PolicyBook, parse_policy_book
from tests.unit.credit_support import (
    CARRIER_USCC,
    DRIVER_ID,
    INSTIGATOR_USCC,
    LOADING_SOURCE_USCC,
    PLATE,
    Pipeline,
    carrier,
    certificate,
    driver,
    instant,
    licence,
    penalty,
    permit,
    review,
    vehicle,
    weighing,
)
from tests.unit.test_policy import SHIPPED

BLACK_VEHICLE = (ListName.BLACKLIST, VEHICLE_OVERLOAD)
BLACK_DRIVER = (ListName.BLACKLIST, DRIVER_OVERLOAD)
BLACK_CARRIER = (ListName.BLACKLIST, CARRIER_FLEET_RATIO)
BLACK_FINE = (ListName.BLACKLIST, INSTIGATOR_FINE)
BLACK_REPEAT = (ListName.BLACKLIST, INSTIGATOR_REPEAT)
BLACK_GROSS = (ListName.BLACKLIST, GROSS_OVERWEIGHT)
WATCH = (ListName.WATCHLIST, REPEATED_MINOR)
RED = (ListName.RED_LIST, CLEAN_TOP_GRADE)
INSTIGATOR = SubjectRef(SubjectKind.PERSON, INSTIGATOR_USCC)


def book_with(**settings: object) -> PolicyBook:
    """The shipped policy with ``section.key`` settings changed in its first version."""
    document = yaml.safe_load(yaml.safe_dump(SHIPPED, allow_unicode=True))
    for path, value in settings.items():
        section, key = path.split("__")
        document["versions"][0][section][key] = value
    return parse_policy_book(yaml.safe_dump(document, allow_unicode=True))


def overloads(
    *days: str, plate: str = PLATE, driver_id: str = DRIVER_ID, tag: str = "p"
) -> list[PenaltyDecision]:
    """One overload fine per day, on the driver of ``plate``."""
    return [
        penalty(f"{tag}{i}-{plate}-{driver_id}", day, plate=plate, subject_id_number=driver_id)
        for i, day in enumerate(days)
    ]


# --- vehicle and driver: more than 3 in a rolling 365 days ------------------------------------

THREE = ("2024-01-10", "2024-03-10", "2024-05-10")


@pytest.mark.parametrize(
    ("events", "vehicle_lists", "driver_lists"),
    [
        pytest.param(overloads(*THREE), set(), set(), id="3-in-a-year-not-listed"),
        pytest.param(
            overloads(*THREE, "2024-07-10"), {BLACK_VEHICLE}, {BLACK_DRIVER}, id="4th-lists"
        ),
        # 2024 is a leap year: 2024-12-30 is 364 days after 2024-01-01, so all four fall in
        # one 365-day window ...
        pytest.param(
            overloads("2024-01-01", "2024-05-01", "2024-09-01", "2024-12-30"),
            {BLACK_VEHICLE},
            {BLACK_DRIVER},
            id="4-spread-over-365-days-lists",
        ),
        # ... and 2024-12-31 is 365 days after it: the four span 366 days, no window holds them.
        pytest.param(
            overloads("2024-01-01", "2024-05-01", "2024-09-01", "2024-12-31"),
            set(),
            set(),
            id="4-spread-over-366-days-not-listed",
        ),
        pytest.param(
            overloads("2024-10-01", "2024-12-01", "2025-02-01", "2025-04-01"),
            {BLACK_VEHICLE},
            {BLACK_DRIVER},
            id="window-crosses-the-calendar-year",
        ),
        pytest.param(
            overloads("2024-01-10", plate="鲁P00001")
            + overloads("2024-02-10", plate="鲁P00002")
            + overloads("2024-03-10", plate="鲁P00003")
            + overloads("2024-04-10", plate="鲁P00004"),
            set(),
            {BLACK_DRIVER},
            id="driver-listed-across-four-vehicles",
        ),
        pytest.param(
            overloads(*THREE, driver_id="371524198502021111")
            + overloads("2024-07-10", driver_id="371524199003033333"),
            {BLACK_VEHICLE},
            set(),
            id="vehicle-listed-across-two-drivers",
        ),
        pytest.param(
            [*overloads(*THREE), weighing("w1", instant("2024-06-01"))],
            {BLACK_VEHICLE},
            {BLACK_DRIVER},
            id="confirmed-weighing-is-the-4th",
        ),
        pytest.param(
            [*overloads(*THREE), weighing("w1", instant("2024-06-01"), precise=False)],
            set(),
            set(),
            id="weigh-in-motion-never-counts",
        ),
        pytest.param(
            [*overloads(*THREE), weighing("w1", instant("2024-06-01"), gross_kg=49_000)],
            set(),
            set(),
            id="weighing-at-the-limit-is-not-over-it",
        ),
        # Counted once: 2 + (weighing w1 confirmed by penalty c1) = 3, not 4.
        pytest.param(
            [
                *overloads("2024-01-10", "2024-03-10"),
                weighing("w1", instant("2024-06-01"), detection_id="D-1"),
                penalty("c1", "2024-06-05", detections=("D-1",)),
            ],
            set(),
            set(),
            id="weighing-then-its-penalty-count-once",
        ),
        pytest.param(
            [
                *overloads("2024-01-10", "2024-03-10"),
                penalty("c1", "2024-06-05", detections=("D-1",)),
                weighing("w1", instant("2024-06-01"), detection_id="D-1"),
            ],
            set(),
            set(),
            id="penalty-then-its-weighing-count-once",
        ),
        # Two decisions on one weighing (driver and carrier both fined) are one overload event.
        pytest.param(
            [
                *overloads("2024-01-10", "2024-03-10"),
                penalty("c1", "2024-06-05", detections=("D-1",)),
                penalty("c2", "2024-06-06", detections=("D-1",), subject_uscc=CARRIER_USCC),
            ],
            set(),
            set(),
            id="two-decisions-on-one-weighing-count-once",
        ),
        # The same driver in another truck: the 4th counts for the driver, not for this vehicle.
        pytest.param(
            [*overloads(*THREE), weighing("w1", instant("2024-06-01"), plate="鲁P99999")],
            set(),
            {BLACK_DRIVER},
            id="another-vehicles-weighing-counts-for-the-driver",
        ),
        pytest.param(
            [*overloads(*THREE), *overloads("2024-05-10", tag="p")[:1]],
            set(),
            set(),
            id="redelivered-penalty-counts-once",
        ),
        # The station resent weighing D-1 under a new event id: still one weighing.
        pytest.param(
            [
                *overloads("2024-01-10", "2024-03-10"),
                weighing("w1", instant("2024-06-01"), detection_id="D-1"),
                weighing("w1-resent", instant("2024-06-01"), detection_id="D-1"),
            ],
            set(),
            set(),
            id="resent-weighing-counts-once",
        ),
        pytest.param(
            [*overloads(*THREE), penalty("o1", "2024-07-10", code=ViolationCode.OTHER)],
            set(),
            set(),
            id="a-non-overload-violation-does-not-count",
        ),
    ],
)
def test_vehicle_and_driver_are_listed_for_more_than_three_in_a_window(
    events: Sequence[InputEvent], vehicle_lists: set, driver_lists: set
) -> None:
    """公路安全保护条例 第66条 / 2017 通知 items 1-2: the 4th overload in 365 days lists."""
    pipeline = Pipeline().feed(*events)
    assert pipeline.members(vehicle()) == vehicle_lists
    assert pipeline.members(driver()) == driver_lists


# --- carrier: more than 10% of the fleet, and a suspension order --------------------------------


def fleet(
    size: int,
    overloading: int,
    *,
    order: str | None = "2024-10-01",
    days: Sequence[str] = ("2024-06-01",),
) -> list:
    """A carrier with ``size`` certified vehicles, ``overloading`` of them penalised once each."""
    plates = [f"鲁P{n:05d}" for n in range(size)]
    events: list[InputEvent] = [certificate(f"cert-{p}", p) for p in plates]
    for n, plate in enumerate(plates[:overloading]):
        events.append(
            penalty(
                f"f{n}", days[n % len(days)], plate=plate, subject_id_number=f"3715241980{n:08d}"
            )
        )
    if order is not None:
        events.append(suspension(order))
    return events


def suspension(day: str) -> InputEvent:
    """责令停业整顿 against the carrier, with no vehicle."""
    return penalty(
        f"order-{day}",
        day,
        plate=None,
        subject_uscc=CARRIER_USCC,
        code=ViolationCode.OVERLOAD_TRANSPORT,
        categories=(PenaltyCategory.SUSPENSION_ORDER,),
        fine_yuan="0",
    )


NO_ORDER_NEEDED = book_with(overload_blacklist__carrier_requires_suspension_order=False)


@pytest.mark.parametrize(
    ("events", "book", "listed"),
    [
        # "超过10%" is strict: exactly 10% is not more.
        pytest.param(fleet(10, 1), None, False, id="1-of-10-is-not-over-10pct"),
        pytest.param(fleet(20, 2), None, False, id="2-of-20-is-not-over-10pct"),
        pytest.param(fleet(19, 2), None, True, id="2-of-19-is-over-10pct"),
        pytest.param(fleet(10, 2), None, True, id="2-of-10"),
        pytest.param(fleet(19, 2, order=None), None, False, id="no-suspension-order"),
        pytest.param(fleet(19, 2, order=None), NO_ORDER_NEEDED, True, id="order-not-required"),
        pytest.param(
            fleet(10, 1, order=None), NO_ORDER_NEEDED, False, id="order-not-required-10pct"
        ),
        # Surprising: the order must come after the year it judges (it is the consequence of
        # that year), so an order before the overloads does not combine with them.
        pytest.param(fleet(19, 3, order="2024-05-01"), None, False, id="order-before-overloads"),
        pytest.param(
            fleet(19, 2, order="2025-06-01", days=("2024-06-01",)),
            None,
            False,
            id="overloads-more-than-a-year-before-the-order",
        ),
        pytest.param(
            fleet(19, 2, order="2025-05-31", days=("2024-06-01",)),
            None,
            True,
            id="overloads-364-days-before-the-order",
        ),
        # Surprising: two overloading vehicles without a certificate still belong to the fleet:
        # 17 certified + 2 = 19 vehicles, so 2 of 19 is over 10%.
        pytest.param(
            [certificate(f"cert-{n}", f"鲁P{n:05d}") for n in range(17)]
            + overloads("2024-06-01", plate="鲁Q00001", tag="x")
            + overloads("2024-06-02", plate="鲁Q00002", tag="y")
            + [suspension("2024-10-01")],
            None,
            True,
            id="uncertified-overloaders-count-in-the-fleet",
        ),
        # A revoked certificate shrinks the fleet from the day of the revocation on.
        pytest.param(
            [
                *fleet(20, 2)[:-1],
                certificate(
                    "cert-rev",
                    "鲁P00019",
                    status=LicenceStatus.REVOKED,
                    revision=1,
                    decided="2024-03-01",
                    number="cert-鲁P00019",
                ),
                suspension("2024-10-01"),
            ],
            None,
            True,
            id="revoked-certificate-leaves-the-fleet",
        ),
    ],
)
def test_carrier_is_listed_when_overloaders_exceed_its_share_of_the_fleet(
    events: Sequence[InputEvent], book: PolicyBook | None, listed: bool
) -> None:
    """第66条 "超过本单位货运车辆总数10%" and 2017 通知 item 3 "并被责令停业整顿"."""
    pipeline = Pipeline(book=book) if book is not None else Pipeline()
    pipeline.feed(*events)
    assert (BLACK_CARRIER in pipeline.members(carrier())) is listed


# --- instigators: a fine of 20,000 or more, or 3 or more penalties in a year --------------------


def instigation(
    event_id: str, day: str, fine: str = "5000", *, plate: str | None = None
) -> InputEvent:
    """A penalty on a consignor (not the carrier) for 指使、强令 overloading."""
    return penalty(
        event_id,
        day,
        code=ViolationCode.INSTIGATE_OVERLOAD,
        subject_uscc=INSTIGATOR_USCC,
        plate=plate,
        fine_yuan=fine,
    )


@pytest.mark.parametrize(
    ("events", "lists"),
    [
        pytest.param([instigation("i1", "2024-03-01", "19999.99")], set(), id="fine-19999.99"),
        # "2万元以上" includes 20,000 itself.
        pytest.param([instigation("i1", "2024-03-01", "20000")], {BLACK_FINE}, id="fine-20000"),
        pytest.param(
            [instigation("i1", "2024-03-01"), instigation("i2", "2024-06-01")],
            set(),
            id="2-penalties",
        ),
        # "3次以上" includes 3.
        pytest.param(
            [
                instigation("i1", "2024-03-01"),
                instigation("i2", "2024-06-01"),
                instigation("i3", "2024-09-01"),
            ],
            {BLACK_REPEAT},
            id="3-penalties",
        ),
        pytest.param(
            [
                instigation("i1", "2024-03-01"),
                instigation("i2", "2024-06-01"),
                instigation("i3", "2025-03-01"),
            ],
            set(),
            id="3-penalties-over-366-days",
        ),
        pytest.param(
            [instigation("i1", "2024-03-01", "20000", plate=PLATE)],
            {BLACK_FINE},
            id="instigation-in-a-vehicle-case",
        ),
    ],
)
def test_instigator_is_listed_for_a_large_fine_or_repeated_penalties(
    events: Sequence[InputEvent], lists: set
) -> None:
    """2017 通知 item 5: 指使、强令 with a fine of 2万元以上 or 3次以上 within a year."""
    pipeline = Pipeline().feed(*events)
    assert pipeline.members(INSTIGATOR) == lists
    assert pipeline.members(vehicle()) == set()  # the vehicle did not instigate anything


def test_a_carrier_that_instigates_is_listed_in_its_carrier_file() -> None:
    """A carrier penalised for instigation keeps one file: the instigator rule applies to it."""
    event = penalty(
        "i1",
        "2024-03-01",
        code=ViolationCode.INSTIGATE_OVERLOAD,
        subject_uscc=CARRIER_USCC,
        plate=None,
        fine_yuan="30000",
    )
    assert Pipeline().feed(event).members(carrier()) == {BLACK_FINE}


# --- oversize permits ---------------------------------------------------------------------------

START, END = instant("2024-06-01", 8), instant("2024-06-03", 18)
SECOND = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("weighed_at", "permit_events", "listed"),
    [
        pytest.param(START, [permit("pm", START, END)], False, id="exactly-at-start"),
        pytest.param(END, [permit("pm", START, END)], False, id="exactly-at-end"),
        pytest.param(START - SECOND, [permit("pm", START, END)], True, id="1s-before-start"),
        pytest.param(END + SECOND, [permit("pm", START, END)], True, id="1s-after-end"),
        pytest.param(START, [permit("pm", START, END, plate="鲁P99999")], True, id="other-vehicle"),
        # 撤销 voids a permit from the start: the weighing was never permitted.
        pytest.param(
            START + timedelta(hours=1),
            [
                permit("pm", START, END),
                licence(
                    "pm-revoked",
                    LicenceType.OVERSIZE_TRANSPORT_PERMIT,
                    number="permit-pm",
                    decided="2024-07-01",
                    valid_from="2024-06-01",
                    status=LicenceStatus.REVOKED,
                    revision=1,
                    plate=PLATE,
                    permit_from=START,
                    permit_until=END,
                ),
            ],
            True,
            id="revoked-permit",
        ),
    ],
)
def test_a_permitted_weighing_is_not_a_violation(
    weighed_at: datetime, permit_events: list[InputEvent], listed: bool
) -> None:
    """A weighing inside a valid oversize permit (both ends included) does not count."""
    before = Pipeline().feed(*overloads(*THREE), *permit_events, weighing("w", weighed_at))
    after = Pipeline().feed(weighing("w", weighed_at), *overloads(*THREE), *permit_events)
    for pipeline in (before, after):  # a permit that arrives late covers the weighing too
        assert (BLACK_VEHICLE in pipeline.members(vehicle())) is listed


# --- pre-checks: never a violation, an alert at the threshold ------------------------------------


@pytest.mark.parametrize(
    ("events", "alerts"),
    [
        pytest.param(
            [*overloads(*THREE), weighing("wim", instant("2024-06-01"), precise=False)],
            1,
            id="at-3-raises-imminent",
        ),
        pytest.param(
            [*overloads(*THREE[:2]), weighing("wim", instant("2024-06-01"), precise=False)],
            0,
            id="at-2-no-alert",
        ),
        pytest.param(
            [
                *overloads(*THREE),
                weighing("wim", instant("2024-06-01"), precise=False, gross_kg=48_000),
            ],
            0,
            id="under-the-limit",
        ),
        pytest.param(
            [
                *overloads(*THREE),
                permit("pm", START, END),
                weighing("wim", START, precise=False),
            ],
            0,
            id="permitted",
        ),
        pytest.param(
            [*overloads(*THREE), weighing("wim", instant("2025-01-20"), precise=False)],
            0,
            id="first-violation-left-the-window",
        ),
        pytest.param(
            [
                *overloads(*THREE, "2024-05-20"),
                weighing("wim", instant("2024-06-01"), precise=False),
            ],
            0,
            id="already-listed",
        ),
        pytest.param(
            [*overloads(*THREE)] + [weighing("wim", instant("2024-06-01"), precise=False)] * 2,
            1,
            id="redelivered-pre-check-alerts-once",
        ),
        # The penalties arrive after the pre-check: at the time it was seen it was not at 3.
        pytest.param(
            [weighing("wim", instant("2024-06-01"), precise=False), *overloads(*THREE)],
            0,
            id="pre-check-before-the-penalties-arrive",
        ),
    ],
)
def test_a_pre_check_never_counts_but_alerts_at_the_threshold(
    events: Sequence[InputEvent], alerts: int
) -> None:
    """不停车检测 is not a violation; a vehicle at 3 seen over the limit raises IMMINENT."""
    pipeline = Pipeline().feed(*events)
    counted = held_violations(pipeline.file(vehicle()))
    assert not any("wim" in v.source_event_ids for v in counted)
    assert len(pipeline.alerts) == alerts
    for alert in pipeline.alerts:
        assert alert.kind is AlertKind.IMMINENT_BLACKLIST
        assert alert.violations_in_window == alert.threshold == 3
        assert alert.detection_event_id == "wim"
        assert len(alert.evidence_event_ids) == 3


# --- retractions: revocation and modification ---------------------------------------------------

FOUR = overloads(*THREE, "2024-07-10")
FOURTH = FOUR[-1]


def revise(original: PenaltyDecision, event_id: str, **changes: Any) -> PenaltyDecision:
    """Revision 1 of ``original``, changed as given."""
    return replace(original, event_id=event_id, revision=1, **changes)


@pytest.mark.parametrize(
    ("events", "vehicle_actions"),
    [
        pytest.param(
            [*FOUR, revise(FOURTH, "rev", change_type=ChangeType.REVOKED)],
            [ListAction.ADD, ListAction.REMOVE],
            id="revoking-the-4th-removes",
        ),
        pytest.param(
            [
                *FOUR,
                revise(
                    FOURTH,
                    "mod",
                    change_type=ChangeType.MODIFIED,
                    violation_code=ViolationCode.OTHER,
                ),
            ],
            [ListAction.ADD, ListAction.REMOVE],
            id="requalifying-the-4th-removes",
        ),
        pytest.param(
            [
                *FOUR,
                revise(
                    FOURTH, "mod", change_type=ChangeType.MODIFIED, fine_amount_yuan=Decimal(500)
                ),
            ],
            [ListAction.ADD],
            id="changing-the-fine-keeps-the-entry",
        ),
        # The revocation arrives first: the decision never counts, nothing is ever listed.
        pytest.param(
            [revise(FOURTH, "rev", change_type=ChangeType.REVOKED), *FOUR],
            [],
            id="revocation-before-the-decision",
        ),
        pytest.param(
            [
                *FOUR,
                *overloads("2024-08-10", tag="q"),
                revise(FOURTH, "rev", change_type=ChangeType.REVOKED),
            ],
            [ListAction.ADD],
            id="a-5th-still-supports-the-entry",
        ),
        # Surprising: revoking the penalty also takes back the weighing it confirmed, although
        # that weighing alone would have counted.
        pytest.param(
            [
                *overloads(*THREE),
                weighing("w1", instant("2024-06-01"), detection_id="D-1"),
                penalty("c1", "2024-06-05", detections=("D-1",)),
                penalty(
                    "c1-rev",
                    "2024-08-01",
                    number="东交罚〔c1〕",
                    revision=1,
                    change=ChangeType.REVOKED,
                    detections=("D-1",),
                ),
            ],
            [ListAction.ADD, ListAction.REMOVE],
            id="revoking-a-penalty-takes-back-its-weighing",
        ),
        # Another window (Mar..Dec) still holds four after January's decision is revoked.
        pytest.param(
            [
                *overloads("2024-01-10", "2024-03-10", "2024-05-10", "2024-07-10", "2024-12-10"),
                revise(overloads("2024-01-10")[0], "rev", change_type=ChangeType.REVOKED),
            ],
            [ListAction.ADD],
            id="another-window-still-supports-the-entry",
        ),
    ],
)
def test_taking_back_a_decision_re_evaluates_every_list(
    events: Sequence[InputEvent], vehicle_actions: list[ListAction]
) -> None:
    """A revoked or requalified penalty is taken back; REMOVE when no window still qualifies."""
    pipeline = Pipeline().feed(*events)
    assert [action for action, *_ in pipeline.actions(vehicle())] == vehicle_actions
    assert [action for action, *_ in pipeline.actions(driver())] == vehicle_actions


def test_a_removal_names_what_took_the_support_away() -> None:
    """REMOVE carries the revocation's event id and date, not the arrival time."""
    pipeline = Pipeline().feed(
        *FOUR,
        revise(
            FOURTH,
            "rev",
            change_type=ChangeType.REVOKED,
            decision_date=FOURTH.decision_date + timedelta(days=30),
        ),
    )
    (add, remove) = [t for t in pipeline.triggers if t.subject == vehicle()]
    assert add.effective_time == instant("2024-07-10", 0)
    assert set(add.evidence_event_ids) == {e.event_id for e in FOUR}
    assert remove.evidence_event_ids == ("rev",)
    assert remove.effective_time == instant("2024-08-09", 0)
    assert remove.policy_version == add.policy_version == "2023-05-01"  # in force in 2024


# --- policy versions: each decision by the policy in force on its date --------------------------

VERSIONED = parse_policy_book(
    yaml.safe_dump(
        {
            "versions": [
                SHIPPED["versions"][0],
                {
                    "version": "strict-2025",
                    "based_on": "2016-09-21",
                    "effective_from": "2025-01-01",
                    "source": "test: a later version allows 5 violations",
                    "overload_blacklist": {"vehicle_violations_gt": 5, "driver_violations_gt": 5},
                },
            ]
        },
        allow_unicode=True,
    ).replace("'2025-01-01'", "2025-01-01")
)


@pytest.mark.parametrize(
    ("days", "version"),
    [
        pytest.param(
            ("2024-03-01", "2024-05-01", "2024-07-01", "2024-09-01"), "2016-09-21", id="all-in-v1"
        ),
        # The 4th decision is dated 2025: the later version (more than 5) judges the window.
        pytest.param(
            ("2024-10-01", "2024-11-01", "2024-12-01", "2025-01-02"), None, id="4th-under-v2"
        ),
        pytest.param(
            ("2025-01-05", "2025-02-01", "2025-03-01", "2025-04-01", "2025-05-01", "2025-06-01"),
            "strict-2025",
            id="6-under-v2",
        ),
        # Listed in 2024 under v1; later decisions under v2 do not re-judge that entry.
        pytest.param(
            ("2024-03-01", "2024-05-01", "2024-07-01", "2024-09-01", "2025-02-01"),
            "2016-09-21",
            id="listed-under-v1-stays",
        ),
    ],
)
def test_each_window_is_judged_by_the_policy_in_force_on_its_decision_date(
    days: tuple[str, ...], version: str | None
) -> None:
    """A decision is judged by the policy in force on its decision date (RULES.md)."""
    pipeline = Pipeline(book=VERSIONED).feed(*overloads(*days))
    entry = pipeline.file(vehicle()).entries.get(f"BLACKLIST:{VEHICLE_OVERLOAD}")
    assert (None if entry is None else entry.policy_version) == version


# --- optional gross-overweight rule -------------------------------------------------------------

GROSS_100 = book_with(overload_blacklist__gross_overweight_ratio_gte=1.0)


@pytest.mark.parametrize(
    ("book", "gross_kg", "listed"),
    [
        pytest.param(None, 120_000, False, id="off-by-default"),
        pytest.param(GROSS_100, 98_000, True, id="exactly-100pct-over"),
        pytest.param(GROSS_100, 97_999, False, id="just-under-100pct"),
    ],
)
def test_gross_overweight_rule_is_optional(
    book: PolicyBook | None, gross_kg: int, listed: bool
) -> None:
    """The "100% over the limit" criterion was not found: configurable, off by default."""
    pipeline = Pipeline(book=book) if book is not None else Pipeline()
    pipeline.feed(weighing("w", instant("2024-06-01"), gross_kg=gross_kg, limit_kg=49_000))
    assert (BLACK_GROSS in pipeline.members(vehicle())) is listed
    assert (BLACK_GROSS in pipeline.members(driver())) is listed


# --- watchlist ----------------------------------------------------------------------------------


def minor(event_id: str, day: str) -> InputEvent:
    """A minor (non-overload) violation of the driver, with no vehicle."""
    return penalty(event_id, day, code=ViolationCode.OTHER, plate=None, fine_yuan="200")


@pytest.mark.parametrize(
    ("events", "lists"),
    [
        pytest.param([minor("m1", "2024-01-01"), minor("m2", "2024-02-01")], set(), id="2-minor"),
        pytest.param(
            [minor("m1", "2024-01-01"), minor("m2", "2024-02-01"), minor("m3", "2024-12-30")],
            {WATCH},
            id="3-minor-in-365-days",
        ),
        pytest.param(
            [minor("m1", "2024-01-01"), minor("m2", "2024-02-01"), minor("m3", "2024-12-31")],
            set(),
            id="3-minor-over-366-days",
        ),
        pytest.param(overloads(*THREE), set(), id="overloads-are-not-minor"),
    ],
)
def test_repeated_minor_violations_put_a_subject_on_the_watchlist(
    events: Sequence[InputEvent], lists: set
) -> None:
    """重点关注名单 for "多次发生轻微失信行为" (交政研发〔2018〕181号); local-choice numbers."""
    assert Pipeline().feed(*events).members(driver()) == lists


# --- red list -----------------------------------------------------------------------------------


def operating_licence(valid_from: str) -> InputEvent:
    """The carrier's road transport operating licence: its history starts here."""
    return licence(
        f"lic-{valid_from}",
        LicenceType.ROAD_TRANSPORT_OPERATING_LICENCE,
        number="鲁交运管许可371524000001",
        decided=valid_from,
        valid_from=valid_from,
    )


@pytest.mark.parametrize(
    ("events", "review_day", "listed"),
    [
        pytest.param([operating_licence("2022-01-01")], "2024-06-01", True, id="clean-and-known"),
        pytest.param(
            [operating_licence("2024-01-01")], "2024-06-01", False, id="history-too-short"
        ),
        pytest.param(
            [
                operating_licence("2022-01-01"),
                penalty(
                    "o",
                    "2024-01-01",
                    plate=None,
                    subject_uscc=CARRIER_USCC,
                    code=ViolationCode.OTHER,
                ),
            ],
            "2024-06-01",
            False,
            id="violation-in-the-clean-period",
        ),
        pytest.param(
            [
                operating_licence("2022-01-01"),
                penalty(
                    "o",
                    "2023-05-01",
                    plate=None,
                    subject_uscc=CARRIER_USCC,
                    code=ViolationCode.OTHER,
                ),
            ],
            "2024-06-01",
            True,
            id="violation-before-the-clean-period",
        ),
        pytest.param(
            [operating_licence("2022-01-01"), *fleet(10, 2, order="2024-05-01")],
            "2024-06-01",
            False,
            id="blacklisted",
        ),
    ],
)
def test_a_clean_top_grade_carrier_is_red_listed(
    events: Sequence[InputEvent], review_day: str, listed: bool
) -> None:
    """守信激励 (RULES.md §6): AA, clean for the period, known long enough, not blacklisted."""
    pipeline = Pipeline().feed(*events).deliver(carrier(), review(review_day))
    assert (RED in pipeline.members(carrier())) is listed


def test_a_violation_revokes_red_list_status() -> None:
    """A serious violation during the red-list period removes the entry (RULES.md §6)."""
    pipeline = Pipeline().feed(operating_licence("2022-01-01"))
    pipeline.deliver(carrier(), review("2024-06-01"))
    assert RED in pipeline.members(carrier())
    pipeline.feed(
        penalty(
            "o",
            "2024-06-10",
            plate=None,
            subject_uscc=CARRIER_USCC,
            fine_yuan="0",
            categories=(PenaltyCategory.WARNING,),
        )
    )
    assert RED not in pipeline.members(carrier())
    assert pipeline.actions(carrier()) == [
        (ListAction.ADD, ListName.RED_LIST, CLEAN_TOP_GRADE),
        (ListAction.REMOVE, ListName.RED_LIST, CLEAN_TOP_GRADE),
    ]


def test_drivers_are_never_red_listed_by_default() -> None:
    """Incentives target enterprises by default (local choice)."""
    pipeline = Pipeline().feed(penalty("o", "2021-01-01", code=ViolationCode.OTHER, plate=None))
    pipeline.deliver(driver(), review("2024-06-01"))
    assert pipeline.members(driver()) == set()


# --- late events --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("late_day", "stale"),
    [
        pytest.param("2024-06-01", True, id="365-days-behind-is-stale"),
        pytest.param("2024-06-02", False, id="364-days-behind-is-judged"),
    ],
)
def test_an_event_older_than_the_late_event_horizon_is_recorded_not_judged(
    late_day: str, stale: bool
) -> None:
    """Windows run on event time; a fact a year behind its file's newest is only counted."""
    pipeline = Pipeline().feed(
        *overloads("2024-06-10", "2024-07-10", "2024-08-10"),
        weighing("newest", instant("2025-06-01", 0), gross_kg=40_000),
        *overloads(late_day, tag="late"),
    )
    assert pipeline.file(vehicle()).stale_events == int(stale)
    assert (BLACK_VEHICLE in pipeline.members(vehicle())) is not stale


def test_loading_source_answers_for_what_it_loaded() -> None:
    """62号令 第二十八条: the loading source gets the violation in the LOADED role."""
    pipeline = Pipeline().feed(
        weighing("w", instant("2024-06-01"), loading_source_uscc=LOADING_SOURCE_USCC)
    )
    source = pipeline.file(SubjectRef(SubjectKind.LOADING_SOURCE, LOADING_SOURCE_USCC))
    assert [v.role.value for v in source.received.values()] == ["LOADED"]

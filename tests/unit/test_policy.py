"""The versioned policy: the shipped defaults (RULES.md), versions by date, and bad documents."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
import yaml

from processors.facts import ViolationKind, ViolationRole
from processors.model import StationType, SubjectKind
from processors.policy import Grade, Policy, PolicyError, parse_policy_book
from tests.unit.credit_support import DEFAULT_BOOK, REPO

SHIPPED_TEXT = (REPO / "config" / "policy.yaml").read_text(encoding="utf-8")
SHIPPED: dict[str, Any] = yaml.safe_load(SHIPPED_TEXT)
D = date.fromisoformat


def test_shipped_policy_has_three_versions_in_date_order() -> None:
    """config/policy.yaml parses into the 62号令 baseline, Order No. 58 and Order 2025 No. 36."""
    assert [p.version for p in DEFAULT_BOOK.versions] == ["2016-09-21", "2023-05-01", "2026-04-01"]
    assert [p.effective_from for p in DEFAULT_BOOK.versions] == [
        D("2016-09-21"),
        D("2023-05-01"),
        D("2026-04-01"),
    ]


@pytest.mark.parametrize(
    ("read", "expected"),
    [
        # 公路安全保护条例 第66条 / 2017 通知: "超过3次" is strict, so the threshold is "> 3".
        pytest.param(lambda p: p.overload_blacklist.vehicle_violations_gt, 3, id="vehicle>3"),
        pytest.param(lambda p: p.overload_blacklist.driver_violations_gt, 3, id="driver>3"),
        pytest.param(lambda p: p.overload_blacklist.window_days, 365, id="window-365"),
        pytest.param(
            lambda p: p.overload_blacklist.carrier_overloading_vehicle_ratio_gt,
            Decimal("0.10"),
            id="carrier>10%",
        ),
        pytest.param(
            lambda p: p.overload_blacklist.carrier_requires_suspension_order,
            True,
            id="carrier-needs-suspension",
        ),
        # 2017 通知 item 5: "2万元以上" and "3次以上" are inclusive.
        pytest.param(
            lambda p: p.overload_blacklist.instigator_fine_yuan_gte,
            Decimal(20000),
            id="instigator-fine>=20000",
        ),
        pytest.param(
            lambda p: p.overload_blacklist.instigator_penalties_in_window_gte,
            3,
            id="instigator>=3",
        ),
        # The "100% over the limit" criterion was not found: present but off.
        pytest.param(
            lambda p: p.overload_blacklist.gross_overweight_ratio_gte, None, id="gross-off"
        ),
        pytest.param(
            lambda p: p.detection.confirmed_station_types,
            frozenset({StationType.FIXED_STATION_PRECISE}),
            id="only-precise-weighing-confirms",
        ),
        pytest.param(lambda p: p.overload_blacklist.publication_years, 2, id="published-2-years"),
        pytest.param(
            lambda p: p.overload_blacklist.pre_publication_notice_working_days,
            10,
            id="notice-10-working-days",
        ),
        pytest.param(
            lambda p: [(b.grade, b.score_gte) for b in p.scoring.grade_bands],
            [(Grade.AA, 90), (Grade.A, 80), (Grade.B, 60), (Grade.C, 40), (Grade.D, 0)],
            id="jiangsu-grade-floors",
        ),
        pytest.param(lambda p: p.watchlist.counted_kinds, {ViolationKind.OTHER}, id="watch-minor"),
        pytest.param(
            lambda p: p.red_list.subject_kinds,
            {SubjectKind.CARRIER, SubjectKind.LOADING_SOURCE},
            id="red-list-enterprises",
        ),
        pytest.param(
            lambda p: ViolationRole.FLEET in p.scoring.counted_roles, False, id="fleet-not-scored"
        ),
    ],
)
def test_shipped_defaults_follow_rules(read: Callable[[Policy], object], expected: object) -> None:
    """Every version of the shipped policy carries the RULES.md defaults."""
    for policy in DEFAULT_BOOK.versions:
        assert read(policy) == expected


@pytest.mark.parametrize(
    ("day", "version"),
    [
        ("2016-09-21", "2016-09-21"),
        ("2023-04-30", "2016-09-21"),
        ("2023-05-01", "2023-05-01"),  # the effective date itself is in force
        ("2026-03-31", "2023-05-01"),
        ("2026-04-01", "2026-04-01"),
        ("2031-01-01", "2026-04-01"),
    ],
)
def test_version_in_force_on_a_date(day: str, version: str) -> None:
    """A decision is judged by the version whose effective_from is the latest not after it."""
    assert DEFAULT_BOOK.in_force_on(D(day)).version == version


def test_version_in_force_at_an_instant_uses_the_china_date() -> None:
    """16:00 UTC on 2026-03-31 is midnight in China: Order 2025 No. 36 is already in force."""
    assert DEFAULT_BOOK.in_force_at(datetime(2026, 3, 31, 15, 59, 59, tzinfo=UTC)).version == (
        "2023-05-01"
    )
    assert DEFAULT_BOOK.in_force_at(datetime(2026, 3, 31, 16, tzinfo=UTC)).version == "2026-04-01"


def test_no_policy_is_in_force_before_the_first_version() -> None:
    """Asking for a day before 62号令 took effect is an error, not a silent default."""
    with pytest.raises(PolicyError, match="no policy is in force on 2016-09-20"):
        DEFAULT_BOOK.in_force_on(D("2016-09-20"))


def test_later_versions_inherit_and_override() -> None:
    """based_on keeps every inherited setting; only publication periods change in 2026."""
    baseline, order_58, order_36 = DEFAULT_BOOK.versions
    assert baseline.publication_periods is None
    assert order_58.publication_periods is not None
    assert order_58.publication_periods.general is None  # Order No. 58 periods not verified
    assert order_36.publication_periods is not None
    general, serious = order_36.publication_periods.general, order_36.publication_periods.serious
    assert general is not None and (general.min_months, general.max_months) == (3, 12)
    assert serious is not None and (serious.min_months, serious.max_months) == (12, 36)
    assert order_36.overload_blacklist == baseline.overload_blacklist
    assert order_36.scoring == baseline.scoring


def test_retention_covers_late_events_plus_the_longest_window() -> None:
    """Facts are kept for the late-event horizon plus the longest window of any version."""
    assert DEFAULT_BOOK.late_event_horizon.days == 365
    assert DEFAULT_BOOK.retention.days == 365 + 365


@pytest.mark.parametrize(
    ("score", "grade"),
    [
        (100, Grade.AA),
        (90, Grade.AA),
        (89, Grade.A),
        (80, Grade.A),
        (79, Grade.B),
        (60, Grade.B),
        (59, Grade.C),
        (40, Grade.C),
        (39, Grade.D),
        (0, Grade.D),
    ],
)
def test_grade_bands_take_their_floor_inclusively(score: int, grade: Grade) -> None:
    """Floors are "score ≥" (苏交规〔2024〕2号): 90 is AA, 89 is A."""
    assert DEFAULT_BOOK.versions[0].scoring.grade_of(score) is grade


@pytest.mark.parametrize(
    ("tolerance", "gross", "over"),
    [("0", 49_000, False), ("0", 49_001, True), ("0.05", 51_450, False), ("0.05", 51_451, True)],
)
def test_over_limit_means_more_than_limit_times_one_plus_tolerance(
    tolerance: str, gross: int, over: bool
) -> None:
    """At exactly the limit (plus tolerance) a weighing is not over it."""
    book = _parse(lambda doc: _set(doc, "detection.overload_tolerance_ratio", tolerance))
    assert book.versions[0].detection.is_over_limit(gross, 49_000) is over


def test_an_unquoted_date_is_accepted_as_a_version_name() -> None:
    """YAML reads version: 2016-09-21 as a date; its ISO form is the name."""
    book = _parse(lambda doc: doc["versions"][0].__setitem__("version", D("2016-09-21")))
    assert book.versions[0].version == "2016-09-21"


def test_based_on_replaces_lists_instead_of_merging_them() -> None:
    """A list in a later version replaces the inherited list."""

    def change(doc: dict[str, Any]) -> None:
        doc["versions"][2]["red_list"] = {"subject_kinds": ["CARRIER"]}

    book = _parse(change)
    assert book.versions[2].red_list.subject_kinds == {SubjectKind.CARRIER}
    assert book.versions[2].red_list.clean_days == book.versions[0].red_list.clean_days


def _set(doc: dict[str, Any], path: str, value: object, version: int = 0) -> None:
    *parents, leaf = path.split(".")
    node = doc["versions"][version]
    for name in parents:
        node = node[name]
    node[leaf] = value


def _delete(doc: dict[str, Any], path: str) -> None:
    *parents, leaf = path.split(".")
    node = doc["versions"][0]
    for name in parents:
        node = node[name]
    del node[leaf]


def _parse(change: Callable[[dict[str, Any]], None]) -> Any:
    doc = copy.deepcopy(SHIPPED)
    change(doc)
    return parse_policy_book(yaml.safe_dump(doc, allow_unicode=True))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            lambda d: _set(d, "overload_blacklist.window_dayz", 365),
            r'versions\[0\] "2016-09-21": overload_blacklist: unknown keys: window_dayz',
            id="typo-is-an-unknown-key",
        ),
        pytest.param(
            lambda d: _delete(d, "scoring.start_score"),
            r"scoring: missing key 'start_score'",
            id="missing-key",
        ),
        pytest.param(
            lambda d: _set(d, "overload_blacklist.window_days", -3),
            r"overload_blacklist.window_days: expected a positive integer, got -3",
            id="negative-window",
        ),
        pytest.param(
            lambda d: _set(d, "overload_blacklist.vehicle_violations_gt", True),
            r"vehicle_violations_gt: expected an integer >= 0, got True",
            id="bool-is-not-an-integer",
        ),
        pytest.param(
            lambda d: _set(d, "overload_blacklist.carrier_overloading_vehicle_ratio_gt", 10),
            r"carrier_overloading_vehicle_ratio_gt: expected at most 1, got 10",
            id="percent-instead-of-ratio",
        ),
        pytest.param(
            lambda d: _set(d, "overload_blacklist.instigator_fine_yuan_gte", "2万"),
            r"instigator_fine_yuan_gte: expected a number, got '2万'",
            id="amount-in-words",
        ),
        pytest.param(
            lambda d: _set(d, "detection.confirmed_station_types", ["WEIGH_STATION"]),
            r"confirmed_station_types: 'WEIGH_STATION' is not one of FIXED_STATION_PRECISE",
            id="unknown-station-type",
        ),
        pytest.param(
            lambda d: _set(
                d, "scoring.grade_floors", {"AA": 90, "A": 95, "B": 60, "C": 40, "D": 0}
            ),
            r"grade_floors: floors must fall strictly from AA to D",
            id="grades-not-falling",
        ),
        pytest.param(
            lambda d: _set(
                d, "scoring.grade_floors", {"AA": 90, "A": 80, "B": 60, "C": 40, "D": 10}
            ),
            r"the floor of D must be 0",
            id="scores-without-grade",
        ),
        pytest.param(
            lambda d: _delete(d, "scoring.deductions.OTHER"),
            r"deductions: missing entries for OTHER",
            id="deduction-missing",
        ),
        pytest.param(
            lambda d: _set(d, "version", "2016-09-21", version=1),
            r"version '2016-09-21' is defined twice",
            id="duplicate-version",
        ),
        pytest.param(
            lambda d: _set(d, "based_on", "2030-01-01", version=1),
            r"based_on '2030-01-01' is not an earlier version",
            id="unknown-base",
        ),
        pytest.param(
            lambda d: _set(d, "effective_from", D("2016-01-01"), version=1),
            r'effective_from 2016-01-01 must be after "2016-09-21"',
            id="versions-out-of-order",
        ),
        pytest.param(
            lambda d: _set(
                d,
                "publication_periods.serious",
                {"published": True, "min_months": 40, "max_months": 36},
                version=2,
            ),
            r"serious.min_months: 40 is more than max_months 36",
            id="period-bounds-crossed",
        ),
        pytest.param(
            lambda d: d.__setitem__("policies", []),
            r"unknown top-level keys: policies",
            id="unknown-top-level-key",
        ),
        pytest.param(
            lambda d: d.__setitem__("versions", []),
            r"'versions' must be a non-empty list",
            id="no-versions",
        ),
    ],
)
def test_bad_documents_are_refused_with_the_path(
    change: Callable[[dict[str, Any]], None], message: str
) -> None:
    """A malformed policy names the version, the setting and what is wrong."""
    with pytest.raises(PolicyError, match=message):
        _parse(change)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("versions: [", r"not valid YAML"),
        ("- just a list", r"must be a mapping with a 'versions' list"),
        ("", r"must be a mapping"),
    ],
)
def test_text_that_is_not_a_policy_document_is_refused(text: str, message: str) -> None:
    """Broken YAML and documents of the wrong shape raise PolicyError, not a YAML error."""
    with pytest.raises(PolicyError, match=message):
        parse_policy_book(text)

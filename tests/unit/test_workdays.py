"""The working-day calendar: deadlines (发改电〔2015〕557号, 民法典 第201条) and unknown years."""

from __future__ import annotations

import ast
from datetime import date, timedelta
from pathlib import Path

import chinese_calendar
import holidays
import pytest
from holidays.constants import PUBLIC
from hypothesis import given, settings
from hypothesis import strategies as st

import processors.workdays
from processors.workdays import (
    CHINESE_CALENDAR,
    Deadline,
    OfficialSchedule,
    ScheduleError,
    WorkdayCalendar,
    deadline,
    parse_official_schedule,
    working_days_left,
)

D = date.fromisoformat

# A made-up 2027 schedule (its header says so): 01-01..01-03 and 02-05..02-12 off, Sat 02-20
# worked. The real 2027 schedule is not in chinese_calendar 1.11.0 (RULES.md §7).
EXAMPLE_2027_PATH = Path(__file__).parent.parent / "data" / "calendar-2027-example.yaml"
EXAMPLE_2027 = parse_official_schedule(EXAMPLE_2027_PATH.read_text(encoding="utf-8"))
WITH_EXAMPLE_2027 = WorkdayCalendar([EXAMPLE_2027])

YEAR_2027 = (2027,)

DEADLINE_TABLE = [
    # decision, working days, calendar, due, uncovered years
    # RULES.md §1 worked examples: Sun 09-28 and Sat 10-11 are make-up days, 10-01..10-08 off.
    ("2025-09-26", 7, CHINESE_CALENDAR, "2025-10-13", ()),
    # Sat 02-14 and Sat 02-28 are make-up days; 02-15..02-23 off.
    ("2026-02-13", 7, CHINESE_CALENDAR, "2026-03-02", ()),
    # 春节 2024: 除夕 (02-09) was still a working day before the 2025 holiday rules.
    ("2024-02-08", 7, CHINESE_CALENDAR, "2024-02-23", ()),
    # Decided on a make-up Sunday, which is not counted itself (民法典 第201条).
    ("2024-02-18", 7, CHINESE_CALENDAR, "2024-02-27", ()),
    ("2025-01-24", 7, CHINESE_CALENDAR, "2025-02-10", ()),
    ("2025-01-26", 7, CHINESE_CALENDAR, "2025-02-11", ()),
    # Decided during the 2026 春节 holiday, with the 10 working days of a blacklist notice.
    ("2026-02-20", 10, CHINESE_CALENDAR, "2026-03-06", ()),
    # 劳动节 2024: Sun 04-28 is the first working day counted.
    ("2024-04-26", 7, CHINESE_CALENDAR, "2024-05-09", ()),
    # Decided on a holiday; Sat 05-11 is a make-up day.
    ("2024-05-03", 7, CHINESE_CALENDAR, "2024-05-13", ()),
    ("2025-04-25", 7, CHINESE_CALENDAR, "2025-05-08", ()),
    ("2026-04-30", 7, CHINESE_CALENDAR, "2026-05-13", ()),
    # 国庆
    ("2024-09-30", 7, CHINESE_CALENDAR, "2024-10-15", ()),
    ("2025-10-03", 7, CHINESE_CALENDAR, "2025-10-16", ()),
    ("2026-09-30", 7, CHINESE_CALENDAR, "2026-10-15", ()),
    ("2026-10-09", 7, CHINESE_CALENDAR, "2026-10-19", ()),
    # Decided on a holiday: the first working day after it is day 1. (chinese_calendar's
    # find_workday(1, 2025-10-01) gives 10-10: it first rolls a non-working start forward.)
    ("2025-10-01", 1, CHINESE_CALENDAR, "2025-10-09", ()),
    # n = 0: nothing to count, so the decision day itself, even on a holiday or unknown day.
    ("2025-10-01", 0, CHINESE_CALENDAR, "2025-10-01", ()),
    ("2027-03-01", 0, CHINESE_CALENDAR, "2027-03-01", ()),
    # The last covered days: no 2027 day is looked at, so not provisional.
    ("2026-12-21", 7, CHINESE_CALENDAR, "2026-12-30", ()),
    ("2026-12-30", 1, CHINESE_CALENDAR, "2026-12-31", ()),
    # Into 2027 with no schedule: every 2027 day counts, even Fri 01-01 and Sat 01-02.
    ("2026-12-24", 7, CHINESE_CALENDAR, "2027-01-02", YEAR_2027),
    ("2026-12-31", 1, CHINESE_CALENDAR, "2027-01-01", YEAR_2027),
    # Wholly in 2027: decision + 7 calendar days.
    ("2026-12-31", 7, CHINESE_CALENDAR, "2027-01-07", YEAR_2027),
    ("2026-12-28", 30, CHINESE_CALENDAR, "2027-01-27", YEAR_2027),
    ("2027-02-04", 7, CHINESE_CALENDAR, "2027-02-11", YEAR_2027),
    # The same decisions with the (made-up) 2027 schedule: later, and final.
    ("2026-12-24", 7, WITH_EXAMPLE_2027, "2027-01-05", ()),
    ("2026-12-31", 1, WITH_EXAMPLE_2027, "2027-01-04", ()),
    ("2026-12-31", 7, WITH_EXAMPLE_2027, "2027-01-12", ()),
    # 02-05..02-12 off; Sat 02-20 is a make-up day.
    ("2027-02-04", 7, WITH_EXAMPLE_2027, "2027-02-22", ()),
    # A 2027 schedule does not cover 2028.
    ("2027-12-28", 7, WITH_EXAMPLE_2027, "2028-01-04", (2028,)),
]


@pytest.mark.parametrize(
    ("decision", "n", "calendar", "due", "uncovered"),
    DEADLINE_TABLE,
    ids=[
        f"{decision}+{n}" + ("-with-2027-example" if calendar is WITH_EXAMPLE_2027 else "")
        for decision, n, calendar, _, _ in DEADLINE_TABLE
    ],
)
def test_deadline_counts_working_days_from_the_day_after_the_decision(
    decision: str, n: int, calendar: WorkdayCalendar, due: str, uncovered: tuple[int, ...]
) -> None:
    """The deadline is the n-th working day after the decision day (民法典 第201条)."""
    assert deadline(D(decision), n, calendar) == Deadline(D(due), bool(uncovered), uncovered)


def test_deadline_uses_chinese_calendar_by_default() -> None:
    """Without a calendar, deadline() uses chinese_calendar alone (发改电〔2015〕557号: 7 days)."""
    assert deadline(D("2025-09-26"), 7) == Deadline(D("2025-10-13"), False, ())


def test_deadline_rejects_negative_working_days() -> None:
    """A negative number of working days is a programming error."""
    with pytest.raises(ValueError, match=">= 0"):
        deadline(D("2025-09-26"), -1)


def test_conservative_bound_is_tight_for_a_schedule_of_all_make_up_weekends() -> None:
    """A year whose every weekend is worked and nothing is off gives the provisional deadline."""
    days_2027 = [D("2027-01-01") + timedelta(days=i) for i in range(365)]
    all_worked = OfficialSchedule(
        2027, frozenset(), frozenset(d for d in days_2027 if d.weekday() >= 5)
    )
    decision = D("2026-12-24")
    exact = WorkdayCalendar([all_worked]).add_working_days(decision, 7)
    assert exact == Deadline(deadline(decision, 7).due, False, ())


@pytest.mark.parametrize("year", [2025, 2026])
def test_is_working_day_agrees_with_holidays_cn(year: int) -> None:
    """Every day of the year has the same status as in holidays.CN without half days (§7)."""
    # holidays.CN's half_day category (e.g. 妇女节) is not an office day off (RULES.md §7).
    reference = holidays.country_holidays("CN", years=year, categories=PUBLIC)
    days = [date(year, 1, 1) + timedelta(days=i) for i in range(366)]
    disagreements = [
        d
        for d in days
        if d.year == year and CHINESE_CALENDAR.is_working_day(d) != reference.is_working_day(d)
    ]
    assert disagreements == []


def test_is_working_day_is_unknown_outside_the_covered_years() -> None:
    """Years chinese_calendar does not cover are unknown (None), not guessed."""
    assert CHINESE_CALENDAR.is_working_day(D("2027-01-04")) is None
    assert CHINESE_CALENDAR.is_working_day(D("2003-12-31")) is None
    assert CHINESE_CALENDAR.is_working_day(D("2004-01-02")) is True
    assert CHINESE_CALENDAR.is_working_day(D("2026-12-31")) is True


def test_is_working_day_follows_an_official_schedule() -> None:
    """A supplied schedule decides holidays, make-up days and ordinary days of its year."""
    assert WITH_EXAMPLE_2027.is_working_day(D("2027-01-01")) is False  # holiday, Friday
    assert WITH_EXAMPLE_2027.is_working_day(D("2027-02-20")) is True  # make-up Saturday
    assert WITH_EXAMPLE_2027.is_working_day(D("2027-02-27")) is False  # ordinary Saturday
    assert WITH_EXAMPLE_2027.is_working_day(D("2027-03-01")) is True  # ordinary Monday


def test_official_schedule_takes_precedence_over_chinese_calendar() -> None:
    """An operator's schedule for a covered year overrides chinese_calendar for that year."""
    correction = OfficialSchedule(2026, frozenset({D("2026-12-31")}), frozenset())
    calendar = WorkdayCalendar([correction])
    assert calendar.is_working_day(D("2026-12-31")) is False
    assert calendar.is_working_day(D("2026-10-10")) is False  # chinese_calendar: make-up day
    assert calendar.is_working_day(D("2025-10-11")) is True  # other years unchanged


def test_covers_reports_years_with_a_known_status() -> None:
    """chinese_calendar covers 2004–2026; a schedule adds its year."""
    assert CHINESE_CALENDAR.covers(2004)
    assert CHINESE_CALENDAR.covers(2026)
    assert not CHINESE_CALENDAR.covers(2003)
    assert not CHINESE_CALENDAR.covers(2027)
    assert WITH_EXAMPLE_2027.covers(2027)
    assert not WITH_EXAMPLE_2027.covers(2028)


def test_with_schedule_returns_a_new_calendar() -> None:
    """with_schedule leaves the original calendar unchanged."""
    calendar = CHINESE_CALENDAR.with_schedule(EXAMPLE_2027)
    assert calendar.covers(2027)
    assert not CHINESE_CALENDAR.covers(2027)
    assert calendar.schedules == (EXAMPLE_2027,)


def test_with_schedule_replaces_the_schedule_of_the_same_year() -> None:
    """Loading a corrected file for a year replaces the earlier schedule of that year."""
    corrected = OfficialSchedule(2027, frozenset(), frozenset())
    calendar = WITH_EXAMPLE_2027.with_schedule(corrected)
    assert calendar.schedules == (corrected,)
    assert calendar.is_working_day(D("2027-01-01")) is True


def test_calendar_rejects_two_schedules_for_one_year() -> None:
    """Two schedules for the same year are ambiguous."""
    with pytest.raises(ScheduleError, match="2027"):
        WorkdayCalendar([EXAMPLE_2027, OfficialSchedule(2027, frozenset(), frozenset())])


@pytest.mark.parametrize(
    ("a", "b", "calendar", "expected"),
    [
        ("2025-09-26", "2025-10-13", CHINESE_CALENDAR, 7),
        ("2025-10-13", "2025-09-26", CHINESE_CALENDAR, -7),
        ("2025-10-13", "2025-10-13", CHINESE_CALENDAR, 0),
        ("2025-10-01", "2025-10-08", CHINESE_CALENDAR, 0),  # all holidays
        # Unknown 2027 days are not counted forwards (fewest possible) ...
        ("2026-12-28", "2027-01-07", CHINESE_CALENDAR, 3),
        ("2026-12-28", "2027-01-07", WITH_EXAMPLE_2027, 7),
        # ... and are counted backwards, which is again the smallest (most negative) result.
        ("2027-01-07", "2026-12-28", CHINESE_CALENDAR, -10),
        ("2027-01-07", "2026-12-28", WITH_EXAMPLE_2027, -7),
    ],
)
def test_working_days_between_counts_days_after_a_up_to_b(
    a: str, b: str, calendar: WorkdayCalendar, expected: int
) -> None:
    """working_days_between counts (a, b], signed, with unknown days giving the smallest count."""
    assert calendar.working_days_between(D(a), D(b)) == expected


@pytest.mark.parametrize(
    ("today", "due", "calendar", "expected"),
    [
        ("2025-09-26", "2025-10-13", CHINESE_CALENDAR, 7),
        ("2025-10-13", "2025-10-13", CHINESE_CALENDAR, 0),  # last day
        # Overdue: Sat 10-11 (make-up) and Mon 10-13 have passed since the due Friday.
        ("2025-10-13", "2025-10-10", CHINESE_CALENDAR, -2),
        # Provisional deadline 2027-01-02: only the three known December days are left.
        ("2026-12-28", "2027-01-02", CHINESE_CALENDAR, 3),
        ("2026-12-31", "2027-01-07", CHINESE_CALENDAR, 0),
        ("2026-12-31", "2027-01-07", WITH_EXAMPLE_2027, 4),
    ],
)
def test_working_days_left_never_overstates_the_time_left(
    today: str, due: str, calendar: WorkdayCalendar, expected: int
) -> None:
    """Days left until the due date, negative when overdue; unknown days are not counted."""
    assert working_days_left(calendar, D(today), D(due)) == expected


@settings(deadline=None)
@given(
    decision=st.dates(date(2004, 1, 1), date(2026, 12, 31)),
    n=st.integers(min_value=0, max_value=30),
)
def test_covered_deadline_is_the_nth_working_day_after_the_decision(decision: date, n: int) -> None:
    """Where covered, exactly n working days lie in (decision, due], the last one on due."""
    result = deadline(decision, n)
    if result.provisional:
        return
    assert CHINESE_CALENDAR.working_days_between(decision, result.due) == n
    if n >= 1:
        assert CHINESE_CALENDAR.is_working_day(result.due) is True
        if chinese_calendar.is_workday(decision):
            # find_workday agrees when the decision day is itself a working day.
            assert result.due == chinese_calendar.find_workday(n, decision)


@st.composite
def schedules_2027(draw: st.DrawFn) -> OfficialSchedule:
    """Any 2027 schedule: random days off, and random weekend days worked."""
    days = st.dates(date(2027, 1, 1), date(2027, 12, 31))
    days_off = draw(st.frozensets(days, max_size=80))
    weekends = draw(st.frozensets(days.filter(lambda d: d.weekday() >= 5), max_size=104))
    return OfficialSchedule(2027, days_off, weekends - days_off)


@settings(deadline=None)
@given(
    decision=st.dates(date(2026, 10, 1), date(2027, 12, 31)),
    n=st.integers(min_value=0, max_value=60),
    schedule=schedules_2027(),
)
def test_provisional_deadline_is_never_later_than_any_real_schedule(
    decision: date, n: int, schedule: OfficialSchedule
) -> None:
    """Counting unknown days as working days is the earliest deadline any schedule could give."""
    provisional = deadline(decision, n)
    exact = deadline(decision, n, WorkdayCalendar([schedule]))
    assert provisional.due <= exact.due
    assert 2027 not in exact.uncovered_years
    if not provisional.provisional:
        assert provisional == exact


@settings(deadline=None)
@given(
    decision=st.dates(date(2027, 1, 1), date(2027, 12, 31)),
    n=st.integers(min_value=0, max_value=60),
)
def test_deadline_in_an_unknown_year_is_decision_plus_n_calendar_days(
    decision: date, n: int
) -> None:
    """With no schedule for the years, n working days after d is conservatively d + n days."""
    result = deadline(decision, n)
    assert result.due == decision + timedelta(days=n)
    assert result.provisional == (n > 0)


@settings(deadline=None)
@given(
    today=st.dates(date(2026, 10, 1), date(2027, 12, 31)),
    due=st.dates(date(2026, 10, 1), date(2027, 12, 31)),
    schedule=schedules_2027(),
)
def test_working_days_left_is_never_more_than_any_real_schedule_gives(
    today: date, due: date, schedule: OfficialSchedule
) -> None:
    """Without the 2027 schedule, an at-risk alarm sees at most the days any schedule leaves."""
    assert working_days_left(CHINESE_CALENDAR, today, due) <= working_days_left(
        WorkdayCalendar([schedule]), today, due
    )


def test_parse_official_schedule_reads_the_example_file() -> None:
    """The example YAML file gives its year, days off and make-up days."""
    assert EXAMPLE_2027.year == 2027
    assert len(EXAMPLE_2027.holidays) == 11
    assert EXAMPLE_2027.makeup_workdays == frozenset({D("2027-02-20")})
    assert "MADE-UP" in EXAMPLE_2027.source


def test_parse_official_schedule_reads_json() -> None:
    """A JSON document with quoted dates gives the same schedule as YAML."""
    text = '{"year": 2027, "holidays": ["2027-01-01"], "makeup_workdays": ["2027-02-20"]}'
    yaml_text = "year: 2027\nholidays: [2027-01-01]\nmakeup_workdays: ['2027-02-20']\n"
    assert parse_official_schedule(text) == parse_official_schedule(yaml_text)
    assert parse_official_schedule(text).source == ""


_VALID = {
    "year": "2027",
    "holidays": "[2027-01-01]",
    "makeup_workdays": "[2027-02-20]",
}


def _document(**fields: str) -> str:
    return "".join(f"{key}: {value}\n" for key, value in {**_VALID, **fields}.items())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_document(makeup_workdays="[2027-01-02]", holidays="[2027-01-02]"), "both as holiday"),
        (_document(holidays="[2027-01-01, 2026-12-31]"), "outside the declared year 2027: 2026"),
        (_document(makeup_workdays="[2027-02-19]"), "not a weekend day: 2027-02-19"),
        (_document(holidays="[2027-01-01, 2027-01-01]"), "more than once: 2027-01-01"),
        (_document(year="true"), "year must be an integer"),
        (_document(year="'2027'"), "year must be an integer"),
        (_document(source="[a]"), "source must be a string"),
        (_document(holidays="2027-01-01"), "holidays must be a list"),
        (_document(holidays="['2027-1-1']"), "'2027-1-1' is not a date"),
        (_document(holidays="['2027-02-30']"), "'2027-02-30' is not a date"),
        (_document(holidays="[2027-02-30]"), "not a valid YAML"),  # PyYAML rejects the date
        (_document(holidays="[2027-01-01 08:00:00]"), "is not a date"),  # a datetime
        (_document(holiday="[2027-01-02]"), "unknown keys ['holiday']"),  # a typo
        ("year: 2027\nholidays: []\n", "missing keys ['makeup_workdays']"),
        ("- 2027-01-01\n", "must be a mapping"),
        ("", "must be a mapping"),
        ("year: [2027\n", "not a valid YAML"),
        ('{"year": 2027,', "not a valid YAML or JSON"),
    ],
)
def test_parse_official_schedule_rejects_malformed_documents(text: str, message: str) -> None:
    """A malformed document raises ScheduleError saying what is wrong."""
    with pytest.raises(ScheduleError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_official_schedule(text)


def test_schedule_error_is_a_value_error() -> None:
    """Callers that handle ValueError also handle a bad schedule."""
    assert issubclass(ScheduleError, ValueError)


def test_official_schedule_validates_on_construction() -> None:
    """A schedule built in code is checked like a parsed one."""
    with pytest.raises(ScheduleError, match="outside the declared year"):
        OfficialSchedule(2027, frozenset({D("2028-01-01")}), frozenset())


def test_workdays_module_does_no_io() -> None:
    """The module imports no I/O or test-only library and opens no files (STYLE.md §1)."""
    tree = ast.parse(Path(processors.workdays.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported.isdisjoint({"holidays", "os", "pathlib", "io", "faust", "redis", "httpx"})
    called = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert "open" not in called

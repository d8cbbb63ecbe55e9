"""Chinese working-day calendar and 双公示 deadlines, with unknown years failing closed.

Short administrative periods count working days (工作日), i.e. days that are not weekends or
public holidays under the State Council's yearly schedule, with make-up working days (调休) on
some weekends (RULES.md §1). The 7-working-day 双公示 deadline runs "自作出行政决定之日起"
(发改电〔2015〕557号), and the decision day itself is not counted: "开始的当日不计入，自下一日开始
计算" (民法典 第201条).

**Sources, in order of precedence, per year.**

1. An :class:`OfficialSchedule` the operator supplied for that year (typed in from the State
   Council notice). It wins over ``chinese_calendar`` so that an operator can also correct a
   year the package got wrong.
2. ``chinese_calendar``, which covers 2004–2026 only (RULES.md §7) and raises
   ``NotImplementedError`` for any other year.
3. Nothing: the day is *unknown* (:meth:`WorkdayCalendar.is_working_day` returns ``None``).

**Failing closed on unknown days.** A real schedule can only turn weekdays into holidays and
weekends into make-up working days, so every answer is bounded by the extremes:

- a deadline counts every unknown day as a working day: it is never later than the deadline any
  real schedule could give, and it is marked ``provisional``;
- a count of working days left counts no unknown day: it is never more than any real schedule
  could give, so an at-risk alarm fires early rather than late.

**Schedule file format.** The operator's file, read at the edge and passed to
:func:`parse_official_schedule` as text, is YAML (or JSON) with exactly these keys::

    # 国务院办公厅关于2027年部分节假日安排的通知 (typed in by: ..., checked by: ...)
    year: 2027
    source: "国办发明电〔2026〕N号"    # optional: the notice it was typed in from
    holidays:                          # every day off, weekends inside a holiday included
      - 2027-01-01
      - 2027-01-02
    makeup_workdays: []                # 调休: Saturdays or Sundays that are working days

Every date must fall in ``year``; no date may be listed twice; make-up working days must be
Saturdays or Sundays. This module reads no files; it is pure apart from the calendar data that
``chinese_calendar`` holds in memory.
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from types import MappingProxyType
from typing import Any

import chinese_calendar
import yaml

__all__ = [
    "CHINESE_CALENDAR",
    "Deadline",
    "OfficialSchedule",
    "ScheduleError",
    "WorkdayCalendar",
    "deadline",
    "parse_official_schedule",
    "working_days_left",
]

_ONE_DAY = timedelta(days=1)
_SATURDAY = 5
# date.fromisoformat also takes 20270101 or 2027-W01-5; an operator's file uses one spelling.
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class ScheduleError(ValueError):
    """An official schedule document or value is malformed; the message says what and where."""


@dataclass(frozen=True, slots=True)
class Deadline:
    """The last day of a working-day period."""

    due: date
    """The last day on which the act is still in time."""
    provisional: bool
    """True when unknown days were counted as working days, so ``due`` may be too early."""
    uncovered_years: tuple[int, ...]
    """The years whose unknown days were counted, ascending; empty unless ``provisional``."""


@dataclass(frozen=True, slots=True)
class OfficialSchedule:
    """One year's State Council holiday schedule, as an operator typed it in.

    Construction validates the dates and raises :class:`ScheduleError` if they are inconsistent.
    """

    year: int
    """The calendar year the schedule is for."""
    holidays: frozenset[date]
    """Days off (放假), including the weekend days inside a holiday block."""
    makeup_workdays: frozenset[date]
    """Weekend days that are working days (调休上班)."""
    source: str = ""
    """The notice the schedule was typed in from, e.g. its 文号; informational only."""

    def __post_init__(self) -> None:
        outside = sorted(d for d in self.holidays | self.makeup_workdays if d.year != self.year)
        if outside:
            raise ScheduleError(f"dates outside the declared year {self.year}: {_iso(outside)}")
        both = sorted(self.holidays & self.makeup_workdays)
        if both:
            raise ScheduleError(f"dates listed both as holiday and make-up workday: {_iso(both)}")
        # A make-up working day on a weekday would change nothing: it is a typo, not a rule.
        weekdays = sorted(d for d in self.makeup_workdays if d.weekday() < _SATURDAY)
        if weekdays:
            raise ScheduleError(f"make-up workdays that are not a weekend day: {_iso(weekdays)}")

    def is_working_day(self, d: date) -> bool:
        """Whether ``d`` (a day of :attr:`year`) is a working day under this schedule."""
        if d in self.makeup_workdays:
            return True
        return d not in self.holidays and d.weekday() < _SATURDAY


@functools.cache
def _chinese_calendar_covers(year: int) -> bool:
    try:
        chinese_calendar.is_workday(date(year, 1, 1))
    except NotImplementedError:
        return False
    return True


class WorkdayCalendar:
    """Working days from ``chinese_calendar`` plus operator-supplied official schedules.

    Immutable: :meth:`with_schedule` returns a new calendar.
    """

    __slots__ = ("_by_year", "_known")

    def __init__(self, schedules: Iterable[OfficialSchedule] = ()) -> None:
        """:param schedules: official schedules, at most one per year; they take precedence
            over ``chinese_calendar`` for their years.
        :raises ScheduleError: two schedules are for the same year.
        """
        by_year: dict[int, OfficialSchedule] = {}
        for schedule in schedules:
            if schedule.year in by_year:
                raise ScheduleError(f"two official schedules for the year {schedule.year}")
            by_year[schedule.year] = schedule
        self._by_year: Mapping[int, OfficialSchedule] = MappingProxyType(by_year)
        # Each day's answer, once asked: deadlines count the same days for every decision of a
        # day, and chinese_calendar validates its argument on every call. Bounded by the days
        # that exist in the years asked about.
        self._known: dict[date, bool | None] = {}

    def __repr__(self) -> str:
        return f"WorkdayCalendar(schedule_years={sorted(self._by_year)})"

    @property
    def schedules(self) -> tuple[OfficialSchedule, ...]:
        """The supplied official schedules, by year."""
        return tuple(self._by_year[year] for year in sorted(self._by_year))

    def with_schedule(self, schedule: OfficialSchedule) -> WorkdayCalendar:
        """A new calendar with ``schedule`` added, replacing any schedule for the same year."""
        others = (s for s in self._by_year.values() if s.year != schedule.year)
        return WorkdayCalendar((*others, schedule))

    def covers(self, year: int) -> bool:
        """Whether every day of ``year`` has a known working-day status."""
        return year in self._by_year or _chinese_calendar_covers(year)

    def is_working_day(self, d: date) -> bool | None:
        """Whether ``d`` is a working day; ``None`` when no source covers its year."""
        try:
            return self._known[d]
        except KeyError:
            working = self._known[d] = self._look_up(d)
            return working

    def _look_up(self, d: date) -> bool | None:
        schedule = self._by_year.get(d.year)
        if schedule is not None:
            return schedule.is_working_day(d)
        if _chinese_calendar_covers(d.year):
            # 调休 weekend days count as working days in chinese_calendar (RULES.md §7).
            return bool(chinese_calendar.is_workday(d))
        return None

    def add_working_days(self, start: date, n: int) -> Deadline:
        """The ``n``-th working day after ``start``, which is not counted (民法典 第201条).

        ``n == 0`` gives ``start``. Unknown days count as working days; see the reasoning below.

        :raises ValueError: ``n`` is negative.
        """
        if n < 0:
            raise ValueError(f"working days must be >= 0, got {n}")
        # Fail closed: a real schedule can only make a weekday a holiday (pushing the deadline
        # later) or a weekend day a make-up working day (pulling it earlier). Counting every
        # unknown day, weekends included, as a working day is the earliest any real schedule
        # could give: with all days working, n working days after d is d + n calendar days, and
        # the real working days are a subset of these, so their n-th one cannot come sooner.
        uncovered: set[int] = set()
        day, counted = start, 0
        while counted < n:
            day += _ONE_DAY
            working = self.is_working_day(day)
            if working is None:
                uncovered.add(day.year)
                counted += 1  # an unknown day counts as working: see above
            elif working:
                counted += 1
        return Deadline(
            due=day, provisional=bool(uncovered), uncovered_years=tuple(sorted(uncovered))
        )

    def working_days_between(self, a: date, b: date) -> int:
        """Working days strictly after ``a`` up to and including ``b``; negative when ``b < a``.

        For ``b < a`` the result is minus the working days in ``(b, a]``, so
        ``working_days_between(a, b) == -working_days_between(b, a)`` where all days are known.
        Where days are unknown the result is the smallest any real schedule could give: unknown
        days count as non-working in ``(a, b]`` and as working in ``(b, a]``.
        """
        if b >= a:
            return sum(1 for d in _days_after(a, b) if self.is_working_day(d) is True)
        return -sum(1 for d in _days_after(b, a) if self.is_working_day(d) is not False)


CHINESE_CALENDAR = WorkdayCalendar()
"""The calendar with ``chinese_calendar`` only, and no operator-supplied schedules."""


def deadline(
    decision_date: date, working_days: int, calendar: WorkdayCalendar = CHINESE_CALENDAR
) -> Deadline:
    """The deadline ``working_days`` working days after ``decision_date``.

    For 双公示 that is 7 working days (发改电〔2015〕557号), counted from the day after the
    decision (民法典 第201条). Pass the calendar that holds the operator's official schedules;
    without one, years ``chinese_calendar`` does not cover give a provisional, earlier deadline.
    """
    return calendar.add_working_days(decision_date, working_days)


def working_days_left(calendar: WorkdayCalendar, today: date, due: date) -> int:
    """Working days after ``today`` up to and including ``due``; negative once overdue.

    0 means today is the last day; -k means ``due`` passed k working days ago. For an at-risk
    alarm the safe error is to assume fewer days are left, so unknown days are not counted as
    working days before ``due`` (and are counted as overdue days after it). Counting unknown
    weekdays would not be safe: a real schedule can make any weekday a holiday (1 January
    always is). See :meth:`WorkdayCalendar.working_days_between`.
    """
    return calendar.working_days_between(today, due)


def parse_official_schedule(text: str) -> OfficialSchedule:
    """Parse one year's official schedule document (YAML, or JSON), in the format above.

    :raises ScheduleError: the text is not a valid schedule document.
    """
    try:
        document: Any = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, ValueError) as exc:
        # PyYAML raises a bare ValueError for an impossible unquoted date such as 2027-02-30.
        raise ScheduleError(f"not a valid YAML or JSON document: {exc}") from exc
    if not isinstance(document, dict):
        raise ScheduleError("a schedule document must be a mapping with year and holidays")
    required, optional = {"year", "holidays", "makeup_workdays"}, {"source"}
    missing, unknown = required - document.keys(), document.keys() - required - optional
    if missing or unknown:
        raise ScheduleError(
            f"missing keys {sorted(missing)}, unknown keys {sorted(map(str, unknown))}"
        )
    year, source = document["year"], document.get("source", "")
    # bool is an int subclass: `year: true` must not become year 1.
    if not isinstance(year, int) or isinstance(year, bool):
        raise ScheduleError(f"year must be an integer, got {year!r}")
    if not isinstance(source, str):
        raise ScheduleError(f"source must be a string, got {source!r}")
    return OfficialSchedule(
        year=year,
        holidays=_date_set(document["holidays"], "holidays"),
        makeup_workdays=_date_set(document["makeup_workdays"], "makeup_workdays"),
        source=source,
    )


def _date_set(values: object, key: str) -> frozenset[date]:
    if not isinstance(values, list):
        raise ScheduleError(f"{key} must be a list of dates, got {values!r}")
    counts = Counter(_to_date(value, key) for value in values)
    repeated = sorted(d for d, count in counts.items() if count > 1)
    if repeated:
        raise ScheduleError(f"{key} lists a date more than once: {_iso(repeated)}")
    return frozenset(counts)


def _to_date(value: object, key: str) -> date:
    # YAML turns an unquoted 2027-01-01 into a date, and JSON leaves it a string; accept both.
    # datetime is a date subclass but a time of day in a holiday list is a typo.
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ScheduleError(f"{key}: {value!r} is not a date written as YYYY-MM-DD")


def _days_after(a: date, b: date) -> Iterator[date]:
    """The days in ``(a, b]``."""
    day = a
    while day < b:
        day += _ONE_DAY
        yield day


def _iso(dates: Iterable[date]) -> str:
    return ", ".join(d.isoformat() for d in dates)

"""The versioned credit policy: windows, list thresholds, deductions, grades, periods.

A :class:`PolicyBook` holds every version; a decision is judged by the version in force on its
decision date, a detection by the one in force on its detection date (in China). The book is
parsed from YAML *text* by :func:`parse_policy_book`; reading the file (``config/policy.yaml``)
is the edge's job.

**Document format.** ::

    versions:
      - version: "2016-09-21"           # any unique string
        effective_from: 2016-09-21
        source: "..."                   # what the version implements
        detection: {...}                # every section, see config/policy.yaml
        ...
      - version: "2026-04-01"
        based_on: "2016-09-21"          # start from an earlier version ...
        effective_from: 2026-04-01
        source: "..."
        publication_periods: {...}      # ... and state only what changes

``based_on`` merges mappings key by key; any other value (a list, a number, ``null``) replaces
the inherited one. After merging, every version must be complete: unknown keys, missing keys and
values of the wrong type or range are :class:`PolicyError`\\ s naming the path, e.g.
``versions[1] "2026-04-01": overload_blacklist.window_days: expected a positive integer``.
"""

from __future__ import annotations

import bisect
import enum
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, TypeVar

import yaml

from processors.facts import ViolationKind, ViolationRole, china_date, start_of_day
from processors.model import PenaltyCategory, StationType, SubjectKind, ViolationCode

__all__ = [
    "DetectionPolicy",
    "Grade",
    "GradeBand",
    "OverloadBlacklistPolicy",
    "Policy",
    "PolicyBook",
    "PolicyError",
    "PublicationPolicy",
    "PublicationTier",
    "RedListPolicy",
    "RetentionPolicy",
    "ScoringPolicy",
    "WatchlistPolicy",
    "parse_policy_book",
]


class PolicyError(ValueError):
    """A policy document is malformed, or no policy is in force on a date."""


class Grade(enum.StrEnum):
    """Credit grade, best first (RULES.md §5)."""

    AA = "AA"
    A = "A"
    B = "B"
    C = "C"
    D = "D"

    @property
    def rank(self) -> int:
        """0 for the best grade; larger is worse."""
        return _GRADE_ORDER.index(self)


_GRADE_ORDER: tuple[Grade, ...] = tuple(Grade)


# --- the policy tree ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DetectionPolicy:
    """Which weighings are violations by themselves."""

    confirmed_station_types: frozenset[StationType]
    """Station types whose over-limit weighing is a confirmed case; the rest are pre-checks."""
    overload_tolerance_ratio: Decimal
    """A weighing is over the limit when gross > limit x (1 + tolerance)."""

    def is_over_limit(self, gross_weight_kg: int, legal_limit_kg: int) -> bool:
        """Whether a weighing exceeds the limit by more than the tolerance."""
        if not self.overload_tolerance_ratio:
            return gross_weight_kg > legal_limit_kg
        return Decimal(gross_weight_kg) > legal_limit_kg * (1 + self.overload_tolerance_ratio)


@dataclass(frozen=True, slots=True)
class OverloadBlacklistPolicy:
    """严重违法失信超限超载: the blacklist rules (RULES.md §2). ``None`` turns a rule off."""

    window_days: int
    """Length of the rolling window ("1年内")."""
    vehicle_violations_gt: int | None
    """A vehicle is listed with more than this many overload violations in a window."""
    driver_violations_gt: int | None
    """A driver is listed with more than this many overload violations in a window."""
    carrier_overloading_vehicle_ratio_gt: Decimal | None
    """A carrier is listed when its overloading vehicles exceed this share of its fleet."""
    carrier_requires_suspension_order: bool
    """The carrier rule also needs a suspension order (责令停业整顿)."""
    instigator_fine_yuan_gte: Decimal | None
    """An instigator is listed for one instigation fine of at least this amount."""
    instigator_penalties_in_window_gte: int | None
    """An instigator is listed for at least this many instigation penalties in a window."""
    gross_overweight_ratio_gte: Decimal | None
    """A single violation at least this far over the limit lists the subject."""
    gross_overweight_subject_kinds: frozenset[SubjectKind]
    """Which subjects the gross-overweight rule lists."""
    pre_publication_notice_working_days: int
    """公示期 before an entry is published (for the publication lifecycle)."""
    publication_years: int
    """How long a published entry stays on the public list (for the publication lifecycle)."""


@dataclass(frozen=True, slots=True)
class WatchlistPolicy:
    """重点关注名单 for repeated minor violations."""

    window_days: int
    """Length of the rolling window."""
    violations_in_window_gte: int | None
    """A subject is watched with at least this many counted violations in a window."""
    counted_kinds: frozenset[ViolationKind]
    """Kinds of violation that count as minor."""


@dataclass(frozen=True, slots=True)
class RedListPolicy:
    """守信激励 red list: a top grade and a clean record."""

    subject_kinds: frozenset[SubjectKind]
    """Which subjects can be red-listed."""
    min_grade: Grade
    """Lowest grade that qualifies."""
    clean_days: int
    """No disqualifying violation in this many days before the judging instant."""
    min_history_days: int
    """The subject must have been known for this long."""
    disqualifying_kinds: frozenset[ViolationKind]
    """Kinds of violation that break a clean record."""


@dataclass(frozen=True, slots=True)
class GradeBand:
    """A grade and the lowest score that earns it."""

    grade: Grade
    """The grade."""
    score_gte: int
    """Its floor."""


@dataclass(frozen=True, slots=True)
class ScoringPolicy:
    """Score and grade: start high, deduct per violation in the window."""

    window_days: int
    """Violations in this many days before the judging instant count."""
    start_score: int
    """Score with no violation."""
    deductions: Mapping[ViolationCode, int]
    """Points a violation costs, by violation code."""
    category_surcharges: Mapping[PenaltyCategory, int]
    """Extra points for the heaviest 处罚类别 of the violation."""
    counted_roles: frozenset[ViolationRole]
    """Roles in which a subject answers for a violation itself (also used by the watchlist and
    the red list); a carrier's fleet answers through the ratio rule instead."""
    grade_bands: tuple[GradeBand, ...]
    """Best grade first, floors strictly falling, the last floor 0."""

    def deduction(self, code: ViolationCode, categories: tuple[PenaltyCategory, ...]) -> int:
        """Points one violation costs."""
        surcharge = max((self.category_surcharges.get(c, 0) for c in categories), default=0)
        return self.deductions[code] + surcharge

    def grade_of(self, score: int) -> Grade:
        """The grade a score earns."""
        for band in self.grade_bands:
            if score >= band.score_gte:
                return band.grade
        return self.grade_bands[-1].grade


@dataclass(frozen=True, slots=True)
class PublicationTier:
    """How long one tier of dishonesty records is published."""

    published: bool
    """Whether records of this tier are published at all (in principle)."""
    min_months: int | None
    """Shortest publication (before repair is possible)."""
    max_months: int | None
    """Longest publication; publication stops by itself after it."""


@dataclass(frozen=True, slots=True)
class PublicationPolicy:
    """Publication periods by tier (RULES.md §3); ``None`` where the regime is not verified."""

    minor: PublicationTier | None
    """轻微."""
    general: PublicationTier | None
    """一般."""
    serious: PublicationTier | None
    """严重."""


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How late an event may be and still count."""

    late_event_horizon_days: int
    """An event this many days older than the newest fact of its file is stale: recorded, not
    judged. Facts are kept for this horizon plus the longest window, so that any event that is
    not stale still meets every fact it could share a window with."""


class ObjectionRecordState(enum.StrEnum):
    """What an open objection does to the disputed entry or record (RULES.md §4)."""

    ANNOTATE = "annotate"
    """Marked as disputed, still published (征信业管理条例 第25条 analogue; the default). The
    other reading, 暂停公示 until the answer, is not built: add it here when the bureau asks."""


@dataclass(frozen=True, slots=True)
class LifecyclePolicy:
    """What happens to a list entry and a record after the rules fire (RULES.md §2-§4)."""

    red_list_publication_years: int
    """A red-list entry is published for this long (公路 守信典型企业: 2 years, RULES.md §6)."""
    objection_response_working_days: int
    """An objection must be answered within this many working days (广州 practice: 10)."""
    objection_record_state: ObjectionRecordState
    """What an open objection does to what it disputes."""
    repair_requires_min_period: bool
    """Repair only after the tier's minimum publication period (信用修复管理办法)."""
    repair_requires_obligations_fulfilled: bool
    """Repair only once the penalty's obligations are fulfilled."""
    repair_requires_public_commitment: bool
    """Repair only with a public credit commitment."""
    repair_not_repairable_tiers: frozenset[str]
    """Severity tiers (``MINOR``, ``GENERAL``, ``SERIOUS``) that cannot be repaired."""
    repair_withdrawal_working_days: int
    """Publication stops within this many working days of an approved repair."""


@dataclass(frozen=True, slots=True)
class Policy:
    """One version of the credit policy."""

    version: str
    """Name of the version, carried by every trigger judged under it."""
    effective_from: date
    """First day (in China) the version is in force."""
    source: str
    """What the version implements."""
    detection: DetectionPolicy
    """Which weighings count."""
    overload_blacklist: OverloadBlacklistPolicy
    """Blacklist rules."""
    watchlist: WatchlistPolicy
    """Watchlist rule."""
    red_list: RedListPolicy
    """Red list rule."""
    scoring: ScoringPolicy
    """Score and grade."""
    publication_periods: PublicationPolicy | None
    """Publication periods of the regime; None before any national tiers were sourced."""
    retention: RetentionPolicy
    """Lateness and retention."""
    lifecycle: LifecyclePolicy
    """Notice, publication, objections and repair."""

    @property
    def longest_window_days(self) -> int:
        """The longest window any rule of this version looks back over."""
        return max(
            self.overload_blacklist.window_days,
            self.watchlist.window_days,
            self.red_list.clean_days,
            self.scoring.window_days,
        )


@dataclass(frozen=True, slots=True)
class PolicyBook:
    """Every policy version, by effective date."""

    versions: tuple[Policy, ...]
    """Sorted by ``effective_from``, at least one, no two on the same day."""
    _days: tuple[date, ...] = field(init=False, repr=False, compare=False)
    _late_event_horizon: timedelta = field(init=False, repr=False, compare=False)
    _retention: timedelta = field(init=False, repr=False, compare=False)
    _red_list_kinds: frozenset[SubjectKind] = field(init=False, repr=False, compare=False)
    _first_instant: datetime = field(init=False, repr=False, compare=False)
    _starts: tuple[datetime, ...] = field(init=False, repr=False, compare=False)
    _own_roles: frozenset[ViolationRole] = field(init=False, repr=False, compare=False)
    _minor_kinds: frozenset[ViolationKind] = field(init=False, repr=False, compare=False)
    _gross_overweight_kinds: frozenset[SubjectKind] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.versions:
            raise PolicyError("a policy book needs at least one version")
        days = tuple(policy.effective_from for policy in self.versions)
        if any(later <= earlier for earlier, later in itertools.pairwise(days)):
            raise PolicyError("versions must be in strictly increasing effective_from order")
        names = [policy.version for policy in self.versions]
        if len(set(names)) != len(names):
            raise PolicyError("version names must be unique")
        object.__setattr__(self, "_days", days)
        horizon = max(p.retention.late_event_horizon_days for p in self.versions)
        retention = max(
            p.retention.late_event_horizon_days + p.longest_window_days for p in self.versions
        )
        object.__setattr__(self, "_late_event_horizon", timedelta(days=horizon))
        object.__setattr__(self, "_retention", timedelta(days=retention))
        kinds = frozenset(kind for p in self.versions for kind in p.red_list.subject_kinds)
        object.__setattr__(self, "_red_list_kinds", kinds)
        object.__setattr__(self, "_starts", tuple(start_of_day(day) for day in days))
        object.__setattr__(self, "_first_instant", self._starts[0])
        # Unions over the versions, so the rules can tell cheaply which of them can hold.
        own = frozenset(role for p in self.versions for role in p.scoring.counted_roles)
        minor = frozenset(kind for p in self.versions for kind in p.watchlist.counted_kinds)
        gross = frozenset(
            kind
            for p in self.versions
            if p.overload_blacklist.gross_overweight_ratio_gte is not None
            for kind in p.overload_blacklist.gross_overweight_subject_kinds
        )
        object.__setattr__(self, "_own_roles", own)
        object.__setattr__(self, "_minor_kinds", minor)
        object.__setattr__(self, "_gross_overweight_kinds", gross)

    @property
    def first_day(self) -> date:
        """The first day any version is in force."""
        return self.versions[0].effective_from

    @property
    def first_instant(self) -> datetime:
        """The instant the first version comes into force (start of its day in China)."""
        return self._first_instant

    def in_force_on(self, day: date) -> Policy:
        """The version in force on ``day`` (a date in China)."""
        index = bisect.bisect_right(self._days, day) - 1
        if index < 0:
            raise PolicyError(
                f"no policy is in force on {day.isoformat()}: "
                f"the first version starts {self.first_day.isoformat()}"
            )
        return self.versions[index]

    def in_force_at(self, instant: datetime) -> Policy:
        """The version in force at ``instant`` (its date in China)."""
        # Bisecting on the instants the versions start skips a timezone conversion per call.
        index = bisect.bisect_right(self._starts, instant) - 1
        if index < 0:
            return self.in_force_on(china_date(instant))  # raises with the date in the message
        return self.versions[index]

    def judging_policy(self, instant: datetime) -> Policy:
        """The version that judges a fact dated ``instant``.

        Facts dated before the first version are refused as stale when they arrive; this only
        falls back to the first version for a fact admitted under an older book.
        """
        if instant < self._first_instant:
            return self.versions[0]
        return self.in_force_at(instant)

    def version(self, name: str) -> Policy:
        """The version called ``name``."""
        for policy in self.versions:
            if policy.version == name:
                return policy
        raise PolicyError(f"no policy version {name!r}")

    @property
    def late_event_horizon(self) -> timedelta:
        """How far behind its file's newest fact an event may be (the widest of all versions)."""
        return self._late_event_horizon

    @property
    def red_list_kinds(self) -> frozenset[SubjectKind]:
        """Subjects some version can red-list: the only lists that follow the clock."""
        return self._red_list_kinds

    @property
    def own_roles(self) -> frozenset[ViolationRole]:
        """Roles some version counts as the subject's own (scoring, watchlist, red list)."""
        return self._own_roles

    @property
    def minor_kinds(self) -> frozenset[ViolationKind]:
        """Kinds of violation some version's watchlist counts."""
        return self._minor_kinds

    @property
    def gross_overweight_kinds(self) -> frozenset[SubjectKind]:
        """Subjects some version's gross-overweight rule can list (empty while it is off)."""
        return self._gross_overweight_kinds

    @property
    def retention(self) -> timedelta:
        """How long facts are kept behind the newest fact, unless they are list evidence."""
        return self._retention


# --- parsing ------------------------------------------------------------------------------------


def parse_policy_book(text: str) -> PolicyBook:
    """Parse a policy document (YAML text); raise :class:`PolicyError` saying what is wrong."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PolicyError(f"not valid YAML: {error}") from error
    if not isinstance(document, dict):
        raise PolicyError("the document must be a mapping with a 'versions' list")
    unknown = set(document) - {"versions"}
    if unknown:
        raise PolicyError(f"unknown top-level keys: {', '.join(sorted(map(str, unknown)))}")
    raw_versions = document.get("versions")
    if not isinstance(raw_versions, list) or not raw_versions:
        raise PolicyError("'versions' must be a non-empty list")

    merged_by_name: dict[str, dict[str, Any]] = {}
    policies: list[Policy] = []
    for index, raw in enumerate(raw_versions):
        where = f"versions[{index}]"
        if not isinstance(raw, dict):
            raise PolicyError(f"{where}: expected a mapping")
        name = _version_name(raw.get("version"), where)
        where = f'{where} "{name}"'
        if name in merged_by_name:
            raise PolicyError(f"{where}: version {name!r} is defined twice")
        merged = dict(raw)
        base_name = merged.pop("based_on", None)
        if base_name is not None:
            base_name = _version_name(base_name, f"{where}: based_on")
            if base_name not in merged_by_name:
                raise PolicyError(
                    f"{where}: based_on {base_name!r} is not an earlier version in the document"
                )
            merged = _deep_merge(merged_by_name[base_name], merged)
        merged_by_name[name] = merged
        policies.append(_read_policy(_Reader(merged, where), name))

    for earlier, later in itertools.pairwise(policies):
        if later.effective_from <= earlier.effective_from:
            raise PolicyError(
                f'version "{later.version}": effective_from {later.effective_from} must be after '
                f'"{earlier.version}" ({earlier.effective_from}); list versions in date order'
            )
    return PolicyBook(tuple(policies))


def _version_name(value: object, where: str) -> str:
    # An unquoted 2016-09-21 is read by YAML as a date; its ISO form is the obvious name.
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and value.strip():
        return value
    raise PolicyError(f"{where}: 'version' must be a non-empty string")


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        inherited = merged.get(key)
        if isinstance(inherited, dict) and isinstance(value, dict):
            merged[key] = _deep_merge(inherited, value)
        else:
            merged[key] = value
    return merged


_E = TypeVar("_E", bound=enum.Enum)


class _Reader:
    """Typed access to one mapping of the document, with the path for error messages."""

    def __init__(self, mapping: Mapping[str, Any], version: str, section: str = "") -> None:
        self._mapping = mapping
        self._version = version
        self._section = section
        self._read: set[str] = set()

    def _where(self, key: str | None = None) -> str:
        dotted = ".".join(part for part in (self._section, key) if part)
        return f"{self._version}: {dotted}" if dotted else self._version

    def fail(self, key: str, message: str) -> PolicyError:
        return PolicyError(f"{self._where(key)}: {message}")

    def _get(self, key: str) -> object:
        self._read.add(key)
        if key not in self._mapping:
            raise PolicyError(f"{self._where()}: missing key {key!r}")
        return self._mapping[key]

    def has(self, key: str) -> bool:
        return key in self._mapping

    def mark_read(self, key: str) -> None:
        self._read.add(key)

    def section(self, key: str) -> _Reader:
        value = self._get(key)
        if not isinstance(value, dict):
            raise self.fail(key, "expected a mapping")
        return _Reader(value, self._version, ".".join(p for p in (self._section, key) if p))

    def optional_section(self, key: str) -> _Reader | None:
        if self._get(key) is None:
            return None
        return self.section(key)

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, "expected a non-empty string")
        return value

    def day(self, key: str) -> date:
        value = self._get(key)
        if isinstance(value, datetime) or not isinstance(value, date):
            raise self.fail(key, f"expected a date like 2016-09-21, got {value!r}")
        return value

    def flag(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}")
        return value

    def integer(self, key: str, *, minimum: int) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise self.fail(key, f"expected {kind}, got {value!r}")
        return value

    def optional_integer(self, key: str, *, minimum: int) -> int | None:
        if self._get(key) is None:
            return None
        return self.integer(key, minimum=minimum)

    def decimal(self, key: str, *, maximum: Decimal | None = None) -> Decimal:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise self.fail(key, f"expected a number, got {value!r}")
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise self.fail(key, f"expected a number, got {value!r}") from None
        if not number.is_finite() or number < 0:
            raise self.fail(key, f"expected a finite number >= 0, got {value!r}")
        if maximum is not None and number > maximum:
            raise self.fail(key, f"expected at most {maximum}, got {value!r}")
        return number

    def optional_decimal(self, key: str, *, maximum: Decimal | None = None) -> Decimal | None:
        if self._get(key) is None:
            return None
        return self.decimal(key, maximum=maximum)

    def member(self, key: str, enum_type: type[_E]) -> _E:
        return self._member(key, self._get(key), enum_type)

    def members(self, key: str, enum_type: type[_E]) -> frozenset[_E]:
        value = self._get(key)
        if not isinstance(value, list):
            raise self.fail(key, "expected a list")
        return frozenset(self._member(key, item, enum_type) for item in value)

    def enum_mapping(self, key: str, enum_type: type[_E], *, complete: bool) -> dict[_E, int]:
        value = self._get(key)
        if not isinstance(value, dict):
            raise self.fail(key, "expected a mapping")
        result: dict[_E, int] = {}
        for name, points in value.items():
            member = self._member(key, name, enum_type)
            if isinstance(points, bool) or not isinstance(points, int) or points < 0:
                raise self.fail(f"{key}.{name}", f"expected an integer >= 0, got {points!r}")
            result[member] = points
        missing = [m.value for m in enum_type if m not in result] if complete else []
        if missing:
            raise self.fail(key, f"missing entries for {', '.join(missing)}")
        return result

    def _member(self, key: str, value: object, enum_type: type[_E]) -> _E:
        try:
            return enum_type(value)
        except ValueError:
            allowed = ", ".join(str(m.value) for m in enum_type)
            raise self.fail(key, f"{value!r} is not one of {allowed}") from None

    def finish(self) -> None:
        unknown = set(self._mapping) - self._read
        if unknown:
            names = ", ".join(sorted(map(str, unknown)))
            raise PolicyError(f"{self._where()}: unknown keys: {names}")


_POSITIVE = 1
_RATIO_MAX = Decimal(1)


def _read_policy(reader: _Reader, name: str) -> Policy:
    reader.mark_read("version")  # checked by _version_name
    policy = Policy(
        version=name,
        effective_from=reader.day("effective_from"),
        source=reader.text("source"),
        detection=_read_detection(reader.section("detection")),
        overload_blacklist=_read_blacklist(reader.section("overload_blacklist")),
        watchlist=_read_watchlist(reader.section("watchlist")),
        red_list=_read_red_list(reader.section("red_list")),
        scoring=_read_scoring(reader.section("scoring")),
        publication_periods=_read_publication(reader.optional_section("publication_periods")),
        retention=_read_retention(reader.section("retention")),
        lifecycle=_read_lifecycle(reader.section("lifecycle")),
    )
    reader.finish()
    return policy


_TIER_NAMES = frozenset({"MINOR", "GENERAL", "SERIOUS"})  # processors.disclosure.SeverityTier


def _read_lifecycle(reader: _Reader) -> LifecyclePolicy:
    tiers = reader._get("repair_not_repairable_tiers")
    if not isinstance(tiers, list) or not set(tiers) <= _TIER_NAMES:
        raise reader.fail(
            "repair_not_repairable_tiers", f"expected a list of {', '.join(sorted(_TIER_NAMES))}"
        )
    policy = LifecyclePolicy(
        red_list_publication_years=reader.integer("red_list_publication_years", minimum=_POSITIVE),
        objection_response_working_days=reader.integer(
            "objection_response_working_days", minimum=_POSITIVE
        ),
        objection_record_state=reader.member("objection_record_state", ObjectionRecordState),
        repair_requires_min_period=reader.flag("repair_requires_min_period"),
        repair_requires_obligations_fulfilled=reader.flag("repair_requires_obligations_fulfilled"),
        repair_requires_public_commitment=reader.flag("repair_requires_public_commitment"),
        repair_not_repairable_tiers=frozenset(str(t) for t in tiers),
        repair_withdrawal_working_days=reader.integer("repair_withdrawal_working_days", minimum=0),
    )
    reader.finish()
    return policy


def _read_detection(reader: _Reader) -> DetectionPolicy:
    policy = DetectionPolicy(
        confirmed_station_types=reader.members("confirmed_station_types", StationType),
        overload_tolerance_ratio=reader.decimal("overload_tolerance_ratio", maximum=_RATIO_MAX),
    )
    reader.finish()
    return policy


def _read_blacklist(reader: _Reader) -> OverloadBlacklistPolicy:
    policy = OverloadBlacklistPolicy(
        window_days=reader.integer("window_days", minimum=_POSITIVE),
        vehicle_violations_gt=reader.optional_integer("vehicle_violations_gt", minimum=0),
        driver_violations_gt=reader.optional_integer("driver_violations_gt", minimum=0),
        carrier_overloading_vehicle_ratio_gt=reader.optional_decimal(
            "carrier_overloading_vehicle_ratio_gt", maximum=_RATIO_MAX
        ),
        carrier_requires_suspension_order=reader.flag("carrier_requires_suspension_order"),
        instigator_fine_yuan_gte=reader.optional_decimal("instigator_fine_yuan_gte"),
        instigator_penalties_in_window_gte=reader.optional_integer(
            "instigator_penalties_in_window_gte", minimum=_POSITIVE
        ),
        gross_overweight_ratio_gte=reader.optional_decimal("gross_overweight_ratio_gte"),
        gross_overweight_subject_kinds=reader.members(
            "gross_overweight_subject_kinds", SubjectKind
        ),
        pre_publication_notice_working_days=reader.integer(
            "pre_publication_notice_working_days", minimum=0
        ),
        publication_years=reader.integer("publication_years", minimum=_POSITIVE),
    )
    reader.finish()
    return policy


def _read_watchlist(reader: _Reader) -> WatchlistPolicy:
    policy = WatchlistPolicy(
        window_days=reader.integer("window_days", minimum=_POSITIVE),
        violations_in_window_gte=reader.optional_integer(
            "violations_in_window_gte", minimum=_POSITIVE
        ),
        counted_kinds=reader.members("counted_kinds", ViolationKind),
    )
    reader.finish()
    return policy


def _read_red_list(reader: _Reader) -> RedListPolicy:
    policy = RedListPolicy(
        subject_kinds=reader.members("subject_kinds", SubjectKind),
        min_grade=reader.member("min_grade", Grade),
        clean_days=reader.integer("clean_days", minimum=_POSITIVE),
        min_history_days=reader.integer("min_history_days", minimum=0),
        disqualifying_kinds=reader.members("disqualifying_kinds", ViolationKind),
    )
    reader.finish()
    return policy


def _read_scoring(reader: _Reader) -> ScoringPolicy:
    floors = reader.enum_mapping("grade_floors", Grade, complete=True)
    bands = tuple(GradeBand(grade, floors[grade]) for grade in _GRADE_ORDER)
    falling = all(
        later.score_gte < earlier.score_gte for earlier, later in itertools.pairwise(bands)
    )
    if not falling:
        raise reader.fail("grade_floors", "floors must fall strictly from AA to D")
    if bands[-1].score_gte != 0:
        raise reader.fail(
            "grade_floors", "the floor of D must be 0, so that every score has a grade"
        )
    policy = ScoringPolicy(
        window_days=reader.integer("window_days", minimum=_POSITIVE),
        start_score=reader.integer("start_score", minimum=_POSITIVE),
        deductions=MappingProxyType(
            reader.enum_mapping("deductions", ViolationCode, complete=True)
        ),
        category_surcharges=MappingProxyType(
            reader.enum_mapping("category_surcharges", PenaltyCategory, complete=False)
        ),
        counted_roles=reader.members("counted_roles", ViolationRole),
        grade_bands=bands,
    )
    reader.finish()
    return policy


def _read_publication(reader: _Reader | None) -> PublicationPolicy | None:
    if reader is None:
        return None
    policy = PublicationPolicy(
        minor=_read_tier(reader.optional_section("minor")),
        general=_read_tier(reader.optional_section("general")),
        serious=_read_tier(reader.optional_section("serious")),
    )
    reader.finish()
    return policy


def _read_tier(reader: _Reader | None) -> PublicationTier | None:
    if reader is None:
        return None
    published = reader.flag("published")
    # A bound may be left out where the regime sets none.
    min_months = (
        reader.optional_integer("min_months", minimum=_POSITIVE)
        if reader.has("min_months")
        else None
    )
    max_months = (
        reader.optional_integer("max_months", minimum=_POSITIVE)
        if reader.has("max_months")
        else None
    )
    if min_months is not None and max_months is not None and min_months > max_months:
        raise reader.fail("min_months", f"{min_months} is more than max_months {max_months}")
    reader.finish()
    return PublicationTier(published=published, min_months=min_months, max_months=max_months)


def _read_retention(reader: _Reader) -> RetentionPolicy:
    policy = RetentionPolicy(
        late_event_horizon_days=reader.integer("late_event_horizon_days", minimum=_POSITIVE),
    )
    reader.finish()
    return policy

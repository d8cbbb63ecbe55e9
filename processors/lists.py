"""Blacklist, watchlist and red-list rules, and the triggers they raise.

Every rule is a function of the facts a file holds, never of the order they came in: a window
rule asks "is there a window containing enough violations?", so the same set of facts gives the
same entries whatever arrived first, and an entry stays while any window still supports it (the
2-year publication lifecycle belongs to another module). A window ends at the violation that
completes it and is judged by the policy in force on that violation's date. An entry's evidence
is every violation in any window that supports it; the file keeps those however old while the
entry stands, so that taking one back can be judged against all the others.

Windows are half-open, ``(end - window, end]``: with a 365-day window, decisions dated 364 days
apart share a window and decisions 365 days apart do not ("1年内", RULES.md §2).

Rules and their sources (RULES.md §2 unless noted):

- ``overload.vehicle``: a goods vehicle with more than N overload violations in a window
  (公路安全保护条例 第66条; 交通运输部办公厅 2017 通知 item 1; "超过" is strict);
- ``overload.driver``: the same for a driver (第66条; item 2);
- ``overload.carrier_fleet_ratio``: a carrier whose overloading vehicles in a window exceed a
  share of its fleet (第66条 "超过本单位货运车辆总数10%"), and, by default, that was ordered to
  suspend operations (item 3 "并被责令停业整顿");
- ``overload.instigator_fine`` / ``overload.instigator_repeat``: anyone penalised for 指使、强令
  overloading with a fine of at least X, or at least N times in a window (item 5, "以上" is
  inclusive);
- ``overload.gross_overweight``: one violation at least X over the limit; no source found, off
  unless the policy sets X;
- ``watchlist.repeated_minor``: 重点关注名单 for "多次发生轻微失信行为" (交政研发〔2018〕181号);
  the numbers are local choices;
- ``red_list.clean_top_grade``: 守信激励 for a top grade and a clean record (RULES.md §6; the
  numbers are local choices). It is judged at the file's clock, so it follows time.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from processors.facts import (
    FleetFact,
    ViolationFact,
    ViolationKind,
    ViolationRole,
)
from processors.model import PenaltyCategory, SubjectKind, SubjectRef
from processors.policy import Policy, PolicyBook
from processors.scoring import distinct_violations, score_at

__all__ = [
    "CARRIER_FLEET_RATIO",
    "CLEAN_TOP_GRADE",
    "DRIVER_OVERLOAD",
    "GROSS_OVERWEIGHT",
    "INSTIGATOR_FINE",
    "INSTIGATOR_REPEAT",
    "REPEATED_MINOR",
    "VEHICLE_OVERLOAD",
    "AlertKind",
    "EnforcementAlert",
    "ListAction",
    "ListEntry",
    "ListName",
    "ListTrigger",
    "RuleInput",
    "evaluate",
    "list_changes",
    "vehicle_overloads_in_window",
]


class ListName(enum.StrEnum):
    """The lists a subject can be on."""

    BLACKLIST = "BLACKLIST"
    """严重失信主体名单 (黑名单)."""
    WATCHLIST = "WATCHLIST"
    """重点关注名单."""
    RED_LIST = "RED_LIST"
    """守信激励 (红名单)."""


class ListAction(enum.StrEnum):
    """What a trigger does to a list."""

    ADD = "ADD"
    REMOVE = "REMOVE"


class AlertKind(enum.StrEnum):
    """Alerts for enforcement that are not list changes."""

    IMMINENT_BLACKLIST = "IMMINENT_BLACKLIST"
    """A vehicle one confirmed violation short of the blacklist was seen over the limit."""


VEHICLE_OVERLOAD = "overload.vehicle"
DRIVER_OVERLOAD = "overload.driver"
CARRIER_FLEET_RATIO = "overload.carrier_fleet_ratio"
INSTIGATOR_FINE = "overload.instigator_fine"
INSTIGATOR_REPEAT = "overload.instigator_repeat"
GROSS_OVERWEIGHT = "overload.gross_overweight"
REPEATED_MINOR = "watchlist.repeated_minor"
CLEAN_TOP_GRADE = "red_list.clean_top_grade"

_ARTICLE_66 = "公路安全保护条例 第66条"
_MOT_2017 = "交通运输部办公厅 2017 通知"


@dataclass(frozen=True, slots=True)
class ListEntry:
    """A subject's standing entry on a list under one rule, with what supports it."""

    list_name: ListName
    """The list."""
    rule_id: str
    """The rule that lists the subject."""
    policy_version: str
    """Version that judged the first supporting window."""
    since: datetime
    """Event time at which the rule first held (the end of the first supporting window)."""
    evidence_event_ids: tuple[str, ...]
    """Source events of every supporting violation, sorted."""
    evidence_violation_ids: tuple[str, ...]
    """Supporting violations, sorted; they are kept however old while the entry stands."""
    reason: str
    """Why, in words."""

    @property
    def key(self) -> str:
        """Where a file holds the entry."""
        return f"{self.list_name.value}:{self.rule_id}"


@dataclass(frozen=True, slots=True)
class ListTrigger:
    """A change of list membership, for the sinks and the publication lifecycle."""

    action: ListAction
    """Add or remove."""
    list_name: ListName
    """The list."""
    subject: SubjectRef
    """Whose membership changes."""
    rule_id: str
    """The rule."""
    policy_version: str
    """Version that judged the entry."""
    evidence_event_ids: tuple[str, ...]
    """ADD: events supporting the entry. REMOVE: events that took the support away."""
    effective_time: datetime
    """Event time of the change (never arrival time)."""
    reason: str
    """Why, in words."""
    recorded_at: datetime
    """Processing time at which the change was noticed."""


@dataclass(frozen=True, slots=True)
class EnforcementAlert:
    """An alert for enforcement officers, raised by a pre-check."""

    kind: AlertKind
    """What the alert is about."""
    subject: SubjectRef
    """The vehicle."""
    rule_id: str
    """The list rule the vehicle is about to meet."""
    policy_version: str
    """Version in force at the pre-check."""
    violations_in_window: int
    """The vehicle's overload violations in the window ending at the pre-check."""
    threshold: int
    """More than this many lists the vehicle."""
    detection_event_id: str
    """The pre-check event."""
    detection_id: str
    """The pre-check's detection number."""
    station_id: str
    """Where the vehicle was seen."""
    detected_at: datetime
    """When it was seen."""
    evidence_event_ids: tuple[str, ...]
    """Source events of the violations in the window."""
    reason: str
    """Why, in words."""
    recorded_at: datetime
    """Processing time."""


@dataclass(frozen=True, slots=True)
class RuleInput:
    """Everything the rules look at for one subject."""

    subject: SubjectRef
    """Whose file."""
    violations: tuple[ViolationFact, ...]
    """Every violation held, in every role (a violation may appear once per role)."""
    fleet: tuple[FleetFact, ...]
    """Vehicle operating certificates that name the subject (carriers)."""
    clock: datetime | None
    """Newest event time known to the file: where the red list is judged."""
    history_start: datetime | None
    """Earliest event time known for the subject."""


# --- evaluation ---------------------------------------------------------------------------------


def evaluate(subject_input: RuleInput, book: PolicyBook) -> dict[str, ListEntry]:
    """Every list entry the subject's facts support, by entry key."""
    entries: dict[str, ListEntry] = {}
    if subject_input.violations:
        by_time = sorted(
            subject_input.violations, key=lambda v: (v.occurred_at, v.violation_id, v.role)
        )
        # Which rules can hold at all is cheap to see, and most files meet one or two.
        for rule in _applicable_rules(subject_input, book):
            entry = rule(subject_input, by_time, book)
            if entry is not None:
                entries[entry.key] = entry
    else:
        by_time = []
    red = _clean_top_grade(subject_input, by_time, book, entries)
    if red is not None:
        entries[red.key] = red
    return entries


_Rule = Callable[[RuleInput, Sequence[ViolationFact], PolicyBook], ListEntry | None]


def _applicable_rules(subject_input: RuleInput, book: PolicyBook) -> list[_Rule]:
    present = {(v.role, v.kind) for v in subject_input.violations}
    kind = subject_input.subject.kind
    overload = ViolationKind.OVERLOAD
    rules: list[_Rule] = []
    if kind is SubjectKind.VEHICLE and (ViolationRole.VEHICLE, overload) in present:
        rules.append(_vehicle_overload)
    if kind is SubjectKind.DRIVER and present & {
        (ViolationRole.DRIVER, overload),
        (ViolationRole.PENALISED, overload),
    }:
        rules.append(_driver_overload)
    if kind is SubjectKind.CARRIER and (ViolationRole.FLEET, overload) in present:
        rules.append(_carrier_fleet_ratio)
    if (ViolationRole.PENALISED, ViolationKind.INSTIGATION) in present:
        rules += [_instigator_repeat, _instigator_fine]
    if any(r in book.own_roles and k in book.minor_kinds for r, k in present):
        rules.append(_repeated_minor)
    if kind in book.gross_overweight_kinds and any(k is overload for _, k in present):
        rules.append(_gross_overweight)
    return rules


def list_changes(
    subject: SubjectRef,
    before: Mapping[str, ListEntry],
    after: Mapping[str, ListEntry],
    *,
    cause_time: datetime,
    cause_event_ids: tuple[str, ...],
    recorded_at: datetime,
) -> tuple[ListTrigger, ...]:
    """ADD for each new entry, REMOVE for each entry whose support is gone."""
    triggers = [
        ListTrigger(
            action=ListAction.ADD,
            list_name=entry.list_name,
            subject=subject,
            rule_id=entry.rule_id,
            policy_version=entry.policy_version,
            evidence_event_ids=entry.evidence_event_ids,
            effective_time=entry.since,
            reason=entry.reason,
            recorded_at=recorded_at,
        )
        for key, entry in sorted(after.items())
        if key not in before
    ]
    triggers += [
        ListTrigger(
            action=ListAction.REMOVE,
            list_name=entry.list_name,
            subject=subject,
            rule_id=entry.rule_id,
            policy_version=entry.policy_version,
            evidence_event_ids=cause_event_ids,
            effective_time=cause_time,
            reason=f"no longer supported (was: {entry.reason})",
            recorded_at=recorded_at,
        )
        for key, entry in sorted(before.items())
        if key not in after
    ]
    return tuple(triggers)


def vehicle_overloads_in_window(
    violations: Iterable[ViolationFact], end: datetime, policy: Policy
) -> list[ViolationFact]:
    """A vehicle's own overload violations in the blacklist window ending at ``end``."""
    since = end - timedelta(days=policy.overload_blacklist.window_days)
    return [
        v
        for v in distinct_violations(violations, (ViolationRole.VEHICLE,))
        if v.kind is ViolationKind.OVERLOAD and since < v.occurred_at <= end
    ]


# --- window rules -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _WindowTest:
    window_days: int
    min_count: int
    counts: Callable[[ViolationFact], bool]


@dataclass(frozen=True, slots=True)
class _Support:
    first_end: datetime
    first_policy: Policy
    first_count: int
    first_window_days: int
    evidence: tuple[ViolationFact, ...]


def _supporting_windows(
    candidates: Sequence[ViolationFact],
    test_for: Callable[[Policy], _WindowTest | None],
    book: PolicyBook,
) -> _Support | None:
    """Every window that meets its test; ``candidates`` are distinct and sorted by time."""
    times = [v.occurred_at for v in candidates]
    evidence: dict[str, ViolationFact] = {}
    first: tuple[datetime, Policy, int, int] | None = None
    for violation in candidates:
        end = violation.occurred_at
        policy = book.judging_policy(end)
        test = test_for(policy)
        if test is None or not test.counts(violation):
            continue
        low = bisect.bisect_right(times, end - timedelta(days=test.window_days))
        high = bisect.bisect_right(times, end)
        members = [v for v in candidates[low:high] if test.counts(v)]
        if len(members) < test.min_count:
            continue
        evidence.update((m.violation_id, m) for m in members)
        if first is None:
            first = (end, policy, len(members), test.window_days)
    if first is None:
        return None
    ordered = tuple(sorted(evidence.values(), key=lambda v: (v.occurred_at, v.violation_id)))
    return _Support(first[0], first[1], first[2], first[3], ordered)


def _entry(list_name: ListName, rule_id: str, support: _Support, reason: str) -> ListEntry:
    violations = support.evidence
    return ListEntry(
        list_name=list_name,
        rule_id=rule_id,
        policy_version=support.first_policy.version,
        since=support.first_end,
        evidence_event_ids=tuple(sorted({e for v in violations for e in v.source_event_ids})),
        evidence_violation_ids=tuple(sorted({v.violation_id for v in violations})),
        reason=reason,
    )


def _always(_: ViolationFact) -> bool:
    return True


def _of(
    violations: Iterable[ViolationFact], roles: Iterable[ViolationRole], kind: ViolationKind
) -> list[ViolationFact]:
    return [v for v in distinct_violations(violations, roles) if v.kind is kind]


def _vehicle_overload(
    subject_input: RuleInput, by_time: Sequence[ViolationFact], book: PolicyBook
) -> ListEntry | None:
    if subject_input.subject.kind is not SubjectKind.VEHICLE:
        return None
    candidates = _of(by_time, (ViolationRole.VEHICLE,), ViolationKind.OVERLOAD)

    def test_for(policy: Policy) -> _WindowTest | None:
        limit = policy.overload_blacklist.vehicle_violations_gt
        if limit is None:
            return None
        return _WindowTest(policy.overload_blacklist.window_days, limit + 1, _always)

    return _count_entry(candidates, test_for, book, VEHICLE_OVERLOAD, f"{_MOT_2017} item 1")


def _driver_overload(
    subject_input: RuleInput, by_time: Sequence[ViolationFact], book: PolicyBook
) -> ListEntry | None:
    if subject_input.subject.kind is not SubjectKind.DRIVER:
        return None
    candidates = _of(
        by_time, (ViolationRole.DRIVER, ViolationRole.PENALISED), ViolationKind.OVERLOAD
    )

    def test_for(policy: Policy) -> _WindowTest | None:
        limit = policy.overload_blacklist.driver_violations_gt
        if limit is None:
            return None
        return _WindowTest(policy.overload_blacklist.window_days, limit + 1, _always)

    return _count_entry(candidates, test_for, book, DRIVER_OVERLOAD, f"{_MOT_2017} item 2")


def _count_entry(
    candidates: Sequence[ViolationFact],
    test_for: Callable[[Policy], _WindowTest | None],
    book: PolicyBook,
    rule_id: str,
    item: str,
) -> ListEntry | None:
    support = _supporting_windows(candidates, test_for, book)
    if support is None:
        return None
    test = test_for(support.first_policy)
    limit = "?" if test is None else test.min_count - 1
    reason = (
        f"{support.first_count} overload violations within {support.first_window_days} days, "
        f"more than {limit} ({_ARTICLE_66}; {item})"
    )
    return _entry(ListName.BLACKLIST, rule_id, support, reason)


def _instigator_repeat(
    subject_input: RuleInput, by_time: Sequence[ViolationFact], book: PolicyBook
) -> ListEntry | None:
    """Anyone penalised for instigation, whatever kind of file it is."""
    candidates = _of(by_time, (ViolationRole.PENALISED,), ViolationKind.INSTIGATION)

    def test_for(policy: Policy) -> _WindowTest | None:
        least = policy.overload_blacklist.instigator_penalties_in_window_gte
        if least is None:
            return None
        return _WindowTest(policy.overload_blacklist.window_days, least, _always)

    support = _supporting_windows(candidates, test_for, book)
    if support is None:
        return None
    reason = (
        f"{support.first_count} penalties for instigating overloading within "
        f"{support.first_window_days} days ({_MOT_2017} item 5)"
    )
    return _entry(ListName.BLACKLIST, INSTIGATOR_REPEAT, support, reason)


def _repeated_minor(
    subject_input: RuleInput, by_time: Sequence[ViolationFact], book: PolicyBook
) -> ListEntry | None:
    candidates = list(distinct_violations(by_time, book.own_roles))

    def test_for(policy: Policy) -> _WindowTest | None:
        watch = policy.watchlist
        if watch.violations_in_window_gte is None:
            return None
        own = policy.scoring.counted_roles

        def counts(violation: ViolationFact) -> bool:
            return violation.kind in watch.counted_kinds and violation.role in own

        return _WindowTest(watch.window_days, watch.violations_in_window_gte, counts)

    support = _supporting_windows(candidates, test_for, book)
    if support is None:
        return None
    reason = (
        f"{support.first_count} minor violations within {support.first_window_days} days "
        "(重点关注名单, 交政研发〔2018〕181号)"
    )
    return _entry(ListName.WATCHLIST, REPEATED_MINOR, support, reason)


# --- single-violation rules and the carrier's fleet ratio --------------------------------------

# A datetime has microsecond resolution: (a, b] holds the same instants as [a + 1µs, b + 1µs).
_INSTANT = timedelta(microseconds=1)


def _carrier_fleet_ratio(
    subject_input: RuleInput, by_time: Sequence[ViolationFact], book: PolicyBook
) -> ListEntry | None:
    """第66条 / 2017 通知 item 3.

    With a suspension order required, the window is the one that ends with the day of the
    order: the order is the consequence of the year before it. Without, a window ends at each
    fleet violation. The fleet is every vehicle a certificate ties to the carrier when the window
    is judged, plus the overloading vehicles themselves (a vehicle whose certificate is unknown
    or already revoked was still one of the carrier's when it overloaded).
    """
    subject = subject_input.subject
    if subject.kind is not SubjectKind.CARRIER:
        return None
    fleet_violations = _of(by_time, (ViolationRole.FLEET,), ViolationKind.OVERLOAD)
    if not fleet_violations:
        return None
    windows = [
        window
        for order in distinct_violations(by_time, (ViolationRole.PENALISED,))
        if PenaltyCategory.SUSPENSION_ORDER in order.penalty_categories
        and (window := _order_window(order, book)) is not None
    ]
    windows += [
        window
        for violation in fleet_violations
        if (window := _violation_window(violation, book)) is not None
    ]
    ties = [tie for tie in subject_input.fleet if tie.carrier == subject]
    evidence: dict[str, ViolationFact] = {}
    first: tuple[_FleetWindow, int, int] | None = None
    for window in sorted(windows, key=lambda w: (w.judged_at, w.order is None)):
        members = [v for v in fleet_violations if window.start <= v.occurred_at < window.stop]
        overloading = {v.vehicle_key for v in members if v.vehicle_key is not None}
        fleet = {tie.vehicle_key for tie in ties if tie.ties_at(window.judged_at)} | overloading
        if not overloading or Decimal(len(overloading)) <= window.ratio * len(fleet):
            continue
        evidence.update((m.violation_id, m) for m in members)
        if window.order is not None:
            evidence[window.order.violation_id] = window.order
        if first is None:
            first = (window, len(overloading), len(fleet))
    if first is None:
        return None
    window, overloading_count, fleet_size = first
    support = _Support(
        first_end=window.judged_at,
        first_policy=window.policy,
        first_count=overloading_count,
        first_window_days=window.policy.overload_blacklist.window_days,
        evidence=tuple(sorted(evidence.values(), key=lambda v: (v.occurred_at, v.violation_id))),
    )
    ordered = " and was ordered to suspend operations" if window.order is not None else ""
    reason = (
        f"{overloading_count} of {fleet_size} fleet vehicles overloaded within "
        f"{support.first_window_days} days, more than {window.ratio:%} of the fleet{ordered} "
        f"({_ARTICLE_66}; {_MOT_2017} item 3)"
    )
    return _entry(ListName.BLACKLIST, CARRIER_FLEET_RATIO, support, reason)


@dataclass(frozen=True, slots=True)
class _FleetWindow:
    judged_at: datetime
    """The fleet is counted, and the policy chosen, at this instant."""
    start: datetime
    """First instant in the window."""
    stop: datetime
    """First instant after the window."""
    policy: Policy
    ratio: Decimal
    order: ViolationFact | None
    """The suspension order the window ends with, if the policy requires one."""


def _order_window(order: ViolationFact, book: PolicyBook) -> _FleetWindow | None:
    policy = book.judging_policy(order.occurred_at)
    rule = policy.overload_blacklist
    ratio = rule.carrier_overloading_vehicle_ratio_gt
    if ratio is None or not rule.carrier_requires_suspension_order:
        return None
    # A decision's time is the start of its day; the window takes in the whole day.
    stop = order.occurred_at + timedelta(days=1)
    start = stop - timedelta(days=rule.window_days)
    return _FleetWindow(order.occurred_at, start, stop, policy, ratio, order)


def _violation_window(violation: ViolationFact, book: PolicyBook) -> _FleetWindow | None:
    policy = book.judging_policy(violation.occurred_at)
    rule = policy.overload_blacklist
    ratio = rule.carrier_overloading_vehicle_ratio_gt
    if ratio is None or rule.carrier_requires_suspension_order:
        return None
    end = violation.occurred_at
    start = end - timedelta(days=rule.window_days) + _INSTANT
    return _FleetWindow(end, start, end + _INSTANT, policy, ratio, None)


def _instigator_fine(
    subject_input: RuleInput, by_time: Sequence[ViolationFact], book: PolicyBook
) -> ListEntry | None:
    """2017 通知 item 5: one instigation fine of at least the policy's amount ("以上")."""
    hits: list[tuple[ViolationFact, Policy, Decimal]] = []
    for violation in _of(by_time, (ViolationRole.PENALISED,), ViolationKind.INSTIGATION):
        policy = book.judging_policy(violation.occurred_at)
        least = policy.overload_blacklist.instigator_fine_yuan_gte
        if least is not None and violation.fine_amount_yuan >= least:
            hits.append((violation, policy, least))
    if not hits:
        return None
    violation, policy, least = hits[0]
    support = _Support(violation.occurred_at, policy, 1, 0, tuple(hit[0] for hit in hits))
    reason = (
        f"fined {violation.fine_amount_yuan} yuan for instigating overloading, "
        f"at least {least} ({_MOT_2017} item 5)"
    )
    return _entry(ListName.BLACKLIST, INSTIGATOR_FINE, support, reason)


def _gross_overweight(
    subject_input: RuleInput, by_time: Sequence[ViolationFact], book: PolicyBook
) -> ListEntry | None:
    """Optional: one violation at least the policy's ratio over the limit (no source found)."""
    subject = subject_input.subject
    roles = (ViolationRole.VEHICLE, ViolationRole.DRIVER, ViolationRole.PENALISED)
    hits: list[tuple[ViolationFact, Policy, Decimal]] = []
    for violation in _of(by_time, roles, ViolationKind.OVERLOAD):
        gross, limit = violation.gross_weight_kg, violation.legal_limit_kg
        if gross is None or limit is None:
            continue
        policy = book.judging_policy(violation.occurred_at)
        rule = policy.overload_blacklist
        ratio = rule.gross_overweight_ratio_gte
        if ratio is None or subject.kind not in rule.gross_overweight_subject_kinds:
            continue
        if Decimal(gross) >= limit * (1 + ratio):
            hits.append((violation, policy, ratio))
    if not hits:
        return None
    violation, policy, ratio = hits[0]
    support = _Support(violation.occurred_at, policy, 1, 0, tuple(hit[0] for hit in hits))
    reason = (
        f"gross weight {violation.gross_weight_kg} kg against a limit of "
        f"{violation.legal_limit_kg} kg, at least {ratio:%} over (optional rule, no source)"
    )
    return _entry(ListName.BLACKLIST, GROSS_OVERWEIGHT, support, reason)


# --- red list -----------------------------------------------------------------------------------


def _clean_top_grade(
    subject_input: RuleInput,
    by_time: Sequence[ViolationFact],
    book: PolicyBook,
    entries: Mapping[str, ListEntry],
) -> ListEntry | None:
    """守信激励: top grade, no disqualifying violation lately, known long enough, not blacklisted.

    Judged at the file's clock. ``since`` is when the clean period and the history were both
    first met, as far as the held facts show, so it does not depend on when a tick came.
    """
    clock, history_start = subject_input.clock, subject_input.history_start
    if clock is None or history_start is None:
        return None
    policy = book.judging_policy(clock)
    red = policy.red_list
    if subject_input.subject.kind not in red.subject_kinds:
        return None
    if any(entry.list_name is ListName.BLACKLIST for entry in entries.values()):
        return None
    history_met = history_start + timedelta(days=red.min_history_days)
    if history_met > clock:
        return None
    clean = timedelta(days=red.clean_days)
    disqualifying = [
        v.occurred_at
        for v in distinct_violations(by_time, policy.scoring.counted_roles)
        if v.kind in red.disqualifying_kinds and v.occurred_at <= clock
    ]
    if disqualifying and max(disqualifying) > clock - clean:
        return None
    score = score_at(by_time, clock, book)
    grade = policy.scoring.grade_of(score)
    if grade.rank > red.min_grade.rank:
        return None
    since = max([history_met] + [last + clean for last in disqualifying[-1:]])
    reason = (
        f"grade {grade.value} (score {score}), no violation in {red.clean_days} days, "
        f"known for {red.min_history_days} days or more (守信激励, RULES.md §6)"
    )
    return ListEntry(ListName.RED_LIST, CLEAN_TOP_GRADE, policy.version, since, (), (), reason)

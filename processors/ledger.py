"""Credit files (信用档案): what one subject's file holds, and how one fact changes it.

:func:`apply` is the whole rule engine for one file: it takes a file and a fact and returns an
:class:`Outcome` with the new file, the list triggers, enforcement alerts, and the facts to
forward to other files. It does no I/O; the stream keeps the files in a table, applies each fact
to its file and routes the forwards.

**What a vehicle file decides.** It holds the vehicle's confirmed over-limit weighings, its
penalty decisions (highest revision of each), its oversize permits and its operating
certificates, and derives the vehicle's *cases* from them:

- weighings and penalties that share a detection id are one case (a weighing a penalty confirms
  counts once); the case is keyed by its smallest detection id, so a penalty that arrives after
  its weighing updates the case instead of adding one;
- a case with a live overload penalty is an overload violation dated by its earliest decision
  (RULES.md §2: the window is keyed on the decision date);
- a weighing no penalty refers to is a violation at its weighing time, unless an oversize permit
  covers that instant; once a penalty refers to it, the penalty decides: revoke the penalty (or
  re-qualify it as another violation) and the weighing no longer counts either;
- an instigation penalty is its own case, for the instigator only.

The vehicle forwards each case to the files that answer for it: the driver (``DRIVER``), the
carrier (``FLEET``), the loading source (``LOADED``) and every penalised subject
(``PENALISED``). Forwards are the difference between what the vehicle asserted before and after
the fact, so a revocation or a change of driver becomes a :class:`~processors.facts.RetractionFact`
for whoever held the case. Only vehicle files forward, and never to a vehicle, so forwarding
stops after one hop.

**Order, duplicates, lateness.** Everything a file holds is a function of the set of facts it
was given: the highest revision of each decision wins (ties by event id), a forwarded
violation is replaced by the sender's latest word on it, and list entries are re-derived from
the held facts after every change (:mod:`processors.lists`). A fact that changes nothing, such
as a redelivery, is flagged ``duplicate``; a direct event whose id is among the file's most
recent ids is not looked at again. A fact older than the newest fact of its file by more than
the policy's late-event horizon is *stale*: counted on the file and flagged, never judged, since
a year-old event cannot meet the facts it would have shared a window with once those are pruned.
That makes the order guarantee precise: any arrival order of a set of facts whose times span
less than the late-event horizon gives the same files.

**Bounded state.** Facts are pruned once they are older than the retention (late-event horizon
plus longest window) behind the file's newest fact, unless they support a standing list entry.
Held facts dedup by their identity (detection id, decision number and revision); besides them
the file remembers only its most recent event ids (by event time), and a vehicle its most
recent drivers and carriers.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar, assert_never

from processors.disclosure import PublicationRequest
from processors.facts import (
    DetectionFact,
    Fact,
    FleetFact,
    ForwardedBatch,
    ForwardedChange,
    LicenceFact,
    ObjectionFact,
    PenaltyFact,
    PermitFact,
    RepairFact,
    RetractionFact,
    ReviewFact,
    ViolationBasis,
    ViolationFact,
    ViolationRole,
    fact_event_ids,
    fact_time,
    start_of_day,
)
from processors.lifecycle import (
    AuditRecord,
    EntryRecord,
    LifecycleState,
    ObjectionRecord,
    ObjectionStatus,
    RepairRecord,
    Step,
    on_objection,
    on_repair,
    reconcile,
    set_aside,
)
from processors.lists import (
    VEHICLE_OVERLOAD,
    AlertKind,
    EnforcementAlert,
    ListEntry,
    ListName,
    ListTrigger,
    RuleInput,
    evaluate,
    list_changes,
    vehicle_overloads_in_window,
)
from processors.model import (
    ChangeType,
    LicenceStatus,
    PenaltyCategory,
    SubjectKind,
    SubjectRef,
    ViolationCode,
)
from processors.policy import Policy, PolicyBook
from processors.workdays import CHINESE_CALENDAR, WorkdayCalendar

__all__ = [
    "RECENT_EVENT_IDS_KEPT",
    "RECENT_PARTIES_KEPT",
    "CreditFile",
    "Outcome",
    "apply",
    "certified_carrier",
    "held_violations",
    "new_file",
    "rule_input",
]

RECENT_EVENT_IDS_KEPT = 32
"""Most recent direct event ids (by event time) a file remembers besides those of held facts."""
RECENT_PARTIES_KEPT = 5
"""Most recent drivers, and carriers, a vehicle file remembers."""


def _no_entries() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class CreditFile:
    """One subject's credit file. Treat every mapping as read-only; :func:`apply` copies."""

    subject: SubjectRef
    """Whose file."""
    clock: datetime | None = None
    """Newest event time of a fact routed straight to this file."""
    first_seen: datetime | None = None
    """Earliest event time of a fact routed straight here, or of a fact pruned from here."""
    detections: Mapping[str, DetectionFact] = field(default_factory=_no_entries)
    """Confirmed over-limit weighings, by detection id (vehicle files)."""
    penalties: Mapping[str, PenaltyFact] = field(default_factory=_no_entries)
    """Highest revision of each decision routed here, by decision number (revoked ones too)."""
    permits: Mapping[str, PermitFact] = field(default_factory=_no_entries)
    """Oversize permits, highest revision, by licence number (vehicle files)."""
    certificates: Mapping[str, FleetFact] = field(default_factory=_no_entries)
    """Vehicle operating certificates, by licence number (vehicle and carrier files)."""
    received: Mapping[str, ViolationFact] = field(default_factory=_no_entries)
    """Violations forwarded by vehicle files, by ``role|violation id``."""
    entries: Mapping[str, ListEntry] = field(default_factory=_no_entries)
    """Standing list entries with their evidence, by ``list:rule``."""
    recent_event_ids: Mapping[str, datetime] = field(default_factory=_no_entries)
    """The most recent direct event ids, with their event times."""
    recent_drivers: Mapping[str, datetime] = field(default_factory=_no_entries)
    """Vehicle files: the most recent drivers, with when each last drove."""
    recent_carriers: Mapping[str, datetime] = field(default_factory=_no_entries)
    """Vehicle files: the most recent carriers named by a weighing or decision."""
    stale_events: int = 0
    """Events refused because they were older than the late-event horizon."""
    entry_records: Mapping[str, EntryRecord] = field(default_factory=_no_entries)
    """The life of each list entry (proposed, published, ...), by ``list:rule``."""
    objections: Mapping[str, ObjectionRecord] = field(default_factory=_no_entries)
    """Objections against the file's entries and decisions, by objection id."""
    repairs: Mapping[str, RepairRecord] = field(default_factory=_no_entries)
    """Decided credit repair applications, by application id."""

    @property
    def lifecycle(self) -> LifecycleState:
        """The lifecycle records together."""
        return LifecycleState(self.entry_records, self.objections, self.repairs)


def new_file(subject: SubjectRef) -> CreditFile:
    """An empty file for ``subject``."""
    return CreditFile(subject)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What applying one fact to one file did."""

    file: CreditFile
    """The new file."""
    triggers: tuple[ListTrigger, ...] = ()
    """List changes, ADDs before REMOVEs."""
    alerts: tuple[EnforcementAlert, ...] = ()
    """Alerts for enforcement."""
    forwards: tuple[tuple[SubjectRef, Fact], ...] = ()
    """Facts for other files (never a vehicle's): the next hop."""
    duplicate: bool = False
    """The fact was already known: nothing was judged."""
    stale: bool = False
    """The fact was older than the late-event horizon: counted, not judged."""
    audit: tuple[AuditRecord, ...] = ()
    """State changes of entries, objections and repairs (the audit trail)."""
    publications: tuple[PublicationRequest, ...] = ()
    """Publications and withdrawals of list entries and set-aside decisions."""


def apply(
    file: CreditFile,
    fact: Fact,
    policy_book: PolicyBook,
    now: datetime,
    calendar: WorkdayCalendar = CHINESE_CALENDAR,
) -> Outcome:
    """Apply ``fact`` to ``file``.

    The list rules run on event time; ``now`` stamps the triggers and, with the file's clock,
    times the lifecycle (:mod:`processors.lifecycle`), whose working days ``calendar`` counts.
    """
    match fact:
        case ObjectionFact():
            return _apply_objection(file, fact, policy_book, now, calendar)
        case RepairFact():
            return _apply_repair(file, fact, policy_book, now, calendar)
        case _:
            outcome = _judge(file, fact, policy_book, now)
    if outcome.file is file and not isinstance(fact, ReviewFact):
        return outcome
    return _run_lifecycle(outcome, policy_book, now, calendar)


def _judge(file: CreditFile, fact: Fact, policy_book: PolicyBook, now: datetime) -> Outcome:
    match fact:
        case DetectionFact():
            return _apply_detection(file, fact, policy_book, now)
        case PenaltyFact():
            return _apply_penalty(file, fact, policy_book, now)
        case PermitFact():
            return _apply_permit(file, fact, policy_book, now)
        case FleetFact() if file.subject.kind is SubjectKind.VEHICLE:
            return _apply_certificate(file, fact, policy_book, now)
        case LicenceFact() | ReviewFact():
            return _apply_tick(file, fact, policy_book, now)
        case ViolationFact() | RetractionFact() | FleetFact():
            return _apply_forwarded(file, (fact,), fact, policy_book, now)
        case ForwardedBatch():
            return _apply_forwarded(file, fact.changes, fact, policy_book, now)
        case ObjectionFact() | RepairFact():
            raise AssertionError("lifecycle facts are applied by apply()")
        case _:
            assert_never(fact)


def lifecycle_time(file: CreditFile, now: datetime) -> datetime:
    """When the lifecycle judges: the processing time, or the file's clock once that is later
    (a clock tick from a clock the caller controls moves it)."""
    return now if file.clock is None or file.clock < now else file.clock


def _run_lifecycle(
    outcome: Outcome, book: PolicyBook, now: datetime, calendar: WorkdayCalendar
) -> Outcome:
    file = outcome.file
    if not (file.entries or file.entry_records or file.objections):
        return outcome  # most files: nothing listed, nothing disputed
    step = reconcile(
        file.subject, file.lifecycle, file.entries, lifecycle_time(file, now), book, calendar
    )
    if step.state is not file.lifecycle:
        file = _with_lifecycle(file, step.state, book)
    return replace(
        outcome,
        file=file,
        audit=outcome.audit + step.audit,
        publications=outcome.publications + step.publications,
    )


def _with_lifecycle(file: CreditFile, state: LifecycleState, book: PolicyBook) -> CreditFile:
    """``file`` with ``state``, less the ended records older than the retention."""
    clock = _effective_clock(file)
    entries, objections, repairs = state.entries, state.objections, state.repairs
    if clock is not None:
        cutoff = clock - book.retention
        held = set(file.penalties)
        entries = _kept(entries, lambda r: r.stage.is_live or r.stage_since > cutoff)
        objections = _kept(
            objections,
            lambda o: (
                o.status.is_open
                or (o.resolved_at is not None and o.resolved_at > cutoff)
                or (o.status is ObjectionStatus.UPHELD and o.decision_number in held)
            ),
        )
        repairs = _kept(
            repairs, lambda r: r.decided_at > cutoff or (r.approved and r.decision_number in held)
        )
    return _evolve(file, entry_records=entries, objections=objections, repairs=repairs)


def _kept(mapping: Mapping[str, _V], keep: Callable[[_V], bool]) -> Mapping[str, _V]:
    if all(keep(value) for value in mapping.values()):
        return mapping
    return MappingProxyType({key: value for key, value in mapping.items() if keep(value)})


def _apply_objection(
    file: CreditFile,
    fact: ObjectionFact,
    book: PolicyBook,
    now: datetime,
    calendar: WorkdayCalendar,
) -> Outcome:
    if fact.event_id in file.recent_event_ids:
        return Outcome(file, duplicate=True)
    observed = _observe(file, fact.event_id, fact.occurred_at)
    at = lifecycle_time(observed, now)
    step = on_objection(observed.subject, observed.lifecycle, fact, at, book, calendar)
    return _after_lifecycle_step(file, observed, step, fact, book, now, calendar)


def _apply_repair(
    file: CreditFile, fact: RepairFact, book: PolicyBook, now: datetime, calendar: WorkdayCalendar
) -> Outcome:
    if fact.event_id in file.recent_event_ids:
        return Outcome(file, duplicate=True)
    observed = _observe(file, fact.event_id, fact.applied_at)
    at = lifecycle_time(observed, now)
    penalty = file.penalties.get(fact.decision_number)
    step = on_repair(observed.subject, observed.lifecycle, fact, penalty, at, book, calendar)
    return _after_lifecycle_step(file, observed, step, fact, book, now, calendar)


def _after_lifecycle_step(
    before: CreditFile,
    observed: CreditFile,
    step: Step,
    fact: Fact,
    book: PolicyBook,
    now: datetime,
    calendar: WorkdayCalendar,
) -> Outcome:
    """Re-judge the file when the step set a decision aside, then reconcile its entries."""
    changed = _with_lifecycle(observed, step.state, book)
    if set_aside(step.state) != set_aside(before.lifecycle):
        outcome = _reevaluate(before, changed, fact, book, now)
    else:
        outcome = Outcome(changed)
    outcome = replace(outcome, audit=step.audit, publications=step.publications)
    return _run_lifecycle(outcome, book, now, calendar)


def held_violations(file: CreditFile) -> tuple[ViolationFact, ...]:
    """Every violation the file's subject answers for, in every role it holds one."""
    return rule_input(file).violations


def rule_input(file: CreditFile) -> RuleInput:
    """What the list rules see of a file."""
    return _rule_input(file, _analyse(file))


# --- first-hop facts ----------------------------------------------------------------------------


def _apply_detection(
    file: CreditFile, fact: DetectionFact, book: PolicyBook, now: datetime
) -> Outcome:
    if fact.event_id in file.recent_event_ids:
        return Outcome(file, duplicate=True)
    at = fact.detected_at
    if _is_stale(file, at, book):
        return _stale(file, fact.event_id, at)
    observed = _observe(file, fact.event_id, at, fact.driver, fact.carrier)
    policy = book.in_force_at(at)
    if not policy.detection.is_over_limit(fact.gross_weight_kg, fact.legal_limit_kg):
        return _settle(file, observed, fact, book, now)
    if fact.station_type not in policy.detection.confirmed_station_types:
        settled = _settle(file, observed, fact, book, now)
        alert = _imminent_alert(settled.file, fact, policy, now)
        return settled if alert is None else replace(settled, alerts=(alert,))
    held = file.detections.get(fact.detection_id)
    if held is not None and held.event_id >= fact.event_id:
        # The same weighing again (a resend under another id counts once; the larger id wins).
        return _settle(file, observed, fact, book, now, duplicate=True)
    changed = _evolve(observed, detections=_with(observed.detections, fact.detection_id, fact))
    return _reevaluate(file, changed, fact, book, now)


def _apply_penalty(file: CreditFile, fact: PenaltyFact, book: PolicyBook, now: datetime) -> Outcome:
    if fact.event_id in file.recent_event_ids:
        return Outcome(file, duplicate=True)
    at = start_of_day(fact.decision_date)
    held = file.penalties.get(fact.decision_number)
    if held is None and _is_stale(file, at, book):
        return _stale(file, fact.event_id, at)
    observed = _observe(file, fact.event_id, at, fact.driver, fact.carrier)
    if held is not None and (held.revision, held.event_id) >= (fact.revision, fact.event_id):
        # An older revision, or this one again: the held revision already says more.
        return _settle(file, observed, fact, book, now, duplicate=held.event_id == fact.event_id)
    changed = _evolve(observed, penalties=_with(observed.penalties, fact.decision_number, fact))
    return _reevaluate(file, changed, fact, book, now)


def _apply_permit(file: CreditFile, fact: PermitFact, book: PolicyBook, now: datetime) -> Outcome:
    # A permit is state, not an event: however old, it may still cover a held weighing.
    if fact.event_id in file.recent_event_ids:
        return Outcome(file, duplicate=True)
    observed = _observe(file, fact.event_id, start_of_day(fact.decision_date))
    held = file.permits.get(fact.licence_number)
    if held is not None and (held.revision, held.event_id) >= (fact.revision, fact.event_id):
        return _settle(file, observed, fact, book, now, duplicate=held.event_id == fact.event_id)
    changed = replace(observed, permits=_with(observed.permits, fact.licence_number, fact))
    return _reevaluate(file, changed, fact, book, now)


def _apply_certificate(
    file: CreditFile, fact: FleetFact, book: PolicyBook, now: datetime
) -> Outcome:
    if fact.event_id in file.recent_event_ids:
        return Outcome(file, duplicate=True)
    observed = _observe(file, fact.event_id, start_of_day(fact.decision_date))
    held = file.certificates.get(fact.licence_number)
    merged = fact if held is None else held.merged_with(fact)
    if merged == held:
        return _settle(file, observed, fact, book, now, duplicate=held.event_id == fact.event_id)
    changed = replace(
        observed, certificates=_with(observed.certificates, fact.licence_number, merged)
    )
    return _reevaluate(file, changed, fact, book, now)


def _apply_tick(
    file: CreditFile, fact: LicenceFact | ReviewFact, book: PolicyBook, now: datetime
) -> Outcome:
    """A licence (history) or a review tick (time passing): only the red list can change."""
    if fact.event_id in file.recent_event_ids:
        return Outcome(file, duplicate=True)
    observed = _observe(file, fact.event_id, fact_time(fact))
    if isinstance(fact, LicenceFact):
        licensed_since = start_of_day(fact.valid_from)
        if observed.first_seen is None or licensed_since < observed.first_seen:
            observed = replace(observed, first_seen=licensed_since)
    return _reevaluate(file, observed, fact, book, now, held_changed=False)


_VEHICLE_BLACKLISTED = f"{ListName.BLACKLIST}:{VEHICLE_OVERLOAD}"


def _imminent_alert(
    file: CreditFile, fact: DetectionFact, policy: Policy, now: datetime
) -> EnforcementAlert | None:
    """A pre-check is never a violation, but a vehicle at the threshold is worth stopping."""
    threshold = policy.overload_blacklist.vehicle_violations_gt
    at = fact.detected_at
    if (
        threshold is None
        or file.subject.kind is not SubjectKind.VEHICLE
        or _VEHICLE_BLACKLISTED in file.entries
        or any(permit.covers(at) for permit in file.permits.values())
    ):
        return None
    own = [case.unit for case in _cases(_analyse(file)) if case.counts_for_holder]
    in_window = vehicle_overloads_in_window(own, at, policy)
    if len(in_window) < threshold:
        return None
    return EnforcementAlert(
        kind=AlertKind.IMMINENT_BLACKLIST,
        subject=file.subject,
        rule_id=VEHICLE_OVERLOAD,
        policy_version=policy.version,
        violations_in_window=len(in_window),
        threshold=threshold,
        detection_event_id=fact.event_id,
        detection_id=fact.detection_id,
        station_id=fact.station_id,
        detected_at=at,
        evidence_event_ids=tuple(sorted({e for v in in_window for e in v.source_event_ids})),
        reason=(
            f"over the limit at a pre-check with {len(in_window)} overload violations in "
            f"{policy.overload_blacklist.window_days} days: one more confirmed violation lists "
            "the vehicle (公路安全保护条例 第66条)"
        ),
        recorded_at=now,
    )


# --- forwarded facts ----------------------------------------------------------------------------


def _apply_forwarded(
    file: CreditFile,
    changes: Iterable[ForwardedChange],
    fact: Fact,
    book: PolicyBook,
    now: datetime,
) -> Outcome:
    received = file.received
    certificates = file.certificates
    stale = False
    for change in changes:
        match change:
            case ViolationFact():
                held = received.get(change.key)
                if held == change:
                    continue
                if held is None and _is_stale(file, change.occurred_at, book):
                    stale = True
                    continue
                received = _with(received, change.key, change)
            case RetractionFact():
                if change.key in received:
                    received = _without(received, change.key)
            case FleetFact():
                held_certificate = certificates.get(change.licence_number)
                merged = (
                    change if held_certificate is None else held_certificate.merged_with(change)
                )
                if merged != held_certificate:
                    certificates = _with(certificates, change.licence_number, merged)
            case _:
                assert_never(change)
    stale_events = file.stale_events + int(stale)
    if received is file.received and certificates is file.certificates:
        if stale:
            return Outcome(_evolve(file, stale_events=stale_events), stale=True)
        return Outcome(file, duplicate=True)
    changed = _evolve(file, received=received, certificates=certificates, stale_events=stale_events)
    outcome = _reevaluate(file, changed, fact, book, now)
    return replace(outcome, stale=stale)


# --- re-judging ---------------------------------------------------------------------------------


def _settle(
    before: CreditFile,
    observed: CreditFile,
    fact: Fact,
    book: PolicyBook,
    now: datetime,
    *,
    duplicate: bool = False,
) -> Outcome:
    """Finish a fact that changed no held fact, only the clock, history or dedup memory.

    The red list is the one rule that depends on the clock and the history, so for a subject
    it can list, entries are re-judged: otherwise the last fact to arrive would decide whether
    they were, and the result would depend on the arrival order.
    """
    moved = observed.clock != before.clock or observed.first_seen != before.first_seen
    if moved and before.subject.kind in book.red_list_kinds:
        outcome = _reevaluate(before, observed, fact, book, now, held_changed=False)
        return replace(outcome, duplicate=duplicate)
    return Outcome(_tidy(observed, book), duplicate=duplicate)


def _reevaluate(
    before: CreditFile,
    after: CreditFile,
    fact: Fact,
    book: PolicyBook,
    now: datetime,
    *,
    held_changed: bool = True,
) -> Outcome:
    """Re-derive entries from the held facts; diff them, and the vehicle's forwards."""
    memo: dict[tuple[int, ...], _Component] = {}
    components = _analyse(after, memo)
    entries = evaluate(_rule_input(after, components), book)
    cause_time, cause_ids = fact_time(fact), fact_event_ids(fact)
    triggers = list_changes(
        after.subject,
        before.entries,
        entries,
        cause_time=cause_time,
        cause_event_ids=cause_ids,
        recorded_at=now,
    )
    forwards: tuple[tuple[SubjectRef, Fact], ...] = ()
    if held_changed and after.subject.kind is SubjectKind.VEHICLE:
        same_context = before.permits is after.permits and before.certificates is after.certificates
        forwards = _forward_changes(
            _outgoing(before, _analyse(before, memo if same_context else None)),
            _outgoing(after, components),
            cause_time,
            cause_ids,
        )
    if entries != after.entries:
        after = _evolve(after, entries=MappingProxyType(entries))
    return Outcome(_prune(after, components, book), triggers, (), forwards)


def _rule_input(file: CreditFile, components: tuple[_Component, ...]) -> RuleInput:
    own = [case.unit for case in _cases(components) if case.counts_for_holder]
    violations = (*own, *file.received.values())
    starts = [v.occurred_at for v in violations]
    starts += [start_of_day(c.valid_from) for c in file.certificates.values()]
    if file.first_seen is not None:
        starts.append(file.first_seen)
    fleet = tuple(file.certificates.values()) if file.subject.kind is SubjectKind.CARRIER else ()
    return RuleInput(
        subject=file.subject,
        violations=violations,
        fleet=fleet,
        clock=_effective_clock(file),
        history_start=min(starts, default=None),
    )


# --- cases --------------------------------------------------------------------------------------


class _Case(NamedTuple):
    unit: ViolationFact
    """The violation as the holder answers for it."""
    counts_for_holder: bool
    """An instigation case on a vehicle is the instigator's, not the vehicle's."""
    targets: tuple[tuple[SubjectRef, ViolationRole], ...]
    """Who else answers for it, and how (vehicle files only)."""


class _Component(NamedTuple):
    """Held weighings and decisions linked by detection ids: they stand or fall together."""

    nodes: tuple[str, ...]
    """``d:<detection id>`` and ``p:<decision number>``, sorted."""
    detection_ids: tuple[str, ...]
    decision_numbers: tuple[str, ...]
    earliest: datetime
    latest: datetime
    cases: tuple[_Case, ...]


def _cases(components: Iterable[_Component]) -> list[_Case]:
    return [case for component in components for case in component.cases]


class _AnalysedFiles:
    """The last files analysed, by identity, with their components.

    A file's analysis is a pure function of the (frozen) file, and the same file is analysed
    more than once: when a fact is applied, by the snapshot written after the batch, by the
    next fact's ``before``. Bounded; the oldest go first.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._files: OrderedDict[int, tuple[CreditFile, tuple[_Component, ...]]] = OrderedDict()

    def get(self, file: CreditFile) -> tuple[_Component, ...] | None:
        hit = self._files.get(id(file))
        return hit[1] if hit is not None and hit[0] is file else None

    def put(self, file: CreditFile, components: tuple[_Component, ...]) -> None:
        self._files[id(file)] = (file, components)  # holds the file: its id stays its own
        if len(self._files) > self._limit:
            self._files.popitem(last=False)


_ANALYSED = _AnalysedFiles(4096)


def _analyse(
    file: CreditFile, memo: dict[tuple[int, ...], _Component] | None = None
) -> tuple[_Component, ...]:
    """Group the held weighings and decisions into linked components, and derive their cases.

    ``memo`` shares components between two files of one :func:`apply` that hold the same
    permits and certificates: before and after a fact, all but one component are the same.
    """
    analysed = _ANALYSED.get(file)
    if analysed is None:
        analysed = _analyse_file(file, memo)
        _ANALYSED.put(file, analysed)
    return analysed


def _analyse_file(
    file: CreditFile, memo: dict[tuple[int, ...], _Component] | None
) -> tuple[_Component, ...]:
    detections, penalties = file.detections, file.penalties
    if not detections and not penalties:
        return ()
    # Repaired decisions, and those an upheld objection struck, count as if revoked.
    aside = set_aside(file.lifecycle) if file.repairs or file.objections else frozenset()
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for detection_id in detections:
        parent["d:" + detection_id] = "d:" + detection_id
    for number, penalty in penalties.items():
        node = "p:" + number
        parent[node] = node
        if penalty.code is ViolationCode.INSTIGATE_OVERLOAD:
            continue  # the instigator's case: it neither confirms nor overrides a weighing
        for detection_id in penalty.related_detection_ids:
            linked = "d:" + detection_id
            parent.setdefault(linked, linked)
            root, other = find(node), find(linked)
            if root != other:
                parent[max(root, other)] = min(root, other)
    groups: dict[str, list[str]] = {}
    for node in parent:
        groups.setdefault(find(node), []).append(node)
    components = []
    for nodes in groups.values():
        nodes.sort()
        if memo is None:
            components.append(_component(file, nodes, aside))
            continue
        # The same records (the same objects) in a group make the same component.
        key = tuple(
            id(detections.get(node[2:]) if node[0] == "d" else penalties[node[2:]])
            for node in nodes
        ) + tuple(-1 for node in nodes if node[2:] in aside)
        component = memo.get(key)
        if component is None or component.nodes != tuple(nodes):
            component = memo[key] = _component(file, nodes, aside)
        components.append(component)
    return tuple(sorted(components, key=lambda c: (c.earliest, c.decision_numbers)))


def _component(file: CreditFile, nodes: list[str], aside: frozenset[str]) -> _Component:
    # Weighings were judged against the policy in force when they were made, on arrival.
    detection_ids = [node[2:] for node in nodes if node.startswith("d:")]
    held_detections = [file.detections[d] for d in detection_ids if d in file.detections]
    penalties = [file.penalties[node[2:]] for node in nodes if node.startswith("p:")]
    times = [d.detected_at for d in held_detections]
    times += [start_of_day(p.decision_date) for p in penalties]
    live = [
        p
        for p in penalties
        if p.change_type is not ChangeType.REVOKED and p.decision_number not in aside
    ]
    cases: list[_Case] = []
    overload = [p for p in live if p.code is ViolationCode.OVERLOAD_TRANSPORT]
    if overload:
        cases.append(_overload_case(file, detection_ids, held_detections, overload))
    elif not penalties and held_detections:
        (detection,) = held_detections  # a weighing links to nothing but through a decision
        if not any(permit.covers(detection.detected_at) for permit in file.permits.values()):
            cases.append(_weighing_case(file, detection))
    cases += [
        _decision_case(file, p) for p in live if p.code is not ViolationCode.OVERLOAD_TRANSPORT
    ]
    return _Component(
        nodes=tuple(nodes),
        detection_ids=tuple(d.detection_id for d in held_detections),
        decision_numbers=tuple(p.decision_number for p in penalties),
        earliest=min(times),
        latest=max(times),
        cases=tuple(cases),
    )


def _holder_role(file: CreditFile) -> ViolationRole:
    is_vehicle = file.subject.kind is SubjectKind.VEHICLE
    return ViolationRole.VEHICLE if is_vehicle else ViolationRole.PENALISED


def _overload_case(
    file: CreditFile,
    detection_ids: list[str],
    held_detections: list[DetectionFact],
    live_overload: list[PenaltyFact],
) -> _Case:
    is_vehicle = file.subject.kind is SubjectKind.VEHICLE
    suffix = (
        f"det:{min(detection_ids)}"
        if detection_ids
        else f"pen:{min(p.decision_number for p in live_overload)}"
    )
    occurred_at = min(start_of_day(p.decision_date) for p in live_overload)
    heaviest = max(
        held_detections,
        key=lambda d: (Fraction(d.gross_weight_kg, d.legal_limit_kg), d.detection_id),
        default=None,
    )
    unit = ViolationFact(
        violation_id=f"{file.subject}/{suffix}",
        role=_holder_role(file),
        occurred_at=occurred_at,
        code=ViolationCode.OVERLOAD_TRANSPORT,
        basis=ViolationBasis.PENALTY,
        vehicle_key=file.subject.key if is_vehicle else None,
        detection_ids=tuple(detection_ids),
        decision_numbers=tuple(p.decision_number for p in live_overload),
        source_event_ids=tuple(
            sorted({d.event_id for d in held_detections} | {p.event_id for p in live_overload})
        ),
        fine_amount_yuan=sum((p.fine_amount_yuan for p in live_overload), Decimal(0)),
        penalty_categories=tuple(
            sorted({c for p in live_overload for c in p.penalty_categories}, key=_category_order)
        ),
        gross_weight_kg=None if heaviest is None else heaviest.gross_weight_kg,
        legal_limit_kg=None if heaviest is None else heaviest.legal_limit_kg,
    )
    if not is_vehicle:
        return _Case(unit, True, ())
    driver = _first(p.driver for p in live_overload) or _first(d.driver for d in held_detections)
    carrier = (
        _first(p.carrier for p in live_overload)
        or _first(d.carrier for d in held_detections)
        or certified_carrier(file, occurred_at)
    )
    loading_source = _first(d.loading_source for d in held_detections)
    penalised = [p.penalised for p in live_overload if p.penalised is not None]
    return _Case(unit, True, _targets(driver, carrier, loading_source, penalised))


def _weighing_case(file: CreditFile, detection: DetectionFact) -> _Case:
    unit = ViolationFact(
        violation_id=f"{file.subject}/det:{detection.detection_id}",
        role=_holder_role(file),
        occurred_at=detection.detected_at,
        code=ViolationCode.OVERLOAD_TRANSPORT,
        basis=ViolationBasis.PRECISE_WEIGHING,
        vehicle_key=file.subject.key,
        detection_ids=(detection.detection_id,),
        decision_numbers=(),
        source_event_ids=(detection.event_id,),
        fine_amount_yuan=Decimal(0),
        penalty_categories=(),
        gross_weight_kg=detection.gross_weight_kg,
        legal_limit_kg=detection.legal_limit_kg,
    )
    carrier = detection.carrier or certified_carrier(file, detection.detected_at)
    return _Case(unit, True, _targets(detection.driver, carrier, detection.loading_source, []))


def _decision_case(file: CreditFile, penalty: PenaltyFact) -> _Case:
    """A live decision that is not an overload case: instigation or another violation."""
    is_vehicle = file.subject.kind is SubjectKind.VEHICLE
    unit = ViolationFact(
        violation_id=f"{file.subject}/pen:{penalty.decision_number}",
        role=_holder_role(file),
        occurred_at=start_of_day(penalty.decision_date),
        code=penalty.code,
        basis=ViolationBasis.PENALTY,
        vehicle_key=file.subject.key if is_vehicle else None,
        detection_ids=penalty.related_detection_ids,
        decision_numbers=(penalty.decision_number,),
        source_event_ids=(penalty.event_id,),
        fine_amount_yuan=penalty.fine_amount_yuan,
        penalty_categories=tuple(sorted(set(penalty.penalty_categories), key=_category_order)),
    )
    counts = not is_vehicle or penalty.code is not ViolationCode.INSTIGATE_OVERLOAD
    targets: tuple[tuple[SubjectRef, ViolationRole], ...] = ()
    if is_vehicle and penalty.penalised is not None:
        targets = ((penalty.penalised, ViolationRole.PENALISED),)
    return _Case(unit, counts, targets)


def _targets(
    driver: SubjectRef | None,
    carrier: SubjectRef | None,
    loading_source: SubjectRef | None,
    penalised: list[SubjectRef],
) -> tuple[tuple[SubjectRef, ViolationRole], ...]:
    targets = {(subject, ViolationRole.PENALISED) for subject in penalised}
    for subject, role in (
        (driver, ViolationRole.DRIVER),
        (carrier, ViolationRole.FLEET),
        (loading_source, ViolationRole.LOADED),
    ):
        if subject is not None:
            targets.add((subject, role))
    return tuple(sorted(targets, key=lambda t: (t[0].kind, t[0].key, t[1])))


def certified_carrier(file: CreditFile, at: datetime) -> SubjectRef | None:
    """The carrier an operating certificate ties the file's vehicle to at ``at``, if any."""
    tied = [c.carrier for c in file.certificates.values() if c.carrier and c.ties_at(at)]
    return min(tied, key=lambda carrier: carrier.key, default=None)


def _first(subjects: Iterable[SubjectRef | None]) -> SubjectRef | None:
    return next((s for s in subjects if s is not None), None)


_CATEGORY_RANK = {category: rank for rank, category in enumerate(PenaltyCategory)}


def _category_order(category: PenaltyCategory) -> int:
    """处罚类别 from light to heavy (RULES.md §1)."""
    return _CATEGORY_RANK[category]


# --- forwarding ---------------------------------------------------------------------------------


_Assertion = tuple[SubjectRef, ViolationRole | None, ViolationFact | FleetFact]
"""What a vehicle tells a file: the case (in a role) or a certificate."""


def _outgoing(file: CreditFile, components: tuple[_Component, ...]) -> dict[str, _Assertion]:
    """Everything a vehicle file asserts to other files, by ``target|role|id``.

    Cases stay in the vehicle's role here; only what changed is copied into the receiver's.
    """
    out: dict[str, _Assertion] = {}
    for case in _cases(components):
        for target, role in case.targets:
            out[f"{target.kind}:{target.key}|{role}|{case.unit.violation_id}"] = (
                target,
                role,
                case.unit,
            )
    for certificate in file.certificates.values():
        for carrier_key in certificate.carriers_named:
            carrier = SubjectRef(SubjectKind.CARRIER, carrier_key)
            key = f"{carrier.kind}:{carrier_key}|fleet|{certificate.licence_number}"
            out[key] = (carrier, None, certificate)
    return out


def _forward_changes(
    before: Mapping[str, _Assertion],
    after: Mapping[str, _Assertion],
    cause_time: datetime,
    cause_ids: tuple[str, ...],
) -> tuple[tuple[SubjectRef, Fact], ...]:
    """The difference, one fact per receiving file: upserts first, then retractions."""
    per_target: dict[SubjectRef, list[ForwardedChange]] = {}
    for key in sorted(after):
        assertion = after[key]
        if before.get(key) == assertion:
            continue
        target, role, fact = assertion
        change = fact.in_role(role) if isinstance(fact, ViolationFact) and role else fact
        per_target.setdefault(target, []).append(change)
    for key in sorted(before):
        target, role, fact = before[key]
        if key not in after and isinstance(fact, ViolationFact) and role is not None:
            retraction = RetractionFact(fact.violation_id, role, cause_time, cause_ids)
            per_target.setdefault(target, []).append(retraction)
    return tuple(
        (target, changes[0] if len(changes) == 1 else ForwardedBatch(tuple(changes)))
        for target, changes in sorted(
            per_target.items(), key=lambda item: (item[0].kind, item[0].key)
        )
    )


# --- time, dedup memory, pruning ----------------------------------------------------------------


def _effective_clock(file: CreditFile) -> datetime | None:
    """Newest event time the file knows: direct facts and forwarded violations it holds."""
    if not file.received:
        return file.clock
    newest = max((v.occurred_at for v in file.received.values()), default=None)
    if newest is None or (file.clock is not None and file.clock >= newest):
        return file.clock
    return newest


def _is_stale(file: CreditFile, at: datetime, book: PolicyBook) -> bool:
    if at < book.first_instant:
        return True  # no policy judges it
    clock = _effective_clock(file)
    return clock is not None and at <= clock - book.late_event_horizon


def _stale(file: CreditFile, event_id: str, at: datetime) -> Outcome:
    """Count a stale event and remember its id; it moves neither the clock nor the history."""
    recent = _keep_recent(file.recent_event_ids, event_id, at, RECENT_EVENT_IDS_KEPT)
    counted = _evolve(file, recent_event_ids=recent, stale_events=file.stale_events + 1)
    return Outcome(counted, stale=True)


def _observe(
    file: CreditFile,
    event_id: str,
    at: datetime,
    driver: SubjectRef | None = None,
    carrier: SubjectRef | None = None,
) -> CreditFile:
    """Note a direct event: the clock, the history, the dedup memory and a vehicle's parties.

    This runs for every event, so it builds the new file in one step.
    """
    drivers, carriers = file.recent_drivers, file.recent_carriers
    if file.subject.kind is SubjectKind.VEHICLE:
        if driver is not None:
            drivers = _keep_recent(drivers, driver.key, at, RECENT_PARTIES_KEPT)
        if carrier is not None:
            carriers = _keep_recent(carriers, carrier.key, at, RECENT_PARTIES_KEPT)
    return CreditFile(
        file.subject,
        at if file.clock is None or at > file.clock else file.clock,
        at if file.first_seen is None or at < file.first_seen else file.first_seen,
        file.detections,
        file.penalties,
        file.permits,
        file.certificates,
        file.received,
        file.entries,
        _keep_recent(file.recent_event_ids, event_id, at, RECENT_EVENT_IDS_KEPT),
        drivers,
        carriers,
        file.stale_events,
        file.entry_records,
        file.objections,
        file.repairs,
    )


def _keep_recent(
    recent: Mapping[str, datetime], key: str, at: datetime, limit: int
) -> Mapping[str, datetime]:
    """The ``limit`` keys with the latest times (ties by key): the same whatever the order."""
    known = recent.get(key)
    if known is not None and known >= at:
        return recent
    kept = dict(recent)
    kept[key] = at
    if len(kept) > limit:
        del kept[min(kept, key=lambda k: (kept[k], k))]
    return MappingProxyType(kept)


def _oldest_held(file: CreditFile) -> datetime | None:
    held = (file.detections, file.penalties, file.received, file.permits, file.certificates)
    if not any(held):
        return None
    times = [d.detected_at for d in file.detections.values()]
    times += [start_of_day(p.decision_date) for p in file.penalties.values()]
    times += [v.occurred_at for v in file.received.values()]
    times += [p.valid_until for p in file.permits.values() if p.valid_until is not None]
    times += [end for c in file.certificates.values() if (end := _tie_end(c)) is not None]
    return min(times, default=None)


def _tie_end(certificate: FleetFact) -> datetime | None:
    """When a certificate stops tying its vehicle to a carrier; None while it may still."""
    ends = []
    if certificate.valid_until is not None:
        ends.append(start_of_day(certificate.valid_until) + timedelta(days=1))
    if certificate.status in (LicenceStatus.REVOKED, LicenceStatus.CANCELLED):
        ends.append(start_of_day(certificate.decision_date))
    return min(ends, default=None)


def _tidy(file: CreditFile, book: PolicyBook) -> CreditFile:
    """Prune after the clock moved, deriving the cases only when something is old enough."""
    clock = _effective_clock(file)
    oldest = _oldest_held(file)
    if clock is None or oldest is None or oldest > clock - book.retention:
        return file
    return _prune(file, _analyse(file), book)


def _prune(file: CreditFile, components: tuple[_Component, ...], book: PolicyBook) -> CreditFile:
    """Drop what is older than the retention, unless it supports a standing entry."""
    clock = _effective_clock(file)
    if clock is None:
        return file
    cutoff = clock - book.retention
    oldest = _oldest_held(file)
    if oldest is None or oldest > cutoff:
        return file
    protected = {v for entry in file.entries.values() for v in entry.evidence_violation_ids}
    folded: list[datetime] = []

    detections, penalties = dict(file.detections), dict(file.penalties)
    for component in components:
        if component.latest > cutoff:
            continue
        if any(case.unit.violation_id in protected for case in component.cases):
            continue
        for detection_id in component.detection_ids:
            del detections[detection_id]
        for number in component.decision_numbers:
            del penalties[number]
        folded.append(component.earliest)
    received = {
        key: v
        for key, v in file.received.items()
        if v.occurred_at > cutoff or v.violation_id in protected
    }
    folded += [v.occurred_at for v in file.received.values() if v.occurred_at <= cutoff]
    permits = {
        key: p for key, p in file.permits.items() if p.valid_until is None or p.valid_until > cutoff
    }
    certificates = {}
    for key, certificate in file.certificates.items():
        end = _tie_end(certificate)
        if end is not None and end <= cutoff:
            folded.append(start_of_day(certificate.valid_from))
        else:
            certificates[key] = certificate
    first_seen = min([*folded, *([file.first_seen] if file.first_seen else [])], default=None)
    return replace(
        file,
        first_seen=first_seen,
        detections=_frozen(detections, file.detections),
        penalties=_frozen(penalties, file.penalties),
        received=_frozen(received, file.received),
        permits=_frozen(permits, file.permits),
        certificates=_frozen(certificates, file.certificates),
    )


# --- copy-on-write helpers ----------------------------------------------------------------------

_FILE_FIELDS = tuple(f.name for f in fields(CreditFile))


def _evolve(file: CreditFile, **changes: Any) -> CreditFile:
    """``dataclasses.replace`` for the hot paths, without its per-call introspection."""
    return CreditFile(*[changes[n] if n in changes else getattr(file, n) for n in _FILE_FIELDS])


_V = TypeVar("_V")


def _with(mapping: Mapping[str, _V], key: str, value: _V) -> Mapping[str, _V]:
    copied = dict(mapping)
    copied[key] = value
    return MappingProxyType(copied)


def _without(mapping: Mapping[str, _V], key: str) -> Mapping[str, _V]:
    copied = dict(mapping)
    del copied[key]
    return MappingProxyType(copied)


def _frozen(mapping: dict[str, _V], original: Mapping[str, _V]) -> Mapping[str, _V]:
    """``mapping`` read-only, or ``original`` itself when nothing was dropped."""
    if len(mapping) == len(original):
        return original
    return MappingProxyType(mapping)

"""The life of a list entry, an objection and a credit repair after the rules fire.

Pure: no I/O. :func:`processors.ledger.apply` runs these machines on every fact that changes a
file, and the stream sends what they return: :class:`AuditRecord` values to the audit topic and
:class:`~processors.disclosure.PublicationRequest` values to the publication outbox.

**A list entry** (RULES.md §2). The rules of :mod:`processors.lists` say which entries a subject
qualifies for; an :class:`EntryRecord` says where each one is in its life:

======================  ==================================  ==================================
from                    event                               to
======================  ==================================  ==================================
(rules list it)         blacklist                           PROPOSED: 10 working days' notice
(rules list it)         red list                            PUBLISHED for 2 years (§6)
(rules list it)         watchlist                           LISTED (kept in the back end)
PROPOSED                notice over, no open objection      PUBLISHED for 2 years
PROPOSED                objection upheld                    CANCELLED
PROPOSED                support gone (revoked, repaired)    CANCELLED
PUBLISHED               2 years over                        WITHDRAWN (kept in the back end)
PUBLISHED / LISTED      objection upheld, support gone      REMOVED
======================  ==================================  ==================================

"Proposed entries are shown on 信用交通 for a 10个工作日 公示期 ... If the conclusion is unchanged,
the entry is published"; "满2年的，从'信用交通'网站公布栏中撤出，相关信息记录在后台予以保存"
(RULES.md §2). An entry whose notice ends while an objection is open waits for the answer: a
rejection publishes it at once, an upheld objection cancels it. An entry that ends because its
support went away (CANCELLED or REMOVED) leaves only its audit trail: the same facts in another
order may never have listed it, and the file must not depend on the order. It is proposed afresh
if the support comes back. An entry ended otherwise (WITHDRAWN, or by an upheld objection) is
proposed again only when the rules list the subject on new grounds (a later ``since``).

**An objection** (异议, RULES.md §4) is OPEN from filing, with a response deadline in working days
(policy ``objection_response_working_days``); past it, it turns OVERDUE (still open). It ends
UPHELD or REJECTED. While open, what it disputes is annotated (the record shows the objection);
an upheld objection against an entry ends the entry, and one against a decision sets the decision
aside: it counts for nothing, every entry it supported is re-judged, and its publication is
withdrawn. A resolution that arrives before its filing is taken as it is.

**A credit repair** (信用修复, RULES.md §3) is decided on arrival by the rules in force on the
decision date: the decision must be held and live, its tier repairable, its minimum publication
period over, its obligations fulfilled and a public commitment made. An approved repair sets the
decision aside like an upheld objection (publication withdrawn within
``repair_withdrawal_working_days``), and the record stays in the back end. A rejection carries its
reason code.

**Time.** Every machine runs at a time ``at`` the caller passes: the later of the processing
time and the file's clock, so a clock the tests control (clock ticks, :class:`ReviewFact`) moves
them. :func:`next_due` tells when a file next has something to do, so that the stream can send
it a tick then.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType

from processors.disclosure import (
    PublicationAction,
    PublicationKind,
    PublicationRequest,
    WithdrawalReason,
    add_months,
    publication_id_for,
    repairable_from,
    tier_for,
)
from processors.facts import ObjectionFact, PenaltyFact, RepairFact, china_date, start_of_day
from processors.identifiers import mask_identifier
from processors.lists import ListEntry, ListName
from processors.model import ObjectionAction, ObjectionTarget, SubjectKind, SubjectRef
from processors.policy import Policy, PolicyBook
from processors.workdays import WorkdayCalendar

__all__ = [
    "AuditRecord",
    "EntryRecord",
    "EntryStage",
    "LifecycleState",
    "ObjectionRecord",
    "ObjectionStatus",
    "RepairRecord",
    "Step",
    "list_publication_id",
    "next_due",
    "on_objection",
    "on_repair",
    "public_reason",
    "reconcile",
    "set_aside",
]

SYSTEM = "system"
"""The actor of transitions the system makes by itself."""
SET_ASIDE_REVISION = 1_000_000
"""Revision of the withdrawal of a set-aside decision: above any revision of the decision, so
that the website keeps it down whatever revision of the decision arrives later."""


class EntryStage(enum.StrEnum):
    """Where a list entry is in its life; values are what the API shows as ``status``."""

    PROPOSED = "proposed"
    """公示期: shown for objections, not yet in force."""
    PUBLISHED = "published"
    """In force and on the credit website."""
    LISTED = "listed"
    """In force, not published (the watchlist)."""
    WITHDRAWN = "withdrawn"
    """Publication period over: off the website, kept in the back end."""
    CANCELLED = "cancelled"
    """Ended before publication by an upheld objection."""
    REMOVED = "removed"
    """Ended after it was in force: objection upheld, or its support revoked or repaired."""

    @property
    def is_live(self) -> bool:
        """Still proposed or in force."""
        return self in _LIVE_STAGES


_LIVE_STAGES = frozenset({EntryStage.PROPOSED, EntryStage.PUBLISHED, EntryStage.LISTED})


class EndCause(enum.StrEnum):
    """Why an entry ended."""

    SUPPORT_GONE = "support_gone"
    OBJECTION_UPHELD = "objection_upheld"
    PERIOD_OVER = "period_over"


class ObjectionStatus(enum.StrEnum):
    """Where an objection is."""

    OPEN = "OPEN"
    OVERDUE = "OVERDUE"
    """Still open after its response deadline."""
    UPHELD = "UPHELD"
    REJECTED = "REJECTED"

    @property
    def is_open(self) -> bool:
        """Not yet answered."""
        return self in (ObjectionStatus.OPEN, ObjectionStatus.OVERDUE)


class RepairRejection(enum.StrEnum):
    """Why a repair application was rejected (reason codes)."""

    DECISION_NOT_HELD = "DECISION_NOT_HELD"
    DECISION_REVOKED = "DECISION_REVOKED"
    ALREADY_REPAIRED = "ALREADY_REPAIRED"
    NOT_REPAIRABLE = "NOT_REPAIRABLE"
    MIN_PERIOD_UNKNOWN = "MIN_PERIOD_UNKNOWN"
    MIN_PERIOD_NOT_OVER = "MIN_PERIOD_NOT_OVER"
    OBLIGATIONS_NOT_FULFILLED = "OBLIGATIONS_NOT_FULFILLED"
    NO_PUBLIC_COMMITMENT = "NO_PUBLIC_COMMITMENT"


@dataclass(frozen=True, slots=True)
class EntryRecord:
    """The life of one list entry of a subject (``LIST:rule``)."""

    list_name: ListName
    """Which list."""
    rule_id: str
    """Which rule listed it."""
    stage: EntryStage
    """Where it is."""
    stage_since: datetime
    """When it entered ``stage``."""
    entry_since: datetime
    """The entry's ``since`` (event time the subject first qualified) when it was proposed."""
    proposed_at: datetime
    """When the system proposed (or listed) it."""
    notice_ends: date | None
    """Last day of the pre-publication notice; None without a notice."""
    published_on: date | None
    """First day on the website."""
    public_until: date | None
    """Last day on the website."""
    policy_version: str
    """Version whose rule listed it."""
    reason: str
    """The rule's reason, as published."""
    evidence_event_ids: tuple[str, ...]
    """Events behind it when it was last judged."""
    end_cause: EndCause | None = None
    """Why it ended."""


@dataclass(frozen=True, slots=True)
class ObjectionRecord:
    """One objection against something the file holds."""

    objection_id: str
    """Its identity."""
    target: ObjectionTarget
    """A list entry or a decision."""
    entry_key: str | None
    """The disputed entry, ``LIST:rule``."""
    decision_number: str | None
    """The disputed decision."""
    status: ObjectionStatus
    """Where it is."""
    handled_by: str
    """The agency handling it."""
    filed_at: datetime | None
    """When it was filed (None if only its resolution is known)."""
    respond_by: date | None
    """Last day of the response deadline."""
    resolved_at: datetime | None = None
    """When it was upheld or rejected."""


@dataclass(frozen=True, slots=True)
class RepairRecord:
    """A decided credit repair application."""

    application_id: str
    """Its identity."""
    decision_number: str
    """The decision it asked to repair."""
    decided_at: datetime
    """When it was decided."""
    approved: bool
    """Approved or rejected."""
    rejection: RepairRejection | None
    """Why not, when rejected."""
    tier: str | None
    """The decision's severity tier, when held."""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One state change of an entry, objection or repair: a line of the subject's history."""

    subject: SubjectRef
    """Whose."""
    record: str
    """What changed: ``entry:LIST:rule``, ``objection:<id>``, ``repair:<id>``, ``decision:<no>``."""
    from_state: str | None
    """State before (None for a new record)."""
    to_state: str
    """State after."""
    at: datetime
    """When."""
    actor: str
    """Who: ``system`` or the agency."""
    reason: str
    """Why, in words or a reason code."""
    evidence_event_ids: tuple[str, ...] = ()
    """The events behind the change."""


@dataclass(frozen=True, slots=True)
class LifecycleState:
    """A file's lifecycle records."""

    entries: Mapping[str, EntryRecord]
    objections: Mapping[str, ObjectionRecord]
    repairs: Mapping[str, RepairRecord]


@dataclass(frozen=True, slots=True)
class Step:
    """What a lifecycle step did."""

    state: LifecycleState
    audit: tuple[AuditRecord, ...] = ()
    publications: tuple[PublicationRequest, ...] = ()


def set_aside(state: LifecycleState) -> frozenset[str]:
    """Decisions that count for nothing: repaired, or struck by an upheld objection."""
    repaired = {r.decision_number for r in state.repairs.values() if r.approved}
    struck = {
        o.decision_number
        for o in state.objections.values()
        if o.status is ObjectionStatus.UPHELD and o.decision_number is not None
    }
    return frozenset(repaired | struck)


def next_due(state: LifecycleState) -> datetime | None:
    """The first instant at which time alone changes ``state``, if any."""
    days: list[date] = []
    for record in state.entries.values():
        if record.stage is EntryStage.PROPOSED and record.notice_ends is not None:
            days.append(record.notice_ends)
        elif record.stage is EntryStage.PUBLISHED and record.public_until is not None:
            days.append(record.public_until)
    days += [
        o.respond_by
        for o in state.objections.values()
        if o.status is ObjectionStatus.OPEN and o.respond_by is not None
    ]
    # A period's last day is still inside it: the change falls due when the next day starts.
    return start_of_day(min(days) + timedelta(days=1)) if days else None


# --- entries ------------------------------------------------------------------------------------


def reconcile(
    subject: SubjectRef,
    state: LifecycleState,
    entries: Mapping[str, ListEntry],
    at: datetime,
    book: PolicyBook,
    calendar: WorkdayCalendar,
) -> Step:
    """Bring the entry records in line with the entries the rules derive, and with time ``at``."""
    if not entries and not state.entries and not state.objections:
        return Step(state)
    work = _Work(subject, state, at, book, calendar)
    for key, record in state.entries.items():
        if record.stage.is_live and key not in entries:
            work.end(key, EndCause.SUPPORT_GONE, SYSTEM, "supporting records revoked or repaired")
    for key, entry in entries.items():
        held = work.entries.get(key)
        if held is None or _proposes_again(held, entry):
            work.propose(key, entry)
        elif held.stage.is_live and _grounds(held) != _grounds_of(entry):
            work.entries[key] = replace(
                held,
                entry_since=entry.since,
                policy_version=entry.policy_version,
                reason=entry.reason,
                evidence_event_ids=entry.evidence_event_ids,
            )
    work.pass_time()
    return work.step()


def _grounds(record: EntryRecord) -> tuple[object, ...]:
    return (record.entry_since, record.policy_version, record.reason, record.evidence_event_ids)


def _grounds_of(entry: ListEntry) -> tuple[object, ...]:
    return (entry.since, entry.policy_version, entry.reason, entry.evidence_event_ids)


def _revision(at: datetime, publish: bool) -> int:
    return (int(at.timestamp()) * 1_000_000 + at.microsecond) * 2 + (0 if publish else 1)


def _proposes_again(record: EntryRecord, entry: ListEntry) -> bool:
    return not record.stage.is_live and entry.since != record.entry_since


# --- objections ---------------------------------------------------------------------------------


def on_objection(
    subject: SubjectRef,
    state: LifecycleState,
    fact: ObjectionFact,
    at: datetime,
    book: PolicyBook,
    calendar: WorkdayCalendar,
) -> Step:
    """Record an objection event; an upheld one ends the entry or strikes the decision.

    A decision struck here changes what the rules derive: the caller re-judges the file and
    then :func:`reconcile`\\ s, which ends the entries the decision supported.
    """
    work = _Work(subject, state, at, book, calendar)
    work.objection(fact)
    return work.step()


# --- repairs ------------------------------------------------------------------------------------


def on_repair(
    subject: SubjectRef,
    state: LifecycleState,
    fact: RepairFact,
    penalty: PenaltyFact | None,
    at: datetime,
    book: PolicyBook,
    calendar: WorkdayCalendar,
) -> Step:
    """Decide a repair application for ``penalty`` (the decision as the file holds it)."""
    if fact.application_id in state.repairs:
        return Step(state)  # decided already: a redelivery
    work = _Work(subject, state, at, book, calendar)
    work.repair(fact, penalty)
    return work.step()


# --- publication of entries ---------------------------------------------------------------------

OBJECTION_MARK = "存在异议，正在核查"
"""What the website shows on a published entry while an objection against it is open."""

_LIST_KINDS: Mapping[ListName, PublicationKind] = {
    ListName.BLACKLIST: PublicationKind.BLACKLIST,
    ListName.RED_LIST: PublicationKind.REDLIST,
}
_LIST_PREFIX: Mapping[ListName, str] = {ListName.BLACKLIST: "BL", ListName.RED_LIST: "RL"}


def list_publication_id(subject: SubjectRef, list_name: ListName, rule_id: str) -> str:
    """The website id of a subject's entry: no personal data (driver IDs are masked first)."""
    return publication_id_for(_LIST_PREFIX[list_name], str(subject), rule_id)


def _shown_code(subject: SubjectRef) -> str:
    if subject.kind is SubjectKind.VEHICLE:
        return subject.key.split("|")[0]
    if subject.kind in (SubjectKind.DRIVER, SubjectKind.PERSON):
        return mask_identifier(subject.key)
    return subject.key


def public_reason(rule_id: str, policy: Policy) -> str:
    """Why the subject is listed, in Chinese for the public page, with the policy's numbers.

    The rule's own ``reason`` (English, with the counts) stays in the back end and the API.
    """
    rules = policy.overload_blacklist
    window = "1年内" if rules.window_days == 365 else f"{rules.window_days}日内"
    article = "（《公路安全保护条例》第六十六条）"
    match rule_id:
        case "overload.vehicle":
            return f"货运车辆{window}违法超限运输超过{rules.vehicle_violations_gt}次{article}"
        case "overload.driver":
            return f"货运车辆驾驶人{window}违法超限运输超过{rules.driver_violations_gt}次{article}"
        case "overload.carrier_fleet_ratio":
            percent = ((rules.carrier_overloading_vehicle_ratio_gt or Decimal(0)) * 100).normalize()
            ordered = "并被责令停业整顿" if rules.carrier_requires_suspension_order else ""
            return (
                f"道路运输企业{window}违法超限运输的货运车辆超过本单位货运车辆总数"
                f"{percent:f}%{ordered}{article}"
            )
        case "overload.instigator_fine":
            fine = (rules.instigator_fine_yuan_gte or Decimal(0)) / 10_000
            return f"指使、强令车辆驾驶人超限运输货物，被处{fine:g}万元以上罚款"
        case "overload.instigator_repeat":
            return (
                f"指使、强令车辆驾驶人超限运输货物，{window}被处罚"
                f"{rules.instigator_penalties_in_window_gte}次以上"
            )
        case "overload.gross_overweight":
            return "货运车辆车货总质量严重超过限定标准"
        case "red_list.clean_top_grade":
            return f"信用等级{policy.red_list.min_grade.value}级且无失信记录（守信激励）"
        case _:
            return "严重违法失信超限超载运输"


_SHOWN_NAMES: Mapping[SubjectKind, str] = {
    SubjectKind.VEHICLE: "货运车辆",
    SubjectKind.DRIVER: "货运车辆驾驶人",
    SubjectKind.CARRIER: "道路运输企业",
    SubjectKind.LOADING_SOURCE: "货运源头单位",
    SubjectKind.PERSON: "当事人",
}


# --- the work of one step -----------------------------------------------------------------------


class _Work:
    """Mutable scratch space for one step; :meth:`step` freezes it."""

    def __init__(
        self,
        subject: SubjectRef,
        state: LifecycleState,
        at: datetime,
        book: PolicyBook,
        calendar: WorkdayCalendar,
    ) -> None:
        self.subject = subject
        self.original = state
        self.entries = dict(state.entries)
        self.objections = dict(state.objections)
        self.repairs = dict(state.repairs)
        self.at = at
        self.today = china_date(at)
        self.book = book
        self.policy: Policy = book.in_force_at(at)
        self.calendar = calendar
        self.audit: list[AuditRecord] = []
        self.publications: list[PublicationRequest] = []

    def step(self) -> Step:
        state = self.original
        if (
            self.entries != state.entries
            or self.objections != state.objections
            or self.repairs != state.repairs
        ):
            state = LifecycleState(
                MappingProxyType(self.entries),
                MappingProxyType(self.objections),
                MappingProxyType(self.repairs),
            )
        return Step(state, tuple(self.audit), tuple(self.publications))

    def _log(
        self,
        record: str,
        before: str | None,
        after: str,
        actor: str,
        reason: str,
        evidence: Iterable[str] = (),
    ) -> None:
        self.audit.append(
            AuditRecord(
                self.subject, record, before, after, self.at, actor, reason, tuple(evidence)
            )
        )

    # entries

    def propose(self, key: str, entry: ListEntry) -> None:
        held = self.entries.get(key)
        notice: date | None = None
        if entry.list_name is ListName.BLACKLIST:
            notice_days = self.policy.overload_blacklist.pre_publication_notice_working_days
            notice = self._notice_end(notice_days)
        stage = EntryStage.PROPOSED if entry.list_name in _LIST_KINDS else EntryStage.LISTED
        record = EntryRecord(
            list_name=entry.list_name,
            rule_id=entry.rule_id,
            stage=stage,
            stage_since=self.at,
            entry_since=entry.since,
            proposed_at=self.at,
            notice_ends=notice,
            published_on=None,
            public_until=None,
            policy_version=entry.policy_version,
            reason=entry.reason,
            evidence_event_ids=entry.evidence_event_ids,
        )
        self.entries[key] = record
        self._log(
            f"entry:{key}",
            held.stage.value if held is not None else None,
            stage.value,
            SYSTEM,
            entry.reason,
            entry.evidence_event_ids,
        )
        if stage is EntryStage.PROPOSED and notice is None:
            self._publish(key, record, SYSTEM, "published without notice")

    def _notice_end(self, working_days: int) -> date:
        notice = self.calendar.add_working_days(self.today, working_days)
        if not notice.provisional:
            return notice.due
        # Unknown holidays: a notice must never end early (unlike a publication deadline, where
        # early is safe), so take a span no real schedule of that many working days exceeds.
        return max(notice.due, self.today + timedelta(days=3 * working_days))

    def _publish(self, key: str, record: EntryRecord, actor: str, reason: str) -> None:
        years = (
            self.policy.overload_blacklist.publication_years
            if record.list_name is ListName.BLACKLIST
            else self.policy.lifecycle.red_list_publication_years
        )
        # "自公布之日起满2年": the last public day is the day before the anniversary.
        until = add_months(self.today, 12 * years) - timedelta(days=1)
        published = replace(
            record,
            stage=EntryStage.PUBLISHED,
            stage_since=self.at,
            published_on=self.today,
            public_until=until,
        )
        self.entries[key] = published
        self._log(
            f"entry:{key}",
            record.stage.value,
            EntryStage.PUBLISHED.value,
            actor,
            reason,
            record.evidence_event_ids,
        )
        self._publish_entry(key, published)

    def _publish_entry(self, key: str, record: EntryRecord) -> None:
        """Ask the website to show the entry as it is now (with its objection mark, if any)."""
        self.publications.append(self._entry_request(key, record, PublicationAction.PUBLISH, None))

    def end(self, key: str, cause: EndCause, actor: str, reason: str) -> None:
        record = self.entries[key]
        if cause is EndCause.PERIOD_OVER:
            stage = EntryStage.WITHDRAWN
        elif record.stage is EntryStage.PROPOSED:
            stage = EntryStage.CANCELLED
        else:
            stage = EntryStage.REMOVED
        was_public = record.stage is EntryStage.PUBLISHED
        ended = replace(record, stage=stage, stage_since=self.at, end_cause=cause)
        if cause is EndCause.SUPPORT_GONE:
            # Its grounds are gone: only the audit trail keeps it. A record would make the file
            # depend on the arrival order, in which a transient entry may never have existed.
            del self.entries[key]
        else:
            self.entries[key] = ended
        self._log(
            f"entry:{key}",
            record.stage.value,
            stage.value,
            actor,
            reason,
            record.evidence_event_ids,
        )
        if was_public:
            why = {
                EndCause.PERIOD_OVER: WithdrawalReason.EXPIRED,
                EndCause.OBJECTION_UPHELD: WithdrawalReason.OBJECTION_UPHELD,
                EndCause.SUPPORT_GONE: WithdrawalReason.REVOKED,
            }[cause]
            self.publications.append(
                self._entry_request(key, ended, PublicationAction.WITHDRAW, why)
            )

    def pass_time(self) -> None:
        for key, record in list(self.entries.items()):
            if (
                record.stage is EntryStage.PROPOSED
                and record.notice_ends is not None
                and self.today > record.notice_ends
                and not self._disputed(key)
            ):
                self._publish(key, record, SYSTEM, "pre-publication notice over")
            elif (
                record.stage is EntryStage.PUBLISHED
                and record.public_until is not None
                and self.today > record.public_until
            ):
                self.end(key, EndCause.PERIOD_OVER, SYSTEM, "publication period over")
        for objection_id, objection in list(self.objections.items()):
            if (
                objection.status is ObjectionStatus.OPEN
                and objection.respond_by is not None
                and self.today > objection.respond_by
            ):
                self.objections[objection_id] = replace(objection, status=ObjectionStatus.OVERDUE)
                self._log(
                    f"objection:{objection_id}",
                    ObjectionStatus.OPEN.value,
                    ObjectionStatus.OVERDUE.value,
                    SYSTEM,
                    f"no answer by {objection.respond_by.isoformat()}",
                )

    def _disputed(self, key: str) -> bool:
        return any(o.status.is_open and o.entry_key == key for o in self.objections.values())

    def _objection_changes(self, key: str) -> int:
        """How often objections against entry ``key`` changed state (filed: 1, answered: 2)."""
        return sum(
            1 if o.status.is_open else 2 for o in self.objections.values() if o.entry_key == key
        )

    def _entry_request(
        self, key: str, record: EntryRecord, action: PublicationAction, why: WithdrawalReason | None
    ) -> PublicationRequest:
        publish = action is PublicationAction.PUBLISH
        fields = (
            {"reason": public_reason(record.rule_id, self.policy), "rule_id": record.rule_id}
            if publish
            else {}
        )
        if publish and self._disputed(key):
            # 存在异议的标注 (RULES.md §4: annotate and keep published, the policy's default).
            fields["objection"] = OBJECTION_MARK
        due = self.calendar.add_working_days(self.today, 1)
        return PublicationRequest(
            publication_id=list_publication_id(self.subject, record.list_name, record.rule_id),
            action=action,
            kind=_LIST_KINDS[record.list_name],
            # The lifecycle's time only moves forward, so a later change has a higher revision.
            # Objection marks can change the entry at one lifecycle instant (a clock tick ahead
            # of the processing time holds it still): each change of its objections counts one
            # microsecond more, so every version the website gets has its own revision.
            revision=_revision(
                self.at + timedelta(microseconds=self._objection_changes(key)), publish
            ),
            decision_date=record.published_on or self.today,
            # Local choice: the website shows a change of list by the next working day.
            deadline=due.due,
            deadline_provisional=due.provisional,
            source_event_id=record.evidence_event_ids[-1] if record.evidence_event_ids else "",
            fields=fields,
            subject_name=_SHOWN_NAMES[self.subject.kind] if publish else "",
            subject_code=_shown_code(self.subject) if publish else "",
            plate=_shown_code(self.subject) if self.subject.kind is SubjectKind.VEHICLE else None,
            publication_end=record.public_until if publish else None,
            withdrawal_reason=why,
            policy_version=record.policy_version,
        )

    # objections

    def objection(self, fact: ObjectionFact) -> None:
        held = self.objections.get(fact.objection_id)
        if fact.action is ObjectionAction.FILED:
            if held is not None:
                return  # filed again, or filed after its answer arrived: nothing new
            respond_by = self.calendar.add_working_days(
                china_date(fact.occurred_at), self.policy.lifecycle.objection_response_working_days
            ).due
            self.objections[fact.objection_id] = ObjectionRecord(
                objection_id=fact.objection_id,
                target=fact.target,
                entry_key=fact.entry_key,
                decision_number=fact.decision_number,
                status=ObjectionStatus.OPEN,
                handled_by=fact.handled_by,
                filed_at=fact.occurred_at,
                respond_by=respond_by,
            )
            self._log(
                f"objection:{fact.objection_id}",
                None,
                ObjectionStatus.OPEN.value,
                fact.handled_by,
                f"filed against {self._target_name(fact)}",
                (fact.event_id,),
            )
            self._show_objection_mark(fact.entry_key)
            if self.today > respond_by:
                self.pass_time()
            return
        status = (
            ObjectionStatus.UPHELD
            if fact.action is ObjectionAction.UPHELD
            else ObjectionStatus.REJECTED
        )
        if held is not None and not held.status.is_open:
            return  # answered already
        resolved = ObjectionRecord(
            objection_id=fact.objection_id,
            target=fact.target,
            entry_key=fact.entry_key,
            decision_number=fact.decision_number,
            status=status,
            handled_by=fact.handled_by,
            filed_at=held.filed_at if held is not None else None,
            respond_by=held.respond_by if held is not None else None,
            resolved_at=fact.occurred_at,
        )
        self.objections[fact.objection_id] = resolved
        self._log(
            f"objection:{fact.objection_id}",
            held.status.value if held is not None else None,
            status.value,
            fact.handled_by,
            f"{status.value.lower()}: {self._target_name(fact)}",
            (fact.event_id,),
        )
        if status is ObjectionStatus.REJECTED:
            self._show_objection_mark(fact.entry_key)  # taken off, unless another is open
            self.pass_time()  # a notice that ended while disputed publishes now
            return
        if fact.target is ObjectionTarget.LIST_ENTRY and fact.entry_key is not None:
            record = self.entries.get(fact.entry_key)
            if record is not None and record.stage.is_live:
                self.end(
                    fact.entry_key, EndCause.OBJECTION_UPHELD, fact.handled_by, "objection upheld"
                )
        elif fact.decision_number is not None:
            self._log(
                f"decision:{fact.decision_number}",
                "in_force",
                "set_aside",
                fact.handled_by,
                "objection upheld",
                (fact.event_id,),
            )
            self.publications.append(
                self._decision_withdrawal(fact.decision_number, WithdrawalReason.OBJECTION_UPHELD)
            )

    def _show_objection_mark(self, key: str | None) -> None:
        """Publish a published entry again, with or without its objection mark as it is now."""
        record = self.entries.get(key) if key is not None else None
        if key is not None and record is not None and record.stage is EntryStage.PUBLISHED:
            self._publish_entry(key, record)

    @staticmethod
    def _target_name(fact: ObjectionFact) -> str:
        if fact.target is ObjectionTarget.LIST_ENTRY:
            return f"entry {fact.entry_key}"
        return f"decision {fact.decision_number}"

    def _decision_withdrawal(
        self, decision_number: str, why: WithdrawalReason
    ) -> PublicationRequest:
        days = self.policy.lifecycle.repair_withdrawal_working_days
        due = self.calendar.add_working_days(self.today, days)
        return PublicationRequest(
            publication_id=publication_id_for("CF", decision_number),
            action=PublicationAction.WITHDRAW,
            kind=PublicationKind.PENALTY,
            revision=SET_ASIDE_REVISION,
            decision_date=self.today,
            deadline=due.due,
            deadline_provisional=due.provisional,
            source_event_id="",
            withdrawal_reason=why,
            policy_version=self.policy.version,
        )

    # repairs

    def repair(self, fact: RepairFact, penalty: PenaltyFact | None) -> None:
        tier = None
        rejection: RepairRejection | None = None
        if penalty is None:
            rejection = RepairRejection.DECISION_NOT_HELD
        elif penalty.is_revoked:
            rejection = RepairRejection.DECISION_REVOKED
        elif fact.decision_number in set_aside(self.original):
            rejection = RepairRejection.ALREADY_REPAIRED
        else:
            # The rules in force on the decision date decide (RULES.md §3).
            rules = self.book.in_force_on(penalty.decision_date).lifecycle
            tier = tier_for(penalty.penalty_categories, penalty.fine_amount_yuan, penalty.procedure)
            from_day = repairable_from(penalty.decision_date, tier, self.book)
            if tier.value in rules.repair_not_repairable_tiers:
                rejection = RepairRejection.NOT_REPAIRABLE
            elif rules.repair_requires_min_period and from_day is None:
                rejection = RepairRejection.MIN_PERIOD_UNKNOWN
            elif (
                rules.repair_requires_min_period and from_day is not None and self.today < from_day
            ):
                rejection = RepairRejection.MIN_PERIOD_NOT_OVER
            elif rules.repair_requires_obligations_fulfilled and not fact.obligations_fulfilled:
                rejection = RepairRejection.OBLIGATIONS_NOT_FULFILLED
            elif rules.repair_requires_public_commitment and not fact.public_commitment:
                rejection = RepairRejection.NO_PUBLIC_COMMITMENT
        approved = rejection is None
        self.repairs[fact.application_id] = RepairRecord(
            application_id=fact.application_id,
            decision_number=fact.decision_number,
            decided_at=self.at,
            approved=approved,
            rejection=rejection,
            tier=tier.value if tier is not None else None,
        )
        self._log(
            f"repair:{fact.application_id}",
            None,
            "APPROVED" if approved else "REJECTED",
            SYSTEM,
            f"decision {fact.decision_number}"
            + ("" if rejection is None else f": {rejection.value}"),
            (fact.event_id,),
        )
        if approved:
            self._log(
                f"decision:{fact.decision_number}",
                "in_force",
                "set_aside",
                SYSTEM,
                "credit repaired (信用修复)",
                (fact.event_id,),
            )
            self.publications.append(
                self._decision_withdrawal(fact.decision_number, WithdrawalReason.REPAIRED)
            )

"""Facts: what a credit file (信用档案) ingests, and the event time each one carries.

:func:`processors.routing.route` turns an input event into facts for the first file it concerns;
:func:`processors.ledger.apply` may forward derived facts to further files. Facts are small frozen
values; a file keeps some of them as they are (a held detection *is* a :class:`DetectionFact`).

**Event time.** Windows run on the time of the decision or detection, never on arrival time
(RULES.md §2: "Implement '1年内' as a rolling 365-day window keyed on the penalty decision date").
A decision date is a day in China, so it becomes the instant that day starts in China Standard
Time (UTC+8, no daylight saving), held in UTC. Two decisions on dates 364 days apart are then
exactly 364 days apart, and the 365-day window edge falls where the calendar puts it.

Fact kinds:

- first hop (from :func:`~processors.routing.route`): :class:`DetectionFact`, :class:`PenaltyFact`,
  :class:`PermitFact`, :class:`FleetFact` (on the vehicle), :class:`LicenceFact`,
  :class:`ReviewFact`;
- forwarded by a vehicle file: :class:`ViolationFact` (one per receiving role),
  :class:`RetractionFact` (the vehicle no longer asserts a violation), :class:`FleetFact` (the
  carrier's copy of a vehicle operating certificate), or a :class:`ForwardedBatch` of them when
  one fact changes several things for the same receiver.

A weigh-in-motion pre-check is a :class:`DetectionFact` from a station type the policy does not
treat as confirmed; a suspension order (停业整顿) is a penalty with the ``SUSPENSION_ORDER``
category; a carrier's fleet violation is a :class:`ViolationFact` in the ``FLEET`` role.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import assert_never

from processors.model import (
    ChangeType,
    LicenceStatus,
    LicenceType,
    ObjectionAction,
    ObjectionTarget,
    PenaltyCategory,
    Procedure,
    StationType,
    SubjectRef,
    ViolationCode,
)

CHINA_STANDARD_TIME = timezone(timedelta(hours=8), "CST")
"""Decision dates are days in China (UTC+8, no daylight saving)."""


@functools.lru_cache(maxsize=8192)
def start_of_day(day: date) -> datetime:
    """The instant ``day`` begins in China, in UTC (cached: decision dates repeat a lot)."""
    return datetime.combine(day, time(), CHINA_STANDARD_TIME).astimezone(UTC)


def china_date(instant: datetime) -> date:
    """The date in China at ``instant`` (timezone-aware)."""
    return instant.astimezone(CHINA_STANDARD_TIME).date()


# --- classifications ----------------------------------------------------------------------------


class ViolationKind(enum.StrEnum):
    """What a violation counts towards."""

    OVERLOAD = "OVERLOAD"
    """违法超限运输: counts for the vehicle, driver and carrier overload lists."""
    INSTIGATION = "INSTIGATION"
    """指使、强令超限: counts for the instigator rule (2017 通知 item 5)."""
    OTHER = "OTHER"
    """Any other transport violation: score and watchlist only."""


def kind_of(code: ViolationCode) -> ViolationKind:
    """The kind of violation a decision's violation code describes."""
    match code:
        case ViolationCode.OVERLOAD_TRANSPORT:
            return ViolationKind.OVERLOAD
        case ViolationCode.INSTIGATE_OVERLOAD:
            return ViolationKind.INSTIGATION
        case ViolationCode.REFUSE_INSPECTION | ViolationCode.OTHER:
            return ViolationKind.OTHER
        case _:
            assert_never(code)


class ViolationRole(enum.StrEnum):
    """How the subject of a file answers for a violation."""

    VEHICLE = "VEHICLE"
    """The vehicle's own case (held in the vehicle file)."""
    DRIVER = "DRIVER"
    """The subject drove the vehicle."""
    FLEET = "FLEET"
    """The vehicle is in the subject's fleet (the carrier's ratio rule)."""
    LOADED = "LOADED"
    """The subject loaded the vehicle (货运源头单位, 62号令 第二十八条)."""
    PENALISED = "PENALISED"
    """The decision penalised the subject itself."""


class ViolationBasis(enum.StrEnum):
    """What established a violation."""

    PENALTY = "PENALTY"
    """A penalty decision (行政处罚)."""
    PRECISE_WEIGHING = "PRECISE_WEIGHING"
    """A confirmed weighing that no penalty has (yet) taken over."""


# --- first-hop facts ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DetectionFact:
    """A weighing of a vehicle, as its vehicle file sees it."""

    event_id: str
    """Id of the source event; a resend carries the same id."""
    detection_id: str
    """Station detection number; penalties link to it."""
    detected_at: datetime
    """When the vehicle was weighed."""
    station_id: str
    """Where it was weighed."""
    station_type: StationType
    """Precise weighing or weigh-in-motion; the policy says which ones are confirmed."""
    gross_weight_kg: int
    """Measured gross weight."""
    legal_limit_kg: int
    """Legal gross limit of the vehicle."""
    driver: SubjectRef | None
    """The driver, where the station knows them."""
    carrier: SubjectRef | None
    """The carrier named by the station, where known."""
    loading_source: SubjectRef | None
    """The loading source named by the station, where known."""


@dataclass(frozen=True, slots=True)
class PenaltyFact:
    """One revision of a penalty decision; the file holding it keeps the highest revision."""

    event_id: str
    """Id of the source event."""
    decision_number: str
    """行政处罚决定书文号: the identity of the decision across revisions."""
    revision: int
    """0 for the original; a higher revision supersedes a lower one whatever the arrival order."""
    change_type: ChangeType
    """Issued, modified or revoked."""
    code: ViolationCode
    """Violation class of this revision; a modification may change it."""
    decision_date: date
    """处罚决定日期 carried by this revision."""
    fine_amount_yuan: Decimal
    """Fine in yuan."""
    penalty_categories: tuple[PenaltyCategory, ...]
    """处罚类别."""
    related_detection_ids: tuple[str, ...]
    """Detections this decision confirms."""
    penalised: SubjectRef | None
    """The subject the decision penalises (never a vehicle)."""
    driver: SubjectRef | None
    """The driver in the case, when known (the penalised person when they are the driver)."""
    carrier: SubjectRef | None
    """The carrier in the case, when known (the penalised firm when it is the carrier)."""
    procedure: Procedure = Procedure.GENERAL
    """Simple or general procedure: part of the publication tier a repair is judged by."""

    @property
    def is_revoked(self) -> bool:
        """This revision takes the decision back entirely."""
        return self.change_type is ChangeType.REVOKED

    @property
    def kind(self) -> ViolationKind:
        """What this revision counts towards."""
        return kind_of(self.code)


@dataclass(frozen=True, slots=True)
class PermitFact:
    """One revision of an oversize transport permit (超限运输许可) of the file's vehicle."""

    event_id: str
    """Id of the source event."""
    licence_number: str
    """许可编号: the permit's identity across revisions."""
    revision: int
    """0 for the grant; the file keeps the highest revision."""
    status: LicenceStatus
    """Status after this revision."""
    decision_date: date
    """Date of this revision's decision."""
    valid_from: datetime
    """First instant the permit covers."""
    valid_until: datetime | None
    """Last instant the permit covers (inclusive); None when open-ended."""

    def covers(self, instant: datetime) -> bool:
        """Whether a weighing at ``instant`` is permitted; both ends of the validity count.

        A revoked (撤销) permit never covered anything: it is void from the start. A suspended or
        cancelled one covered only what happened before the day of that decision.
        """
        if self.status is LicenceStatus.REVOKED or instant < self.valid_from:
            return False
        if self.valid_until is not None and instant > self.valid_until:
            return False
        if self.status is LicenceStatus.GRANTED:
            return True
        return instant < start_of_day(self.decision_date)


@dataclass(frozen=True, slots=True)
class FleetFact:
    """One revision of a vehicle operating certificate (道路运输证): vehicle tied to carrier."""

    event_id: str
    """Id of the source event of this revision."""
    licence_number: str
    """Certificate number: its identity across revisions."""
    revision: int
    """The holder keeps the highest revision."""
    status: LicenceStatus
    """Status after this revision."""
    decision_date: date
    """Date of this revision's decision."""
    vehicle_key: str
    """The vehicle the certificate is for."""
    carrier: SubjectRef | None
    """The carrier the certificate ties the vehicle to in this revision."""
    valid_from: date
    """有效期自."""
    valid_until: date | None
    """有效期至; None when open-ended."""
    carriers_named: tuple[str, ...]
    """Every carrier key any known revision named: a carrier that lost the vehicle is told."""

    def ties_at(self, instant: datetime) -> bool:
        """Whether the certificate ties the vehicle to ``self.carrier`` at ``instant``.

        Suspension does not break the tie; revocation or cancellation ends it on the day of
        that decision.
        """
        if self.carrier is None or instant < start_of_day(self.valid_from):
            return False
        if self.valid_until is not None and instant >= start_of_day(
            self.valid_until + timedelta(days=1)
        ):
            return False
        if self.status in (LicenceStatus.GRANTED, LicenceStatus.SUSPENDED):
            return True
        return instant < start_of_day(self.decision_date)

    def merged_with(self, other: FleetFact) -> FleetFact:
        """The newer revision of the two, naming every carrier either named."""
        newer = max(self, other, key=lambda fact: (fact.revision, fact.event_id))
        carriers = tuple(sorted(set(self.carriers_named) | set(other.carriers_named)))
        if carriers == newer.carriers_named:
            return newer
        return FleetFact(
            event_id=newer.event_id,
            licence_number=newer.licence_number,
            revision=newer.revision,
            status=newer.status,
            decision_date=newer.decision_date,
            vehicle_key=newer.vehicle_key,
            carrier=newer.carrier,
            valid_from=newer.valid_from,
            valid_until=newer.valid_until,
            carriers_named=carriers,
        )


@dataclass(frozen=True, slots=True)
class LicenceFact:
    """A licence of the subject itself (operating licence, qualification): history only."""

    event_id: str
    """Id of the source event."""
    licence_number: str
    """许可编号."""
    licence_type: LicenceType
    """Which licence."""
    status: LicenceStatus
    """Status after the decision."""
    decision_date: date
    """许可决定日期."""
    valid_from: date
    """有效期自: the subject has been licensed since then (the red list's minimum history)."""


@dataclass(frozen=True, slots=True)
class ReviewFact:
    """A periodic tick from the edge: moves the file's clock, so the red list can be re-judged.

    The red list depends on time passing without violations, which no other fact reports.
    """

    event_id: str
    """Id of the tick, e.g. ``review:<subject>:<date>``."""
    as_of: datetime
    """The instant to judge at."""


@dataclass(frozen=True, slots=True)
class ObjectionFact:
    """An objection (异议) event for the file that holds its target."""

    event_id: str
    """Id of the source event."""
    objection_id: str
    """Identity of the objection across its events."""
    action: ObjectionAction
    """Filed, upheld or rejected."""
    target: ObjectionTarget
    """A list entry or a decision record."""
    occurred_at: datetime
    """When it was filed or resolved."""
    handled_by: str
    """The agency that handles it."""
    entry_key: str | None = None
    """LIST_ENTRY: ``LIST:rule`` as the file keys its entries."""
    decision_number: str | None = None
    """DECISION: the disputed decision."""
    reason: str = ""
    """The statement or conclusion (may hold personal data: never logged)."""


@dataclass(frozen=True, slots=True)
class RepairFact:
    """A credit repair (信用修复) application for a decision the file holds."""

    event_id: str
    """Id of the source event."""
    application_id: str
    """Identity of the application."""
    decision_number: str
    """The record to repair."""
    applied_at: datetime
    """When the application was made."""
    obligations_fulfilled: bool
    """The penalty's obligations are completely fulfilled."""
    public_commitment: bool
    """A public credit commitment was made."""


# --- forwarded facts ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ViolationFact:
    """A counted violation as one subject answers for it."""

    violation_id: str
    """Identity of the violation, stable while its case stands (see ``processors.ledger``)."""
    role: ViolationRole
    """How the receiving subject answers for it."""
    occurred_at: datetime
    """Window time: the earliest live decision's date if penalised, else the weighing time."""
    code: ViolationCode
    """Violation class."""
    basis: ViolationBasis
    """Penalty or confirmed weighing."""
    vehicle_key: str | None
    """The vehicle, when the case concerns one."""
    detection_ids: tuple[str, ...]
    """Detections in the case."""
    decision_numbers: tuple[str, ...]
    """Live decisions in the case."""
    source_event_ids: tuple[str, ...]
    """Events the case stands on: its evidence."""
    fine_amount_yuan: Decimal
    """Total fine of the live decisions."""
    penalty_categories: tuple[PenaltyCategory, ...]
    """Every 处罚类别 of the live decisions."""
    gross_weight_kg: int | None = None
    """Heaviest confirmed weighing in the case (by overload ratio), if any."""
    legal_limit_kg: int | None = None
    """Legal limit for that weighing."""

    @property
    def kind(self) -> ViolationKind:
        """What the violation counts towards."""
        return kind_of(self.code)

    @property
    def key(self) -> str:
        """Where a receiving file holds it: one copy per role and violation."""
        return f"{self.role}|{self.violation_id}"

    def in_role(self, role: ViolationRole) -> ViolationFact:
        """The same violation as another subject answers for it."""
        # Built directly: dataclasses.replace costs more than the rest of a forward.
        return ViolationFact(
            self.violation_id,
            role,
            self.occurred_at,
            self.code,
            self.basis,
            self.vehicle_key,
            self.detection_ids,
            self.decision_numbers,
            self.source_event_ids,
            self.fine_amount_yuan,
            self.penalty_categories,
            self.gross_weight_kg,
            self.legal_limit_kg,
        )


@dataclass(frozen=True, slots=True)
class RetractionFact:
    """The sending vehicle file no longer asserts a violation in this role."""

    violation_id: str
    """The violation taken back."""
    role: ViolationRole
    """The role it was held in."""
    effective_time: datetime
    """Event time of what took it back (a revocation's date, a permit's decision date)."""
    cause_event_ids: tuple[str, ...]
    """Events that took it back."""

    @property
    def key(self) -> str:
        """The held copy it removes."""
        return f"{self.role}|{self.violation_id}"


ForwardedChange = ViolationFact | RetractionFact | FleetFact
"""What a vehicle file tells another file."""


@dataclass(frozen=True, slots=True)
class ForwardedBatch:
    """Several changes one vehicle fact made for one receiving file, applied at once.

    When a case changes its identity (a penalty links two weighings into one case), the
    receiver gets the new violation and the retraction of the old one together, so its lists
    are judged once, after both: no REMOVE-then-ADD (or ADD-then-REMOVE) in between.
    """

    changes: tuple[ForwardedChange, ...]
    """Upserts and retractions, in the order to apply them."""


Fact = (
    DetectionFact
    | PenaltyFact
    | PermitFact
    | FleetFact
    | LicenceFact
    | ReviewFact
    | ObjectionFact
    | RepairFact
    | ViolationFact
    | RetractionFact
    | ForwardedBatch
)


def fact_time(fact: Fact) -> datetime:
    """The event time of a fact."""
    match fact:
        case DetectionFact():
            return fact.detected_at
        case PenaltyFact() | PermitFact() | FleetFact() | LicenceFact():
            return start_of_day(fact.decision_date)
        case ReviewFact():
            return fact.as_of
        case ObjectionFact():
            return fact.occurred_at
        case RepairFact():
            return fact.applied_at
        case ViolationFact():
            return fact.occurred_at
        case RetractionFact():
            return fact.effective_time
        case ForwardedBatch():
            return max(fact_time(change) for change in fact.changes)
        case _:
            assert_never(fact)


def fact_event_ids(fact: Fact) -> tuple[str, ...]:
    """The source events of a fact."""
    match fact:
        case DetectionFact() | PenaltyFact() | PermitFact() | FleetFact() | LicenceFact():
            return (fact.event_id,)
        case ReviewFact() | ObjectionFact() | RepairFact():
            return (fact.event_id,)
        case ViolationFact():
            return fact.source_event_ids
        case RetractionFact():
            return fact.cause_event_ids
        case ForwardedBatch():
            return tuple(sorted({e for change in fact.changes for e in fact_event_ids(change)}))
        case _:
            assert_never(fact)

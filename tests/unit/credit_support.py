"""Builders of input events and a broker-free pipeline for the credit rule tests.

:class:`Pipeline` does what the stream does, in memory: route an event, apply each fact to its
file, and apply the forwarded facts to theirs (first in, first out) until none are left.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from processors.disclosure import PublicationRequest
from processors.facts import Fact, ReviewFact, start_of_day
from processors.ledger import CreditFile, apply, new_file
from processors.lifecycle import AuditRecord
from processors.lists import EnforcementAlert, ListAction, ListName, ListTrigger
from processors.model import (
    ChangeType,
    InputEvent,
    LicenceStatus,
    LicenceType,
    LicensingDecision,
    OverloadDetection,
    PenaltyCategory,
    PenaltyDecision,
    PlateColour,
    Procedure,
    StationType,
    SubjectKind,
    SubjectRef,
    SubjectType,
    ViolationCode,
    vehicle_key,
)
from processors.policy import PolicyBook, parse_policy_book
from processors.routing import route

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BOOK = parse_policy_book((REPO / "config" / "policy.yaml").read_text(encoding="utf-8"))
NOW = datetime(2030, 1, 1, tzinfo=UTC)
"""Processing time for the tests: after every event time used."""

D = date.fromisoformat

PLATE = "鲁P12345"
CARRIER_USCC = "91371524MA3C00001X"
DRIVER_ID = "371524198001011234"
LOADING_SOURCE_USCC = "91371524MA3C00009Y"
INSTIGATOR_USCC = "91371524MA3C00007W"


def vehicle(plate: str = PLATE) -> SubjectRef:
    """The file key of a yellow-plated vehicle."""
    return SubjectRef(SubjectKind.VEHICLE, vehicle_key(plate, PlateColour.YELLOW))


def driver(id_number: str = DRIVER_ID) -> SubjectRef:
    """The file key of a driver."""
    return SubjectRef(SubjectKind.DRIVER, id_number)


def carrier(uscc: str = CARRIER_USCC) -> SubjectRef:
    """The file key of a carrier."""
    return SubjectRef(SubjectKind.CARRIER, uscc)


def instant(day: str, hour: int = 10, second: int = 0) -> datetime:
    """An instant on ``day`` (China date) at ``hour`` China time."""
    return start_of_day(D(day)) + timedelta(hours=hour, seconds=second)


def weighing(
    event_id: str,
    at: datetime,
    *,
    detection_id: str | None = None,
    plate: str = PLATE,
    precise: bool = True,
    gross_kg: int = 55_000,
    limit_kg: int = 49_000,
    driver_id: str | None = DRIVER_ID,
    carrier_uscc: str | None = CARRIER_USCC,
    loading_source_uscc: str | None = None,
) -> OverloadDetection:
    """A weighing, over the limit by default, at a fixed station (or weigh-in-motion)."""
    return OverloadDetection(
        event_id=event_id,
        detection_id=detection_id or f"det-{event_id}",
        event_time=at,
        station_id="DE-01" if precise else "WIM-07",
        station_name="东阿治超站" if precise else "G220 不停车检测点",
        station_type=StationType.FIXED_STATION_PRECISE if precise else StationType.WEIGH_IN_MOTION,
        plate_number=plate,
        plate_colour=PlateColour.YELLOW,
        vehicle_class="六轴列车",
        axle_count=6,
        gross_weight_kg=gross_kg,
        legal_limit_kg=limit_kg,
        reported_overload_ratio=gross_kg / limit_kg - 1,
        carrier_uscc=carrier_uscc,
        driver_id_number=driver_id,
        loading_source_uscc=loading_source_uscc,
    )


def penalty(
    event_id: str,
    decided: str,
    *,
    number: str | None = None,
    revision: int = 0,
    change: ChangeType = ChangeType.ISSUED,
    code: ViolationCode = ViolationCode.OVERLOAD_TRANSPORT,
    plate: str | None = PLATE,
    subject_id_number: str | None = DRIVER_ID,
    subject_uscc: str | None = None,
    driver_id: str | None = None,
    carrier_uscc: str | None = CARRIER_USCC,
    fine_yuan: str = "2000",
    categories: tuple[PenaltyCategory, ...] = (PenaltyCategory.FINE,),
    detections: tuple[str, ...] = (),
) -> PenaltyDecision:
    """A penalty decision; by default an overload fine on the driver of ``PLATE``."""
    natural = subject_uscc is None
    return PenaltyDecision(
        event_id=event_id,
        decision_number=number or f"东交罚〔{event_id}〕",
        revision=revision,
        change_type=change,
        subject_name="张三" if natural else "东阿某运输有限公司",
        subject_type=SubjectType.NATURAL_PERSON if natural else SubjectType.LEGAL_PERSON,
        violation_code=code,
        violation_type="违法超限运输" if code is ViolationCode.OVERLOAD_TRANSPORT else "其他",
        facts="车货总质量超过限定标准",
        legal_basis="公路安全保护条例 第66条",
        penalty_categories=categories,
        content=f"罚款{fine_yuan}元",
        fine_amount_yuan=Decimal(fine_yuan),
        decision_date=D(decided),
        authority="东阿县交通运输局",
        authority_code="11371524004308000X",
        procedure=Procedure.GENERAL,
        subject_uscc=subject_uscc,
        subject_id_number=subject_id_number if natural else None,
        plate_number=plate,
        plate_colour=PlateColour.YELLOW if plate else None,
        driver_id_number=driver_id,
        carrier_uscc=carrier_uscc,
        related_detection_ids=detections,
    )


def licence(
    event_id: str,
    licence_type: LicenceType,
    *,
    number: str,
    decided: str,
    valid_from: str,
    valid_until: str | None = None,
    status: LicenceStatus = LicenceStatus.GRANTED,
    revision: int = 0,
    plate: str | None = None,
    carrier_uscc: str | None = None,
    subject_uscc: str | None = CARRIER_USCC,
    permit_from: datetime | None = None,
    permit_until: datetime | None = None,
) -> LicensingDecision:
    """A licensing decision (certificate, permit, operating licence)."""
    return LicensingDecision(
        event_id=event_id,
        licence_number=number,
        document_number=f"鲁交许〔{event_id}〕",
        document_name="行政许可决定书",
        revision=revision,
        licence_type=licence_type,
        status=status,
        subject_name="东阿某运输有限公司",
        subject_type=SubjectType.LEGAL_PERSON,
        licence_category="普通",
        certificate_name="道路运输证",
        content="许可",
        decision_date=D(decided),
        valid_from=D(valid_from),
        valid_until=None if valid_until is None else D(valid_until),
        authority="东阿县交通运输局",
        authority_code="11371524004308000X",
        subject_uscc=subject_uscc,
        plate_number=plate,
        plate_colour=PlateColour.YELLOW if plate else None,
        carrier_uscc=carrier_uscc,
        permit_valid_from=permit_from,
        permit_valid_until=permit_until,
    )


def certificate(
    event_id: str,
    plate: str,
    *,
    carrier_uscc: str = CARRIER_USCC,
    decided: str = "2023-01-01",
    status: LicenceStatus = LicenceStatus.GRANTED,
    revision: int = 0,
    number: str | None = None,
) -> LicensingDecision:
    """A vehicle operating certificate tying ``plate`` to a carrier."""
    return licence(
        event_id,
        LicenceType.VEHICLE_OPERATING_CERTIFICATE,
        number=number or f"cert-{plate}",
        decided=decided,
        valid_from=decided,
        status=status,
        revision=revision,
        plate=plate,
        carrier_uscc=carrier_uscc,
    )


def permit(
    event_id: str,
    start: datetime,
    end: datetime,
    *,
    plate: str = PLATE,
    decided: str = "2024-01-01",
) -> LicensingDecision:
    """An oversize transport permit valid from ``start`` to ``end`` (both instants included)."""
    return licence(
        event_id,
        LicenceType.OVERSIZE_TRANSPORT_PERMIT,
        number=f"permit-{event_id}",
        decided=decided,
        valid_from=decided,
        plate=plate,
        permit_from=start,
        permit_until=end,
    )


def review(day: str) -> ReviewFact:
    """A review tick at the start of ``day`` (China time)."""
    return ReviewFact(f"review-{day}", start_of_day(D(day)))


@dataclass
class Pipeline:
    """Routes events, applies facts and forwards them, keeping every file in memory."""

    book: PolicyBook = DEFAULT_BOOK
    now: datetime = NOW
    files: dict[SubjectRef, CreditFile] = field(default_factory=dict)
    triggers: list[ListTrigger] = field(default_factory=list)
    alerts: list[EnforcementAlert] = field(default_factory=list)
    stale: int = 0
    hops: int = 0
    audit: list[AuditRecord] = field(default_factory=list)
    publications: list[PublicationRequest] = field(default_factory=list)

    def feed(self, *events: InputEvent) -> Pipeline:
        """Process ``events`` in order, each to the end of its forwards."""
        for event in events:
            self._run(deque(route(event)))
        return self

    def deliver(self, subject: SubjectRef, fact: Fact) -> Pipeline:
        """Apply one fact straight to a file (as the edge's timer does with a review tick)."""
        self._run(deque([(subject, fact)]))
        return self

    def _run(self, queue: deque[tuple[SubjectRef, Fact]]) -> None:
        while queue:
            subject, fact = queue.popleft()
            outcome = apply(self.file(subject), fact, self.book, self.now)
            self.files[subject] = outcome.file
            self.triggers += outcome.triggers
            self.alerts += outcome.alerts
            self.audit += outcome.audit
            self.publications += outcome.publications
            self.stale += outcome.stale
            self.hops += 1
            for target, _ in outcome.forwards:
                assert target.kind is not SubjectKind.VEHICLE, "forwarding must end"
            queue.extend(outcome.forwards)

    def file(self, subject: SubjectRef) -> CreditFile:
        """The subject's file (empty if never touched)."""
        return self.files.get(subject) or new_file(subject)

    def members(self, subject: SubjectRef) -> set[tuple[ListName, str]]:
        """The subject's standing list entries, as (list, rule)."""
        return {(e.list_name, e.rule_id) for e in self.file(subject).entries.values()}

    def actions(self, subject: SubjectRef) -> list[tuple[ListAction, ListName, str]]:
        """Every trigger raised for the subject, in order."""
        return [(t.action, t.list_name, t.rule_id) for t in self.triggers if t.subject == subject]

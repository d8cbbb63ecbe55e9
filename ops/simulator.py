"""Seeded synthetic traffic for Dong'a county (东阿县): carriers, vehicles, drivers, weigh stations.

The simulator first grants every vehicle its operating certificate (licensing decisions that tie
it to a carrier), then emits overload detections at fixed stations (precise weighing) and
weigh-in-motion points, penalty decisions that follow a share of precise-weighing overloads,
and a small share of bad records. The simulated clock runs from ``start`` towards the present,
so event times are never in the future. The same seed gives the same events.

When :class:`Simulation` asks for them (the demo does; the defaults do not, so that benchmarks
and pipeline tests keep their traffic), it also emits the two lifecycle inputs:

- objections (异议): a vehicle whose confirmed overloads in 365 days exceed three is blacklisted;
  its carrier sometimes objects to the entry during the pre-publication notice, and the bureau
  rejects the objection (most often) or upholds it some days later;
- credit repair applications (信用修复) for penalties older than the shortest publication period,
  most with their obligations fulfilled and a public commitment made;
- and now and then a malformed one of either, which the pipeline dead-letters.

These draw from a random generator of their own: for a given seed, the detections, penalties and
certificates are the same with and without them.
"""

from __future__ import annotations

import bisect
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from processors.identifiers import resident_id_check_digit, uscc_check_character
from processors.model import (
    ChangeType,
    InputEvent,
    LicenceStatus,
    LicenceType,
    LicensingDecision,
    Objection,
    ObjectionAction,
    ObjectionTarget,
    OverloadDetection,
    PenaltyCategory,
    PenaltyDecision,
    PlateColour,
    Procedure,
    RepairApplication,
    StationType,
    SubjectKind,
    SubjectType,
    ViolationCode,
)

COUNTY_REGION_CODE = "371524"  # 东阿县, 聊城市
BUREAU_USCC_BODY = "1137152400400123X"  # 东阿县交通运输局 (illustrative)
PLATE_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
STATIONS = (
    ("DA-G220-01", "东阿县G220超限检测站", StationType.FIXED_STATION_PRECISE),
    ("DA-S250-02", "东阿县S250超限检测站", StationType.FIXED_STATION_PRECISE),
    ("DA-WIM-03", "东阿县刘集不停车检测点", StationType.WEIGH_IN_MOTION),
    ("DA-WIM-04", "东阿县铜城不停车检测点", StationType.WEIGH_IN_MOTION),
)
LIMITS_BY_AXLES = {2: 18_000, 3: 25_000, 4: 31_000, 5: 43_000, 6: 49_000}
BUREAU_NAME = "东阿县交通运输局"

# How the simulator tells that a vehicle is blacklisted: its own count of confirmed overloads
# (precise weighings over the limit) in a rolling window, as config/policy.yaml counts them.
BLACKLIST_WINDOW = timedelta(days=365)
BLACKLIST_VIOLATIONS_GT = 3
VEHICLE_BLACKLIST_RULE = "overload.vehicle"
# Objections come during the 10-working-day notice before publication (RULES.md §2), and are
# decided within a few weeks (RULES.md §4: 2 + 2 + 10 working days in 广州).
OBJECTION_FILED_WITHIN_DAYS = (1.0, 12.0)
OBJECTION_DECIDED_WITHIN_DAYS = (3.0, 20.0)
OBJECTION_UPHELD_SHARE = 0.15
# Repair is possible once the shortest publication period has passed (3 months, RULES.md §3).
REPAIR_AFTER = timedelta(days=90)


def make_uscc(rng: random.Random, prefix: str = "91" + COUNTY_REGION_CODE) -> str:
    body = prefix + "".join(
        rng.choice("0123456789ABCDEFGHJKLMNPQRTUWXY") for _ in range(17 - len(prefix))
    )
    return body + uscc_check_character(body)


def make_resident_id(rng: random.Random) -> str:
    birth = date(1965, 1, 1) + timedelta(days=rng.randrange(0, 365 * 35))
    body = COUNTY_REGION_CODE + birth.strftime("%Y%m%d") + f"{rng.randrange(0, 1000):03d}"
    return body + resident_id_check_digit(body)


@dataclass(frozen=True, slots=True)
class Vehicle:
    plate: str
    axles: int
    carrier_uscc: str
    carrier_name: str
    driver_id: str
    driver_name: str
    overload_propensity: float
    """Chance that one of its trips is overloaded: a few habitual offenders, many clean trucks."""


@dataclass(frozen=True, slots=True)
class Simulation:
    """Parameters of a run."""

    seed: int = 7
    carriers: int = 40
    vehicles: int = 400
    bad_record_share: float = 0.01
    penalty_share: float = 0.8
    start: datetime = datetime(2025, 11, 1, tzinfo=UTC)
    step: timedelta = timedelta(minutes=20)
    """Simulated time between two detections."""
    objection_share: float = 0.0
    """Share of vehicle blacklistings whose carrier objects (异议); 0 emits no objections."""
    repair_share: float = 0.0
    """Chance per step of a credit repair application (信用修复) for an older penalty."""
    bad_lifecycle_share: float = 0.05
    """Share of objections and repair applications that also come once malformed."""


def demo_simulation(seed: int) -> Simulation:
    """The demo's traffic: every input, objections and repair applications at a county's rate.

    About one in three blacklisted vehicles' carriers objects; a repair application comes every
    few hundred steps (some days of simulated time), a small share of the penalties.
    """
    return Simulation(seed=seed, objection_share=0.3, repair_share=0.003)


@dataclass(slots=True)
class _PendingObjection:
    """An objection the simulator will file, then resolve, when the simulated clock gets there."""

    number: int
    vehicle: Vehicle
    due: datetime
    filed: bool = False


@dataclass(slots=True)
class _Lifecycle:
    """What the lifecycle events need to remember of the traffic so far."""

    overloads: dict[str, deque[datetime]] = field(default_factory=dict)
    """Confirmed overloads of each plate inside the blacklist window."""
    listed: set[str] = field(default_factory=set)
    """Plates the simulator counts as blacklisted (until an overload finds the window short)."""
    objections: list[_PendingObjection] = field(default_factory=list)
    """Objections still to file or to resolve."""
    penalties: list[tuple[datetime, str, Vehicle]] = field(default_factory=list)
    """Issued penalties in order: (decided, decision number, vehicle)."""
    repaired: set[str] = field(default_factory=set)
    """Decision numbers a repair application was made for."""
    objection_count: int = 0
    repair_count: int = 0


class Simulator:
    """Generates input events, and the raw bytes of bad records, reproducibly."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.rng = random.Random(sim.seed)  # noqa: S311 - synthetic data, not security
        rng = self.rng
        carriers = [
            (make_uscc(rng), f"东阿县{name}物流有限公司")
            for name in (f"第{i + 1}运输" for i in range(sim.carriers))
        ]
        self.vehicles: list[Vehicle] = []
        plates: set[str] = set()
        while len(self.vehicles) < sim.vehicles:
            plate = "鲁P" + "".join(rng.choice(PLATE_CHARS) for _ in range(5))
            if plate in plates:
                continue
            plates.add(plate)
            uscc, name = rng.choice(carriers)
            habitual = rng.random() < 0.08
            self.vehicles.append(
                Vehicle(
                    plate=plate,
                    axles=rng.choice((2, 3, 4, 5, 6, 6, 6)),
                    carrier_uscc=uscc,
                    carrier_name=name,
                    driver_id=make_resident_id(rng),
                    driver_name="驾驶员" + str(len(self.vehicles)),
                    overload_propensity=0.6 if habitual else 0.03,
                )
            )
        self.clock = sim.start
        self.sequence = 0
        # A generator of its own, seeded from the run's seed: lifecycle events never shift the
        # draws of the main traffic.
        self.lifecycle_rng = random.Random(f"lifecycle-{sim.seed}")  # noqa: S311 - synthetic
        self._lifecycle = _Lifecycle()

    def certificates(self) -> Iterator[LicensingDecision]:
        """One vehicle operating certificate (道路运输证) per vehicle, tying it to its carrier."""
        for index, vehicle in enumerate(self.vehicles):
            # Within the late-event horizon (365 days) of the first detection, so the order in
            # which certificates and detections arrive does not change the outcome.
            decided = (self.sim.start - timedelta(days=300)).date()
            yield LicensingDecision(
                event_id=f"sim-cert-{index}",
                licence_number=f"鲁交运管聊字{371524000000 + index}",
                document_number=f"东交许〔{decided.year}〕{index + 1}号",
                document_name="道路运输证核发决定书",
                revision=0,
                licence_type=LicenceType.VEHICLE_OPERATING_CERTIFICATE,
                status=LicenceStatus.GRANTED,
                subject_name=vehicle.carrier_name,
                subject_type=SubjectType.LEGAL_PERSON,
                licence_category="普通",
                certificate_name="道路运输证",
                content="道路普通货物运输",
                decision_date=decided,
                valid_from=decided,
                valid_until=decided + timedelta(days=365 * 6),
                authority="东阿县交通运输局",
                authority_code=BUREAU_USCC,
                subject_uscc=vehicle.carrier_uscc,
                plate_number=vehicle.plate,
                plate_colour=PlateColour.YELLOW,
                carrier_uscc=vehicle.carrier_uscc,
            )

    def next_events(self) -> list[InputEvent]:
        """The events of one simulated step: a detection, and a penalty when one follows."""
        rng = self.rng
        self.sequence += 1
        self.clock = min(self.clock + self.sim.step, datetime.now(UTC) - timedelta(minutes=1))
        vehicle = rng.choice(self.vehicles)
        station_id, station_name, station_type = rng.choice(STATIONS)
        limit = LIMITS_BY_AXLES[vehicle.axles]
        overloaded = rng.random() < vehicle.overload_propensity
        # Overload ratios cluster just above the limit with a long tail (most cases < 30 %).
        ratio = rng.expovariate(8.0) + 0.02 if overloaded else -rng.uniform(0.02, 0.4)
        gross = int(limit * (1 + ratio))
        detection = OverloadDetection(
            event_id=f"sim-det-{self.sim.seed}-{self.sequence}",
            detection_id=f"{station_id}-{self.sequence:08d}",
            event_time=self.clock,
            station_id=station_id,
            station_name=station_name,
            station_type=station_type,
            plate_number=vehicle.plate,
            plate_colour=PlateColour.YELLOW,
            vehicle_class=f"{vehicle.axles}轴货车",
            axle_count=vehicle.axles,
            gross_weight_kg=gross,
            legal_limit_kg=limit,
            reported_overload_ratio=round(gross / limit - 1, 4),
            carrier_uscc=vehicle.carrier_uscc,
            carrier_name=vehicle.carrier_name,
            driver_id_number=vehicle.driver_id,
            driver_name=vehicle.driver_name,
        )
        events: list[InputEvent] = [detection]
        confirmed = overloaded and station_type is StationType.FIXED_STATION_PRECISE
        if confirmed and rng.random() < self.sim.penalty_share:
            fine = Decimal(min(30_000, 500 * max(1, int(ratio * 100 / 5))))
            events.append(
                PenaltyDecision(
                    event_id=f"sim-pen-{self.sim.seed}-{self.sequence}",
                    decision_number=f"东交罚〔{self.clock.year}〕{self.sequence}号",
                    revision=0,
                    change_type=ChangeType.ISSUED,
                    subject_name=vehicle.carrier_name,
                    subject_type=SubjectType.LEGAL_PERSON,
                    violation_code=ViolationCode.OVERLOAD_TRANSPORT,
                    violation_type="违法超限运输",
                    facts=f"{vehicle.plate}车货总质量{gross}千克，超过限值{limit}千克",
                    legal_basis="《公路安全保护条例》第六十四条",
                    penalty_categories=(PenaltyCategory.FINE,),
                    content=f"罚款{fine}元",
                    fine_amount_yuan=fine,
                    decision_date=self.clock.date(),
                    authority="东阿县交通运输局",
                    authority_code=BUREAU_USCC,
                    procedure=Procedure.GENERAL,
                    subject_uscc=vehicle.carrier_uscc,
                    plate_number=vehicle.plate,
                    plate_colour=PlateColour.YELLOW,
                    driver_id_number=vehicle.driver_id,
                    carrier_uscc=vehicle.carrier_uscc,
                    related_detection_ids=(detection.detection_id,),
                )
            )
        if self.sim.objection_share > 0 or self.sim.repair_share > 0:
            events += self._lifecycle_events(vehicle, confirmed, events)
        return events

    # --- objections and credit repair ---------------------------------------------------------

    def _lifecycle_events(
        self, vehicle: Vehicle, confirmed: bool, step_events: list[InputEvent]
    ) -> list[InputEvent]:
        """Objections and repair applications due at the clock, after this step's traffic."""
        state = self._lifecycle
        for event in step_events:
            if isinstance(event, PenaltyDecision):
                state.penalties.append((self.clock, event.decision_number, vehicle))
        if confirmed:
            self._count_overload(vehicle)
        events: list[InputEvent] = []
        if self.sim.objection_share > 0:
            events += self._due_objection_events()
        if self.lifecycle_rng.random() < self.sim.repair_share:
            events += self._repair_application()
        return events

    def _count_overload(self, vehicle: Vehicle) -> None:
        state, rng = self._lifecycle, self.lifecycle_rng
        overloads = state.overloads.setdefault(vehicle.plate, deque())
        overloads.append(self.clock)
        while overloads and overloads[0] <= self.clock - BLACKLIST_WINDOW:
            overloads.popleft()
        if len(overloads) <= BLACKLIST_VIOLATIONS_GT:
            state.listed.discard(vehicle.plate)
            return
        if vehicle.plate in state.listed:
            return
        state.listed.add(vehicle.plate)
        if rng.random() < self.sim.objection_share:
            state.objection_count += 1
            due = self.clock + timedelta(days=rng.uniform(*OBJECTION_FILED_WITHIN_DAYS))
            state.objections.append(_PendingObjection(state.objection_count, vehicle, due))

    def _due_objection_events(self) -> list[InputEvent]:
        state, rng = self._lifecycle, self.lifecycle_rng
        events: list[InputEvent] = []
        for pending in [p for p in state.objections if p.due <= self.clock]:
            objection = self._objection(pending)
            if not pending.filed:
                pending.filed = True
                pending.due = self.clock + timedelta(
                    days=rng.uniform(*OBJECTION_DECIDED_WITHIN_DAYS)
                )
            else:
                state.objections.remove(pending)
            if rng.random() < self.sim.bad_lifecycle_share:
                events.append(self._malformed_objection(objection))
            events.append(objection)
        return events

    def _objection(self, pending: _PendingObjection) -> Objection:
        """The filing of an objection to a vehicle's blacklist entry, or its resolution."""
        if not pending.filed:
            action, reason = ObjectionAction.FILED, "申请人认为部分超限检测记录系同一次运输重复计数"
        elif self.lifecycle_rng.random() < OBJECTION_UPHELD_SHARE:
            action, reason = ObjectionAction.UPHELD, "经核查，部分检测记录有误，异议成立"
        else:
            action, reason = ObjectionAction.REJECTED, "经核查，违法事实清楚，维持原认定"
        objection_id = f"YY-{self.sim.seed}-{pending.number:05d}"
        return Objection(
            event_id=f"sim-obj-{objection_id}-{action.value}",
            objection_id=objection_id,
            action=action,
            subject_kind=SubjectKind.VEHICLE,
            target=ObjectionTarget.LIST_ENTRY,
            occurred_at=self.clock,
            handled_by=BUREAU_NAME,
            plate_number=pending.vehicle.plate,
            plate_colour=PlateColour.YELLOW,
            list_name="BLACKLIST",
            rule_id=VEHICLE_BLACKLIST_RULE,
            reason=reason,
        )

    def _malformed_objection(self, objection: Objection) -> Objection:
        """A broken first attempt at ``objection``, under an event id of its own."""
        broken = self.lifecycle_rng.choice(
            (
                {"list_name": "blacklist"},  # LIST_NAME_UNKNOWN: list names are upper case
                {"rule_id": None},  # OBJECTION_TARGET_INCOMPLETE
                {"plate_colour": None},  # SUBJECT_IDENTIFIER_MISSING
            )
        )
        return replace(objection, event_id=f"{objection.event_id}-malformed", **broken)

    def _repair_application(self) -> list[InputEvent]:
        """A repair application for a random penalty older than the shortest period, if any."""
        state, rng = self._lifecycle, self.lifecycle_rng
        eligible = bisect.bisect_right(
            state.penalties, self.clock - REPAIR_AFTER, key=lambda penalty: penalty[0]
        )
        if eligible == 0:
            return []
        _, decision_number, vehicle = state.penalties[rng.randrange(eligible)]
        if decision_number in state.repaired:
            return []
        state.repaired.add(decision_number)
        state.repair_count += 1
        application_id = f"XF-{self.sim.seed}-{state.repair_count:05d}"
        application = RepairApplication(
            event_id=f"sim-rep-{application_id}",
            application_id=application_id,
            subject_kind=SubjectKind.VEHICLE,
            decision_number=decision_number,
            applied_at=self.clock,
            obligations_fulfilled=rng.random() < 0.9,
            public_commitment=rng.random() < 0.85,
            plate_number=vehicle.plate,
            plate_colour=PlateColour.YELLOW,
            applicant_name=vehicle.carrier_name,
        )
        events: list[InputEvent] = []
        if rng.random() < self.sim.bad_lifecycle_share:
            broken = rng.choice(
                (
                    {"decision_number": ""},  # EMPTY_REQUIRED_FIELD
                    # SUBJECT_IDENTIFIER_MISSING and SUBJECT_IDENTIFIER_CONFLICT: a vehicle's
                    # plate under a carrier subject
                    {"subject_kind": SubjectKind.CARRIER},
                )
            )
            events.append(
                replace(application, event_id=f"{application.event_id}-malformed", **broken)
            )
        events.append(application)
        return events

    def is_bad_record_turn(self) -> bool:
        return self.rng.random() < self.sim.bad_record_share

    def bad_record(self) -> bytes:
        """Garbage the pipeline must dead-letter: random bytes or a truncated header."""
        return bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(0, 40)))


BUREAU_USCC = BUREAU_USCC_BODY + uscc_check_character(BUREAU_USCC_BODY)

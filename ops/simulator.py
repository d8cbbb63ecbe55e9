"""Seeded synthetic traffic for Dong'a county (东阿县): carriers, vehicles, drivers, weigh stations.

The simulator first grants every vehicle its operating certificate (licensing decisions that tie
it to a carrier), then emits overload detections at fixed stations (precise weighing) and
weigh-in-motion points, penalty decisions that follow a share of precise-weighing overloads,
and a small share of bad records. The simulated clock runs from ``start`` towards the present,
so event times are never in the future. The same seed gives the same events.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from processors.identifiers import resident_id_check_digit, uscc_check_character
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
        return events

    def is_bad_record_turn(self) -> bool:
        return self.rng.random() < self.sim.bad_record_share

    def bad_record(self) -> bytes:
        """Garbage the pipeline must dead-letter: random bytes or a truncated header."""
        return bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(0, 40)))


BUREAU_USCC = BUREAU_USCC_BODY + uscc_check_character(BUREAU_USCC_BODY)

"""Throughput of the credit rules without Kafka: route + apply over synthetic events.

Run: ``python bench/bench_rules.py [--events 100000] [--vehicles 20000] [--json]``

Prints events per second of

- a baseline: a plain ``dict`` counter update per event, in the same run (what the worker costs
  without any rule);
- the first hop: ``route`` and ``apply`` to the vehicle's file;
- the whole pipeline: the first hop plus every forwarded fact applied to its file (drivers,
  carriers, loading sources, penalised subjects),

and each one's ratio to the baseline. Files live in a dict, as the faust table would hold them
in memory; serialisation is measured separately (``file_to_dict`` of every touched file).
With ``--json`` it also prints one JSON line for ``bench/run_all.py`` (see its docstring).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from processors.facts import Fact
from processors.file_codec import file_to_dict
from processors.ledger import CreditFile, apply, new_file
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
    SubjectRef,
    SubjectType,
    ViolationCode,
)
from processors.policy import PolicyBook, parse_policy_book
from processors.routing import route

POLICY = Path(__file__).resolve().parents[1] / "config" / "policy.yaml"
START = datetime(2024, 1, 1, tzinfo=UTC)
NOW = datetime(2030, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=180)


def synthetic_events(count: int, vehicles: int, seed: int = 20260401) -> list[InputEvent]:
    """A day-to-day mix: mostly weighings (a few over the limit), some penalties and licences."""
    rng = random.Random(seed)
    plates = [f"鲁P{n:05d}" for n in range(vehicles)]
    drivers = [f"3715241980{n:08d}" for n in range(vehicles // 2)]
    carriers = [f"91371524MA{n:08d}" for n in range(vehicles // 20)]
    step = SPAN / count
    events: list[InputEvent] = []
    for n in range(count):
        at = START + step * n
        plate = rng.choice(plates)
        roll = rng.random()
        if roll < 0.88:
            precise = rng.random() < 0.3
            over = rng.random() < (0.08 if precise else 0.05)
            limit = 49_000
            gross = rng.randint(limit + 500, limit + 20_000) if over else rng.randint(20_000, limit)
            events.append(
                OverloadDetection(
                    event_id=f"e{n}",
                    detection_id=f"d{n}",
                    event_time=at,
                    station_id="DE-01" if precise else "WIM-07",
                    station_name="东阿治超站",
                    station_type=StationType.FIXED_STATION_PRECISE
                    if precise
                    else StationType.WEIGH_IN_MOTION,
                    plate_number=plate,
                    plate_colour=PlateColour.YELLOW,
                    vehicle_class="六轴列车",
                    axle_count=6,
                    gross_weight_kg=gross,
                    legal_limit_kg=limit,
                    reported_overload_ratio=gross / limit - 1,
                    carrier_uscc=rng.choice(carriers),
                    driver_id_number=rng.choice(drivers),
                )
            )
        elif roll < 0.97:
            events.append(
                PenaltyDecision(
                    event_id=f"e{n}",
                    decision_number=f"东交罚〔{n}〕",
                    revision=0,
                    change_type=ChangeType.ISSUED,
                    subject_name="张三",
                    subject_type=SubjectType.NATURAL_PERSON,
                    violation_code=ViolationCode.OVERLOAD_TRANSPORT
                    if rng.random() < 0.8
                    else ViolationCode.OTHER,
                    violation_type="违法超限运输",
                    facts="车货总质量超过限定标准",
                    legal_basis="公路安全保护条例 第66条",
                    penalty_categories=(PenaltyCategory.FINE,),
                    content="罚款2000元",
                    fine_amount_yuan=Decimal(2000),
                    decision_date=(at + timedelta(hours=8)).date(),
                    authority="东阿县交通运输局",
                    authority_code="11371524004308000X",
                    procedure=Procedure.GENERAL,
                    subject_id_number=rng.choice(drivers),
                    plate_number=plate,
                    plate_colour=PlateColour.YELLOW,
                    carrier_uscc=rng.choice(carriers),
                )
            )
        else:
            events.append(
                LicensingDecision(
                    event_id=f"e{n}",
                    licence_number=f"cert-{plate}",
                    document_number=f"鲁交许〔{n}〕",
                    document_name="行政许可决定书",
                    revision=n,
                    licence_type=LicenceType.VEHICLE_OPERATING_CERTIFICATE,
                    status=LicenceStatus.GRANTED,
                    subject_name="东阿某运输有限公司",
                    subject_type=SubjectType.LEGAL_PERSON,
                    licence_category="普通",
                    certificate_name="道路运输证",
                    content="许可",
                    decision_date=(at + timedelta(hours=8)).date(),
                    valid_from=date(2023, 1, 1),
                    valid_until=None,
                    authority="东阿县交通运输局",
                    authority_code="11371524004308000X",
                    subject_uscc=rng.choice(carriers),
                    carrier_uscc=rng.choice(carriers),
                    plate_number=plate,
                    plate_colour=PlateColour.YELLOW,
                )
            )
    return events


def baseline(events: Sequence[InputEvent]) -> int:
    """A plain dict counter update per event, keyed like the table."""
    counter: dict[str, int] = {}
    for event in events:
        key = getattr(event, "plate_number", None) or event.event_id
        counter[key] = counter.get(key, 0) + 1
    return len(counter)


def first_hop(events: Sequence[InputEvent], book: PolicyBook) -> dict[SubjectRef, CreditFile]:
    """route + apply to the first file only."""
    files: dict[SubjectRef, CreditFile] = {}
    for event in events:
        for subject, fact in route(event):
            file = files.get(subject)
            files[subject] = apply(file or new_file(subject), fact, book, NOW).file
    return files


def pipeline(events: Sequence[InputEvent], book: PolicyBook) -> dict[SubjectRef, CreditFile]:
    """route + apply, then every forward applied to its file."""
    files: dict[SubjectRef, CreditFile] = {}
    queue: deque[tuple[SubjectRef, Fact]] = deque()
    for event in events:
        queue.extend(route(event))
        while queue:
            subject, fact = queue.popleft()
            file = files.get(subject)
            outcome = apply(file or new_file(subject), fact, book, NOW)
            files[subject] = outcome.file
            queue.extend(outcome.forwards)
    return files


def timed(
    label: str,
    run: Callable[[], object],
    count: int,
    reference: float | None,
    unit: str = "events/s",
) -> float:
    """Best of three runs; prints the rate and its ratio to the baseline."""
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - began)
    rate = count / best
    ratio = "" if reference is None else f"  ({rate / reference:.4f} of baseline)"
    print(f"{label:<34} {rate:>14,.0f} {unit}{ratio}")
    return rate


def json_summary(
    baseline_rate: float, first_hop_rate: float, pipeline_rate: float
) -> dict[str, object]:
    """The machine-readable result: both paths against the dict-counter baseline."""
    reference = {"name": "dict counter update", "value": baseline_rate, "unit": "events/s"}
    return {
        "benchmark": "rules",
        "results": [
            {
                "name": name,
                "value": rate,
                "unit": "events/s",
                "baseline": reference,
                "ratio": rate / baseline_rate,
                "target": None,
                "met": None,
            }
            for name, rate in (
                ("route + apply (first hop)", first_hop_rate),
                ("route + apply + forwards", pipeline_rate),
            )
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--vehicles", type=int, default=20_000)
    parser.add_argument("--json", action="store_true", help="also print one JSON result line")
    args = parser.parse_args()
    book = parse_policy_book(POLICY.read_text(encoding="utf-8"))
    events = synthetic_events(args.events, args.vehicles)
    print(f"{args.events:,} events across {args.vehicles:,} vehicles, best of 3 runs")
    reference = timed("baseline: dict counter update", lambda: baseline(events), len(events), None)
    hop = timed(
        "route + apply (first hop)", lambda: first_hop(events, book), len(events), reference
    )
    whole = timed(
        "route + apply + forwards", lambda: pipeline(events, book), len(events), reference
    )
    files = pipeline(events, book)
    timed(
        f"file_to_dict ({len(files):,} files)",
        lambda: [file_to_dict(file) for file in files.values()],
        len(files),
        None,
        unit="files/s",
    )
    listed = sum(1 for file in files.values() if file.entries)
    print(f"files: {len(files):,}; with a list entry: {listed:,}")
    if args.json:
        print(json.dumps(json_summary(reference, hop, whole)))


if __name__ == "__main__":
    main()

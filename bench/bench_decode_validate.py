"""Throughput of the product's decode path against plain fastavro, recorded in BENCHMARKS.md.

Encodes N realistic OverloadDetection records (Confluent framing), then, in one process,
alternates three timed passes over the same payloads, round after round:

(a) baseline: ``fastavro.schemaless_reader`` on each body, the Confluent header stripped;
(b) the product: ``AvroSerde.decode`` → ``to_domain`` → ``processors.validation.validate``;
(c) for reference, (b) without validation: what the codec layer alone costs.

It prints the median records/s of each and the ratio b/a, and writes the section
"## Decode and validate" of BENCHMARKS.md (replacing an earlier one).

Run from the repository root::

    python bench/bench_decode_validate.py [--records 50000] [--rounds 5] [--no-write] [--json]

With ``--json`` it also prints one JSON line for ``bench/run_all.py`` (see its docstring).
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import fastavro

from processors.identifiers import resident_id_check_digit, uscc_check_character
from processors.model import OverloadDetection, PlateColour, StationType
from streams.codecs import CONFLUENT_HEADER_LENGTH, AvroSerde
from streams.mapping import from_domain, to_domain

try:
    from processors.validation import validate
except ImportError:  # validation is written in parallel; measure decode + map alone meanwhile
    validate = None

RECORD = "OverloadDetection"
REPOSITORY = Path(__file__).resolve().parent.parent
BENCHMARKS_FILE = REPOSITORY / "BENCHMARKS.md"
SECTION_TITLE = "## Decode and validate"
COMMAND = "python bench/bench_decode_validate.py"
TARGET_RATIO = 0.5
START = datetime(2025, 3, 14, tzinfo=UTC)

# (axles, statutory limit in kg, class as stations record it): GB 1589-2016 goods vehicles.
VEHICLE_CLASSES = [
    (2, 18_000, "二轴货车"),
    (3, 25_000, "三轴货车"),
    (4, 31_000, "四轴货车"),
    (5, 43_000, "五轴列车"),
    (6, 49_000, "六轴列车"),
]
STATIONS = [
    ("371524-ZC-01", "东阿县超限检测站", StationType.FIXED_STATION_PRECISE),
    ("371524-WIM-G220-01", "G220东阿段不停车检测点", StationType.WEIGH_IN_MOTION),
    ("371524-WIM-S254-02", "S254东阿段不停车检测点", StationType.WEIGH_IN_MOTION),
]
SERIAL_CHARACTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
USCC_BODY_CHARACTERS = "0123456789ABCDEFGHJKLMNPQRTUWXY"


@dataclass(frozen=True)
class Fleet:
    """The subjects the detections are drawn from: carriers, drivers, loading sources, trucks."""

    carrier_usccs: list[str]
    driver_id_numbers: list[str]
    loading_source_usccs: list[str]
    plates: list[tuple[str, PlateColour, int]]
    """Plate, colour and index into VEHICLE_CLASSES."""


def _uscc(rng: random.Random) -> str:
    first17 = "91371524" + "".join(rng.choice(USCC_BODY_CHARACTERS) for _ in range(9))
    return first17 + uscc_check_character(first17)


def _resident_id(rng: random.Random) -> str:
    birth = date(1965, 1, 1) + timedelta(days=rng.randrange(365 * 35))
    first17 = f"371524{birth:%Y%m%d}{rng.randrange(1000):03d}"
    return first17 + resident_id_check_digit(first17)


def _plate(rng: random.Random) -> tuple[str, PlateColour]:
    if rng.random() < 0.05:  # large new-energy trucks: five digits, then the energy letter
        return f"鲁P{rng.randrange(100_000):05d}D", PlateColour.YELLOW_GREEN
    return "鲁P" + "".join(rng.choice(SERIAL_CHARACTERS) for _ in range(5)), PlateColour.YELLOW


def make_fleet(rng: random.Random) -> Fleet:
    """A county's worth of subjects; identifiers are well-formed, so validation runs in full."""
    return Fleet(
        carrier_usccs=[_uscc(rng) for _ in range(200)],
        driver_id_numbers=[_resident_id(rng) for _ in range(1_000)],
        loading_source_usccs=[_uscc(rng) for _ in range(30)],
        plates=[(*_plate(rng), rng.randrange(len(VEHICLE_CLASSES))) for _ in range(3_000)],
    )


def make_detection(number: int, fleet: Fleet, rng: random.Random) -> OverloadDetection:
    """One weighing. The fixed station knows carrier, driver and often the loading source; an
    in-motion point sees the plate only, and the carrier when the plate is registered locally."""
    station_id, station_name, station_type = rng.choice(STATIONS)
    plate, colour, class_index = rng.choice(fleet.plates)
    axles, limit, vehicle_class = VEHICLE_CLASSES[class_index]
    gross = round(limit * rng.uniform(0.6, 1.6), -1)
    precise = station_type is StationType.FIXED_STATION_PRECISE
    knows_carrier = precise or rng.random() < 0.7
    knows_source = precise and rng.random() < 0.6
    driver = rng.choice(fleet.driver_id_numbers) if precise else None
    return OverloadDetection(
        event_id=f"{station_id}-{number:08d}",
        detection_id=f"JC{station_id[:6]}{number:010d}",
        event_time=START + timedelta(seconds=number * 7),
        station_id=station_id,
        station_name=station_name,
        station_type=station_type,
        plate_number=plate,
        plate_colour=colour,
        vehicle_class=vehicle_class,
        axle_count=axles,
        gross_weight_kg=int(gross),
        legal_limit_kg=limit,
        reported_overload_ratio=round(gross / limit - 1, 4),
        carrier_uscc=rng.choice(fleet.carrier_usccs) if knows_carrier else None,
        carrier_name="东阿县货运有限公司" if knows_carrier else None,
        driver_id_number=driver,
        driver_name="驾驶人" if driver else None,
        driver_qualification_number=driver,
        loading_source_uscc=rng.choice(fleet.loading_source_usccs) if knows_source else None,
        loading_source_name="东阿县石料厂" if knows_source else None,
        evidence_refs=(f"photo/{number:08d}-front.jpg", f"ticket/{number:08d}.pdf")
        if precise
        else (f"photo/{number:08d}.jpg",),
    )


def timed(run: Callable[[], object], records: int) -> float:
    """Records per second of one pass."""
    gc.collect()
    started = time.perf_counter()
    run()
    return records / (time.perf_counter() - started)


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    compiled = "C extension" if fastavro.read.reader.__module__ == "fastavro._read" else "pure"
    return (
        f"{platform.system()} {platform.release()} ({platform.machine()}), {cpu}, "
        f"os.cpu_count()={os.cpu_count()}; CPython {platform.python_version()}, "
        f"fastavro {fastavro.__version__} ({compiled})"
    )


def write_section(section: str) -> None:
    """Replace (or append) the section in BENCHMARKS.md, keeping the others."""
    text = BENCHMARKS_FILE.read_text(encoding="utf-8") if BENCHMARKS_FILE.exists() else ""
    if not text:
        text = "# Benchmarks\n"
    start = text.find(SECTION_TITLE)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(SECTION_TITLE))
        rest = "" if end < 0 else text[end + 1 :]
        text = text[:start] + section + ("\n" + rest if rest else "")
    BENCHMARKS_FILE.write_text(text, encoding="utf-8")


def json_summary(median: dict[str, float], ratio: float) -> dict[str, object]:
    """The machine-readable result: the product path against plain fastavro."""
    return {
        "benchmark": "decode_validate",
        "results": [
            {
                "name": "decode → map → validate",
                "value": median["b"],
                "unit": "records/s",
                "baseline": {
                    "name": "fastavro.schemaless_reader",
                    "value": median["a"],
                    "unit": "records/s",
                },
                "ratio": ratio,
                "target": f"ratio ≥ {TARGET_RATIO}",
                "met": ratio >= TARGET_RATIO,
            }
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=50_000, help="payloads per pass")
    parser.add_argument("--rounds", type=int, default=5, help="alternations (at least 3)")
    parser.add_argument("--seed", type=int, default=20250314, help="seed of the records")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--json", action="store_true", help="also print one JSON result line")
    arguments = parser.parse_args()
    records, rounds = arguments.records, max(3, arguments.rounds)

    rng = random.Random(arguments.seed)
    fleet = make_fleet(rng)
    serde = AvroSerde.with_local_ids()
    events = [make_detection(number, fleet, rng) for number in range(records)]
    payloads = [serde.encode(RECORD, from_domain(event)) for event in events]
    bodies = [payload[CONFLUENT_HEADER_LENGTH:] for payload in payloads]
    writer_schema = serde.store.current(RECORD).for_writing
    now = events[-1].event_time + timedelta(minutes=1)

    def baseline() -> None:
        reader = fastavro.schemaless_reader
        for body in bodies:
            reader(io.BytesIO(body), writer_schema)

    def decode_and_map() -> None:
        decode = serde.decode
        for payload in payloads:
            decoded = decode(payload, RECORD)
            to_domain(decoded.record_name, decoded.value)

    def product() -> int:
        decode = serde.decode
        rejected = 0
        for payload in payloads:
            decoded = decode(payload, RECORD)
            event = to_domain(decoded.record_name, decoded.value)
            if validate is not None and not validate(event, now=now).ok:
                rejected += 1
        return rejected

    # Sanity before timing: the product path reads back what was written.
    for payload, event in zip(payloads, events, strict=True):
        assert to_domain(RECORD, serde.decode(payload, RECORD).value) == event
    rejected = product()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    passes: dict[str, list[float]] = {"a": [], "b": [], "c": []}
    for _ in range(rounds):
        passes["a"].append(timed(baseline, records))
        passes["b"].append(timed(product, records))
        passes["c"].append(timed(decode_and_map, records))
    median = {name: statistics.median(rates) for name, rates in passes.items()}
    # Each round's passes run back to back, so a per-round ratio cancels the drift of a shared
    # machine better than a ratio of medians taken over different moments.
    ratio = statistics.median(b / a for a, b in zip(passes["a"], passes["b"], strict=True))
    codec_ratio = statistics.median(c / a for a, c in zip(passes["a"], passes["c"], strict=True))

    product_label = (
        "`AvroSerde.decode` → `to_domain` → `validate`"
        if validate is not None
        else "`AvroSerde.decode` → `to_domain` (processors.validation not importable: no validate)"
    )
    rows = [
        ("(a) `fastavro.schemaless_reader`, Confluent header stripped (baseline)", "a"),
        (f"(b) {product_label}", "b"),
        ("(c) `AvroSerde.decode` → `to_domain`, for reference", "c"),
    ]
    table = "\n".join(
        f"| {label} | {median[key]:,.0f} | {1e6 / median[key]:.1f} | "
        + ", ".join(f"{rate:,.0f}" for rate in passes[key])
        + " |"
        for label, key in rows
    )
    verdict = "meets" if ratio >= TARGET_RATIO else "is below"
    micros = {name: 1e6 / rate for name, rate in median.items()}
    section = f"""{SECTION_TITLE}

Reproduce from the repository root: `{COMMAND} --records {records} --rounds {rounds}`

- Date: {datetime.now(UTC):%Y-%m-%d}; machine: {machine_description()}.
- Data: {records:,} OverloadDetection records (seed {arguments.seed}), Confluent framing, from
  one fixed station (carrier, driver and often loading source known) and two weigh-in-motion
  points (plate, and the carrier when known); {rejected:,} of them are rejected by validation.
- Method: the passes alternate a, b, c in each of {rounds} rounds over the same payloads in one
  process (load average {load} when it started); rates are medians over the passes, ratios
  medians over the rounds of each round's ratio.

| path | median records/s | µs/record | all passes, records/s |
|---|---:|---:|---|
{table}

Ratio b/a = **{ratio:.2f}** ({verdict} the target of {TARGET_RATIO}); ratio c/a = {codec_ratio:.2f}.

Per record: fastavro reads the body in {micros["a"]:.1f} µs; the codec layer adds
{micros["c"] - micros["a"]:.1f} µs (framing, schema lookup, mapping to the frozen dataclass);
validation adds {micros["b"] - micros["c"]:.1f} µs.
"""
    print(section)
    if not arguments.no_write:
        write_section(section)
        print(f"written to {BENCHMARKS_FILE}")
    if arguments.json:
        print(json.dumps(json_summary(median, ratio)))


if __name__ == "__main__":
    main()

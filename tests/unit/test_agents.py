"""The faust agents with ``test_context()``: thin shells that decode, apply the rules and send.

No broker: the app is the worker's own (``wire_agents``), with at-least-once processing so that
batches go to a recording producer instead of Kafka transactions (exactly-once is tested on the
real broker in tests/integration). Records are put on the agents' channels as they would arrive
from their topics.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from time import time
from typing import Any

import pytest
from faust.types import Message
from prometheus_client import CollectorRegistry

from processors.fact_codec import fact_to_dict
from processors.model import InputEvent, OverloadDetection, PenaltyDecision
from processors.policy import parse_policy_book
from processors.routing import route
from streams.app import wire_agents
from streams.clock import CLOCK_KEY, subject_partition, tick_value
from streams.codecs import AvroSerde
from streams.eos import ExactlyOnceApp
from streams.mapping import from_domain, record_name_of
from streams.metrics import WorkerMetrics
from streams.settings import REPO_ROOT, Settings
from streams.topics import CREDIT_FACTS_TOPIC
from tests.integration.serving_helpers import resident_id, uscc
from tests.unit.credit_support import penalty, weighing
from tests.unit.faust_support import close_consumer_loop, unconnected_app

PLATE = "鲁P60606"
DRIVER, CARRIER, AUTHORITY = resident_id(606), uscc(606), uscc(1)
BOOK = parse_policy_book((REPO_ROOT / "config" / "policy.yaml").read_text(encoding="utf-8"))


@dataclass
class RecordingProducer:
    """Stands in for faust's producer: keeps what a batch sends, acknowledges it at once."""

    records: list[tuple[str, bytes | None, bytes | None]] = field(default_factory=list)
    partitions: list[int | None] = field(default_factory=list)

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None, *_: Any
    ) -> Any:
        self.records.append((topic, key, value))
        self.partitions.append(partition)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def maybe_start(self) -> None:
        return None

    def on(self, topic: str) -> list[tuple[bytes | None, Any]]:
        """Keys and decoded JSON values sent to ``topic``."""
        return [
            (key, json.loads(value) if value and value[:1] in b"{[" else value)
            for name, key, value in self.records
            if name == topic
        ]


@dataclass
class Worker:
    app: ExactlyOnceApp
    producer: RecordingProducer
    serde: AvroSerde


@pytest.fixture
async def worker(tmp_path: Path) -> AsyncIterator[Worker]:
    app = unconnected_app("agents-test", tmp_path, "at_least_once")
    serde = AvroSerde.with_local_ids()
    settings = Settings(clock_interval_seconds=0, topic_prefix="", judge_in_place=True)
    wire_agents(app, settings, WorkerMetrics.create(CollectorRegistry()), BOOK, serde)
    producer = RecordingProducer()
    app.producer = producer
    yield Worker(app, producer, serde)
    close_consumer_loop(app)


async def _put(
    test: Any, topic: str, key: bytes, value: bytes, offset: int, partition: int = 0
) -> None:
    message = Message(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=time(),
        timestamp_type=0,
        headers=[],
        key=key,
        value=value,
        checksum=b"",
        serialized_key_size=len(key),
        serialized_value_size=len(value),
        # A record of another consumer generation would be dropped as stale.
        generation_id=test.app.consumer_generation_id,
    )
    channel = test.stream().channel
    await channel.put(await channel.decode(message))


async def _until(check: Any, what: str) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{what}: not seen")


def _valid(event: PenaltyDecision) -> PenaltyDecision:
    return replace(event, authority_code=AUTHORITY)


def _weighing(event_id: str) -> OverloadDetection:
    """A valid weighing of ``PLATE`` an hour ago, with its driver and carrier."""
    return replace(
        weighing(event_id, datetime.now(UTC) - timedelta(hours=1), plate=PLATE),
        carrier_uscc=CARRIER,
        driver_id_number=DRIVER,
    )


def _penalties(n: int) -> list[PenaltyDecision]:
    days = ["2026-05-06", "2026-06-10", "2026-07-15", "2026-08-19", "2026-09-02"][:n]
    return [
        _valid(
            penalty(f"agent-p{k}", day, plate=PLATE, subject_id_number=DRIVER, carrier_uscc=CARRIER)
        )
        for k, day in enumerate(days, 1)
    ]


async def _put_facts(test: Any, events: list[PenaltyDecision]) -> None:
    """The facts the first hop makes of ``events``, on credit-facts keyed by subject."""
    routed = [pair for event in events for pair in route(event)]
    for offset, (subject, fact) in enumerate(routed):
        value = json.dumps(fact_to_dict(fact)).encode()
        await _put(test, "credit-facts", str(subject).encode(), value, offset)


def _avro(serde: AvroSerde, event: InputEvent) -> bytes:
    return serde.encode(record_name_of(event), from_domain(event))


async def test_validate_and_route_sends_facts_publications_and_dead_letters(
    worker: Worker,
) -> None:
    detection = _weighing("agent-w1")
    (decision,) = _penalties(1)
    async with worker.app.agents["validate_and_route"].test_context() as test:
        await _put(test, "overload-detections", PLATE.encode(), _avro(worker.serde, detection), 0)
        await _put(test, "penalty-decisions", b"p", _avro(worker.serde, decision), 0)
        await _put(test, "overload-detections", PLATE.encode(), b"\x07not avro", 1)
        await _until(lambda: worker.producer.on("overload-detections.dead-letter"), "dead letter")
        await _until(lambda: worker.producer.on("publication-requests"), "publication")
    facts = worker.producer.on("credit-facts")
    vehicle = f"VEHICLE:{PLATE}|YELLOW"
    assert {key for key, _ in facts} == {vehicle.encode()}
    assert sorted(value["type"] for _, value in facts) == ["DetectionFact", "PenaltyFact"]
    sent_to = {
        partition
        for (topic, _, _), partition in zip(
            worker.producer.records, worker.producer.partitions, strict=True
        )
        if topic == "credit-facts"
    }
    assert sent_to == {subject_partition(vehicle, CREDIT_FACTS_TOPIC.partitions)}
    assert not worker.producer.on("credit-snapshots"), "no file is judged without an assignment"
    ((_, request),) = worker.producer.on("publication-requests")
    assert request["action"] == "PUBLISH" and DRIVER not in json.dumps(request)
    ((_, letter),) = worker.producer.on("overload-detections.dead-letter")
    assert worker.serde.decode(letter).value["reason_code"] == "UNKNOWN_MAGIC_BYTE"


async def test_the_first_hop_judges_in_place_the_files_of_its_own_partition(
    worker: Worker,
) -> None:
    """Co-partitioned with credit-facts, a detection read on its vehicle's partition is judged
    there; a penalty keyed by its decision number, read elsewhere, goes on to credit-facts."""
    vehicle = f"VEHICLE:{PLATE}|YELLOW"
    own = subject_partition(vehicle, CREDIT_FACTS_TOPIC.partitions)
    other = (own + 1) % CREDIT_FACTS_TOPIC.partitions
    worker.app.assignor._topic_groups = {
        "overload-detections": 0,
        "penalty-decisions": 0,
        "licensing-decisions": 0,
        "credit-facts": 0,
    }
    detection = _weighing("agent-w2")
    (decision,) = _penalties(1)
    async with worker.app.agents["validate_and_route"].test_context() as test:
        await _put(test, "overload-detections", b"k", _avro(worker.serde, detection), 0, own)
        await _put(test, "penalty-decisions", b"p", _avro(worker.serde, decision), 0, other)
        await _until(lambda: worker.producer.on("credit-snapshots"), "the vehicle judged")
        await _until(
            lambda: any(v["type"] == "PenaltyFact" for _, v in worker.producer.on("credit-facts")),
            "the penalty sent on",
        )
    ((key, snapshot),) = worker.producer.on("credit-snapshots")
    assert key == vehicle.encode() and snapshot["subject"] == vehicle
    facts = worker.producer.on("credit-facts")
    assert [value["type"] for key, value in facts if key == vehicle.encode()] == ["PenaltyFact"]
    forwarded = {key for key, value in facts if value["type"] == "ViolationFact"}
    assert f"DRIVER:{DRIVER}".encode() in forwarded, "the in-place judgement forwards violations"
    stored = worker.app.tables["subject_to_file"].data[vehicle]
    assert len(stored["detections"]) == 1, "the file holds the detection"


async def test_judge_lists_the_vehicle_and_keeps_its_file(worker: Worker) -> None:
    async with worker.app.agents["judge_credit_files"].test_context() as test:
        await _put_facts(test, _penalties(4))
        await _until(lambda: worker.producer.on("list-triggers"), "a trigger")
        await _until(lambda: len(worker.producer.on("credit-snapshots")) >= 1, "a snapshot")
    vehicle = f"VEHICLE:{PLATE}|YELLOW"
    triggers = [value for key, value in worker.producer.on("list-triggers")]
    assert [(t["action"], t["list_name"], t["subject"]) for t in triggers] == [
        ("ADD", "BLACKLIST", vehicle)
    ]
    audit = [value for _, value in worker.producer.on("audit-records")]
    assert [(a["record"], a["to_state"]) for a in audit] == [
        ("entry:BLACKLIST:overload.vehicle", "proposed")
    ]
    forwarded = {key for key, _ in worker.producer.on("credit-facts")}
    assert f"DRIVER:{DRIVER}".encode() in forwarded, "violations go on to the driver's file"
    stored = worker.app.tables["subject_to_file"].data[vehicle]
    assert len(stored["penalties"]) == 4 and "BLACKLIST:overload.vehicle" in stored["entries"]
    due = worker.app.tables["subject_due"].data[vehicle]
    assert datetime.fromisoformat(due) > datetime.now(UTC), "the notice's end is due"
    snapshot = dict(worker.producer.on("credit-snapshots"))[vehicle.encode()]
    assert snapshot["memberships"][0]["status"] == "proposed"


async def test_a_bad_fact_is_dead_lettered_and_the_next_one_judged(worker: Worker) -> None:
    ((subject, fact),) = route(_penalties(1)[0])
    async with worker.app.agents["judge_credit_files"].test_context() as test:
        await _put(test, "credit-facts", b"VEHICLE:x|YELLOW", b'{"type":"Nope"}', 0)
        await _put(
            test, "credit-facts", str(subject).encode(), json.dumps(fact_to_dict(fact)).encode(), 1
        )
        await _until(lambda: worker.producer.on("credit-snapshots"), "the good fact judged")
    ((key, letter),) = worker.producer.on("credit-facts.dead-letter")
    assert key == b"VEHICLE:x|YELLOW"
    assert worker.serde.decode(letter).value["reason_code"] == "PROCESSING_FAILED"


async def test_a_clock_tick_publishes_an_entry_whose_notice_is_over(worker: Worker) -> None:
    async with worker.app.agents["judge_credit_files"].test_context() as test:
        await _put_facts(test, _penalties(4))
        await _until(lambda: worker.producer.on("list-triggers"), "the proposal")
        vehicle = f"VEHICLE:{PLATE}|YELLOW"
        due = datetime.fromisoformat(worker.app.tables["subject_due"].data[vehicle])
        # A tick wakes the due files of its own partition only: the vehicle's.
        partition = subject_partition(vehicle, CREDIT_FACTS_TOPIC.partitions)
        tick = tick_value(due + timedelta(hours=1))
        await _put(test, "credit-facts", CLOCK_KEY, tick, 0, partition)
        await _until(
            lambda: any(
                v.get("kind") == "blacklist" for _, v in worker.producer.on("publication-requests")
            ),
            "the entry's publication",
        )
    published = [
        v for _, v in worker.producer.on("publication-requests") if v["kind"] == "blacklist"
    ]
    assert [(p["action"], p["plate"]) for p in published] == [("PUBLISH", PLATE)]
    audit = [(a["record"], a["to_state"]) for _, a in worker.producer.on("audit-records")]
    assert audit[-1] == ("entry:BLACKLIST:overload.vehicle", "published")

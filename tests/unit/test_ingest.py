"""The worker's first step without a broker: every input record ends routed or dead-lettered
with a reason (issue 3), and decisions get their 双公示 request (issue 6)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from ops.simulator import Simulation, Simulator
from processors.disclosure import PublicationRequest
from processors.fact_codec import fact_from_dict, fact_to_dict
from processors.facts import ObjectionFact, RepairFact
from processors.model import (
    Objection,
    ObjectionAction,
    ObjectionTarget,
    OverloadDetection,
    PenaltyDecision,
    PlateColour,
    RepairApplication,
    SubjectKind,
)
from processors.policy import parse_policy_book
from processors.workdays import CHINESE_CALENDAR
from streams.codecs import AvroSerde
from streams.ingest import (
    DeadLetter,
    Routed,
    SourceRecord,
    dead_letter_value,
    disclosure_for,
    ingest,
)
from streams.mapping import from_domain, record_name_of
from streams.settings import REPO_ROOT

SERDE = AvroSerde.with_local_ids()
NOW = datetime.now(UTC)
BOOK = parse_policy_book((REPO_ROOT / "config" / "policy.yaml").read_text(encoding="utf-8"))


def _events() -> list[object]:
    simulator = Simulator(Simulation(seed=3, vehicles=30, carriers=3))
    events: list[object] = []
    while not any(isinstance(event, PenaltyDecision) for event in events):
        events.extend(simulator.next_events())
    return events


def _record(value: bytes | None, topic: str = "overload-detections") -> SourceRecord:
    return SourceRecord(topic, 2, 41, b"key", value, (("event_id", b"e-1"),))


def test_a_valid_detection_is_routed_to_its_vehicle_file() -> None:
    """A good record decodes, validates and yields facts for the vehicle's credit file."""
    detection = next(e for e in _events() if isinstance(e, OverloadDetection))
    outcome = ingest(
        SERDE,
        _record(SERDE.encode("OverloadDetection", from_domain(detection))),
        "OverloadDetection",
        NOW,
    )
    assert isinstance(outcome, Routed)
    assert outcome.event == detection
    assert [str(subject) for subject, _ in outcome.facts] == [
        f"VEHICLE:{detection.plate_number}|YELLOW"
    ]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "EMPTY_PAYLOAD"),
        (b"", "EMPTY_PAYLOAD"),
        (b"\x07garbage", "UNKNOWN_MAGIC_BYTE"),
        (b"\x00\x00", "TRUNCATED_HEADER"),
        (b"\x00\x00\x00\x03\x99" + b"\xff" * 8, "UNKNOWN_SCHEMA_ID"),
        (b"\x00\x00\x00\x00\x02" + b"\xff" * 8, "AVRO_DECODE_FAILED"),
    ],
)
def test_undecodable_bytes_become_a_decode_dead_letter(value: bytes | None, reason: str) -> None:
    """Bytes that are not a record end as a DECODE dead letter with a stable reason code."""
    outcome = ingest(SERDE, _record(value), "OverloadDetection", NOW)
    assert isinstance(outcome, DeadLetter)
    assert (outcome.stage, outcome.reason_code) == ("DECODE", reason)


def test_a_record_that_fails_validation_is_dead_lettered_with_every_reason() -> None:
    """A decodable record with a bad plate and an impossible weight lists both reasons."""
    detection = next(e for e in _events() if isinstance(e, OverloadDetection))
    bad = replace(detection, plate_number="XX12", gross_weight_kg=-5)
    encoded = SERDE.encode("OverloadDetection", from_domain(bad))
    outcome = ingest(SERDE, _record(encoded), "OverloadDetection", NOW)
    assert isinstance(outcome, DeadLetter)
    assert outcome.stage == "VALIDATE"
    assert {"PLATE_INVALID", "WEIGHT_NOT_POSITIVE"} <= set(outcome.reason_code.split(","))


def test_a_dead_letter_keeps_the_original_bytes_headers_and_offset() -> None:
    """The DeadLetter record round-trips with everything needed to replay the input."""
    record = _record(b"\x07garbage")
    letter = ingest(SERDE, record, "OverloadDetection", NOW)
    assert isinstance(letter, DeadLetter)
    decoded = SERDE.decode(SERDE.encode("DeadLetter", dead_letter_value(record, letter, NOW)))
    value = decoded.value
    assert value["original_value"] == b"\x07garbage"
    assert value["original_headers"] == [{"key": "event_id", "value": b"e-1"}]
    assert (value["source_topic"], value["source_partition"], value["source_offset"]) == (
        "overload-detections",
        2,
        41,
    )
    assert value["reason_code"] == "UNKNOWN_MAGIC_BYTE"


def test_decisions_get_a_publication_request_and_detections_none() -> None:
    """Only decisions are published (RULES.md §1): a fine gets a request, a weighing none."""
    events = _events()
    penalty = next(e for e in events if isinstance(e, PenaltyDecision))
    detection = next(e for e in events if isinstance(e, OverloadDetection))
    request = disclosure_for(penalty, CHINESE_CALENDAR, BOOK)
    assert isinstance(request, PublicationRequest)
    assert request.fields["CF_WSH"] == penalty.decision_number
    assert disclosure_for(detection, CHINESE_CALENDAR, BOOK) is None
    assert record_name_of(penalty) == "PenaltyDecision"


# --- objections and credit repair applications -------------------------------------------------

OBJECTION = Objection(
    event_id="YY-0001#FILED",
    objection_id="YY-0001",
    action=ObjectionAction.FILED,
    subject_kind=SubjectKind.VEHICLE,
    target=ObjectionTarget.LIST_ENTRY,
    occurred_at=datetime(2025, 10, 1, 2, 0, tzinfo=UTC),
    handled_by="东阿县交通运输局",
    plate_number="鲁P12345",
    plate_colour=PlateColour.YELLOW,
    list_name="BLACKLIST",
    rule_id="overload.vehicle",
    reason="两次检测系同一次运输",
)
REPAIR_APPLICATION = RepairApplication(
    event_id="XF-0001",
    application_id="XF-0001",
    subject_kind=SubjectKind.VEHICLE,
    decision_number="东交罚〔2025〕123号",
    applied_at=datetime(2025, 10, 1, 2, 0, tzinfo=UTC),
    obligations_fulfilled=True,
    public_commitment=True,
    plate_number="鲁P12345",
    plate_colour=PlateColour.YELLOW,
)


@pytest.mark.parametrize(
    ("event", "topic"),
    [(OBJECTION, "objections"), (REPAIR_APPLICATION, "credit-repair-applications")],
    ids=["objection", "repair-application"],
)
def test_an_objection_or_repair_application_is_routed_and_its_fact_survives_the_facts_topic(
    event: Objection | RepairApplication, topic: str
) -> None:
    """A valid record reaches the vehicle's file as one fact that reads back from its JSON."""
    record_name = record_name_of(event)
    outcome = ingest(
        SERDE, _record(SERDE.encode(record_name, from_domain(event)), topic), record_name, NOW
    )
    assert isinstance(outcome, Routed)
    assert outcome.event == event
    ((subject, fact),) = outcome.facts
    assert str(subject) == "VEHICLE:鲁P12345|YELLOW"
    assert isinstance(fact, ObjectionFact | RepairFact)
    # What the worker writes to credit-facts, and the judge reads back.
    assert fact_from_dict(json.loads(json.dumps(fact_to_dict(fact)))) == fact


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (replace(OBJECTION, list_name="blacklist"), "LIST_NAME_UNKNOWN"),
        (replace(OBJECTION, rule_id=None), "OBJECTION_TARGET_INCOMPLETE"),
        (replace(REPAIR_APPLICATION, plate_colour=None), "SUBJECT_IDENTIFIER_MISSING"),
    ],
)
def test_an_invalid_objection_or_application_is_a_validation_dead_letter(
    event: Objection | RepairApplication, reason: str
) -> None:
    """A decodable but invalid objection or application ends as a VALIDATE dead letter."""
    record_name = record_name_of(event)
    outcome = ingest(
        SERDE, _record(SERDE.encode(record_name, from_domain(event))), record_name, NOW
    )
    assert isinstance(outcome, DeadLetter)
    assert (outcome.stage, outcome.reason_code) == ("VALIDATE", reason)


def test_an_objection_on_the_repair_topic_is_a_wrong_record_type() -> None:
    """Each lifecycle topic carries its own record only."""
    data = SERDE.encode("Objection", from_domain(OBJECTION))
    outcome = ingest(SERDE, _record(data), "CreditRepairApplication", NOW)
    assert isinstance(outcome, DeadLetter)
    assert (outcome.stage, outcome.reason_code) == ("DECODE", "WRONG_RECORD_TYPE")


@pytest.mark.parametrize("event", [OBJECTION, REPAIR_APPLICATION], ids=["objection", "repair"])
def test_objections_and_repair_applications_publish_nothing_directly(
    event: Objection | RepairApplication,
) -> None:
    """Neither is a decision (RULES.md §1): no 双公示 request comes from the event itself."""
    assert disclosure_for(event, CHINESE_CALENDAR, BOOK) is None

"""The upstream producer: validate before sending, then the right topic, key, headers and bytes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from processors.model import InputEvent, ObjectionAction, PlateColour
from processors.validation import (
    LIST_NAME_UNKNOWN,
    OBJECTION_TARGET_INCOMPLETE,
    PLATE_INVALID,
    REASON_CODES,
    USCC_INVALID,
    validate,
)
from streams.codecs import DEFAULT_ID_TABLE, AvroSerde, WireFormat
from streams.errors import SerializationReason, ValidationError
from streams.mapping import record_name_of, to_domain
from streams.topics import INPUT_TOPICS
from streams.upstream import (
    EXAMPLE_STATION_ID,
    TOPIC_BY_RECORD,
    UpstreamProducer,
    encode_example_detection,
    example_detection,
)
from tests.unit.test_validation import (
    NOW,
    make_detection,
    make_licensing,
    make_objection,
    make_penalty,
    make_repair_application,
)

REPOSITORY = Path(__file__).resolve().parents[2]
GUIDE = REPOSITORY / "docs" / "upstream-guide.md"
SERDE = AvroSerde.with_local_ids()


class SentRecord(NamedTuple):
    topic: str
    value: bytes
    key: bytes
    headers: list[tuple[str, bytes]]


class Metadata(NamedTuple):
    partition: int
    offset: int


class RecordingProducer:
    """A fake Kafka producer: keeps what it is asked to send, and whether it runs."""

    def __init__(self) -> None:
        self.sent: list[SentRecord] = []
        self.running = False

    async def start(self) -> None:
        self.running = True

    async def stop(self) -> None:
        self.running = False

    async def send_and_wait(
        self, topic: str, value: bytes, key: bytes, *, headers: Sequence[tuple[str, bytes]]
    ) -> Metadata:
        self.sent.append(SentRecord(topic, value, key, list(headers)))
        return Metadata(partition=0, offset=len(self.sent) - 1)


def upstream(serde: AvroSerde = SERDE) -> tuple[UpstreamProducer, RecordingProducer]:
    fake = RecordingProducer()
    return UpstreamProducer(fake, serde, clock=lambda: NOW), fake


@pytest.mark.parametrize(
    ("event", "send", "topic", "key"),
    [
        (make_detection(), "send_detection", "overload-detections", "鲁P12345|YELLOW"),
        (
            make_detection(plate_number="鲁P12345D", plate_colour=PlateColour.YELLOW_GREEN),
            "send",
            "overload-detections",
            "鲁P12345D|YELLOW_GREEN",  # the colour is part of the vehicle's identity
        ),
        (make_penalty(), "send_penalty", "penalty-decisions", "东交罚〔2025〕123号"),
        (make_licensing(), "send_licensing", "licensing-decisions", "鲁交运管聊字371524000123号"),
        # Every event of one objection shares its id, so its filing and resolution stay in order.
        (make_objection(), "send_objection", "objections", "YY-2025-0001"),
        (
            make_objection(event_id="obj-evt-0002", action=ObjectionAction.REJECTED),
            "send",
            "objections",
            "YY-2025-0001",
        ),
        (
            make_repair_application(),
            "send_repair_application",
            "credit-repair-applications",
            "XF-2025-0001",
        ),
    ],
)
async def test_valid_event_is_sent_to_its_topic_keyed_with_headers(
    event: InputEvent, send: str, topic: str, key: str
) -> None:
    """A valid event goes to its topic, keyed by its partitioning identifier, with headers."""
    producer, fake = upstream()

    delivery = await getattr(producer, send)(event)

    [sent] = fake.sent
    assert (sent.topic, sent.key) == (topic, key.encode())
    record_name = record_name_of(event)
    assert sent.headers == [
        ("event_id", event.event_id.encode()),
        ("record", record_name.encode()),
    ]
    decoded = SERDE.decode(sent.value, TOPIC_BY_RECORD[record_name].record)
    assert to_domain(decoded.record_name, decoded.value) == event
    assert delivery == (topic, 0, 0, key.encode(), event.event_id)


async def test_invalid_event_raises_every_reason_and_sends_nothing() -> None:
    """An event the pipeline would dead-letter is refused with all its reasons, masked."""
    producer, fake = upstream()
    bad_uscc = "91370000163042397U"  # its check character should be C
    detection = make_detection(plate_number="鲁I12345", carrier_uscc=bad_uscc)

    with pytest.raises(ValidationError) as raised:
        await producer.send(detection)

    message = str(raised.value)
    assert f"{PLATE_INVALID} (plate_number)" in message
    assert f"{USCC_INVALID} (carrier_uscc)" in message
    assert detection.event_id in message
    assert bad_uscc not in message
    assert "鲁I12345" not in message
    assert fake.sent == []


async def test_invalid_objection_is_refused_with_its_reasons() -> None:
    """An objection naming an unknown list and no rule is refused, and nothing is sent."""
    producer, fake = upstream()

    with pytest.raises(ValidationError) as raised:
        await producer.send_objection(make_objection(list_name="黑名单", rule_id=None))

    message = str(raised.value)
    assert "Objection 'obj-evt-0001' not sent" in message
    assert f"{LIST_NAME_UNKNOWN} (list_name)" in message
    assert f"{OBJECTION_TARGET_INCOMPLETE} (rule_id)" in message
    assert fake.sent == []


async def test_validation_uses_the_clock_given() -> None:
    """An event from after the producer's now (beyond the skew) is in the future: refused."""
    producer, fake = upstream()
    with pytest.raises(ValidationError, match="EVENT_TIME_IN_FUTURE"):
        await producer.send(make_detection(event_time=NOW.replace(year=2026)))
    assert fake.sent == []


async def test_single_object_wire_format_is_written_when_configured() -> None:
    """With a single-object serde the value starts with C3 01 and the schema's fingerprint."""
    serde = AvroSerde.with_local_ids(wire_format=WireFormat.SINGLE_OBJECT)
    producer, fake = upstream(serde)

    await producer.send(make_detection())

    value = fake.sent[0].value
    fingerprint = serde.store.current("OverloadDetection").fingerprint
    assert value[:10] == b"\xc3\x01" + fingerprint
    assert to_domain("OverloadDetection", SERDE.decode(value).value) == make_detection()


async def test_context_manager_starts_and_stops_the_producer() -> None:
    """``async with`` connects the producer on entry and flushes and closes it on exit."""
    producer, fake = upstream()
    async with producer as started:
        assert fake.running
        assert started is producer
    assert not fake.running


async def test_create_builds_an_idempotent_producer_acknowledged_by_all_replicas(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real producer has idempotence on and acks=all, whatever else is configured."""
    built: dict[str, Any] = {}

    class CapturingProducer(RecordingProducer):
        def __init__(self, **options: Any) -> None:
            super().__init__()
            built.update(options)

    monkeypatch.setattr("aiokafka.AIOKafkaProducer", CapturingProducer)

    UpstreamProducer.create("broker:9092", linger_ms=5)

    assert built == {
        "bootstrap_servers": "broker:9092",
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 5,
    }


def test_example_detection_is_valid_and_its_event_id_is_stable() -> None:
    """The guide's example passes validation, and one weighing always has one event id."""
    first = example_detection(detection_id="JC1", now=NOW)
    again = example_detection(detection_id="JC1", now=NOW.replace(hour=3))
    assert validate(first, now=NOW).ok
    assert first.event_id == again.event_id == f"{EXAMPLE_STATION_ID}/JC1"


@pytest.mark.parametrize("wire_format", list(WireFormat))
def test_module_writes_the_example_bytes_to_stdout(wire_format: WireFormat) -> None:
    """``python -m streams.upstream example-detection`` prints bytes the pipeline decodes."""
    command = [sys.executable, "-m", "streams.upstream", "example-detection"]
    completed = subprocess.run(
        [*command, "--detection-id", "JC42", "--wire-format", wire_format.value],
        capture_output=True,
        check=True,
        cwd=REPOSITORY,
    )

    decoded = SERDE.decode(completed.stdout, "OverloadDetection")
    detection = to_domain(decoded.record_name, decoded.value)
    assert detection.event_id == f"{EXAMPLE_STATION_ID}/JC42"
    assert validate(detection, now=detection.event_time).ok
    assert f"event_id={EXAMPLE_STATION_ID}/JC42" in completed.stderr.decode()
    assert completed.stdout[:2] == (
        b"\x00\x00" if wire_format is WireFormat.CONFLUENT else b"\xc3\x01"
    )


def test_encode_example_detection_matches_the_module_output_framing() -> None:
    """The encoder behind the command writes the current schema's Confluent id."""
    data = encode_example_detection()
    (current_id,) = [
        entry["id"]
        for entry in json.loads(DEFAULT_ID_TABLE.read_text())["schemas"]
        if entry["fingerprint"] == SERDE.store.current("OverloadDetection").fingerprint.hex()
    ]
    assert data[:5] == b"\x00" + current_id.to_bytes(4, "big")


# --- the guide stays true to the code --------------------------------------------------------


def test_guide_lists_every_reason_code() -> None:
    """Every validation and serialization reason code appears in the upstream guide."""
    guide = GUIDE.read_text(encoding="utf-8")
    missing = {
        code
        for code in REASON_CODES | {reason.value for reason in SerializationReason}
        if f"`{code}`" not in guide
    }
    assert missing == set()


def test_guide_names_every_input_topic_its_dead_letters_and_current_schema_ids() -> None:
    """The guide's topic table matches streams/topics.py and schemas/avro/ids.json."""
    guide = GUIDE.read_text(encoding="utf-8")
    ids = {
        entry["fingerprint"]: entry["id"]
        for entry in json.loads(DEFAULT_ID_TABLE.read_text())["schemas"]
    }
    for spec in INPUT_TOPICS:
        assert spec.record is not None
        schema = SERDE.store.current(spec.record)
        row = next(line for line in guide.splitlines() if line.startswith(f"| `{spec.name}`"))
        assert f"`schemas/avro/{spec.record}.avsc`" in row
        assert f"id {ids[schema.fingerprint.hex()]}" in row
        assert schema.fingerprint.hex() in row
        assert f"`{spec.dead_letter.name}`" in guide
    # Every command in a bash block of the guide uses a subcommand the module has.
    subcommands = set(re.findall(r"python -m streams\.upstream ([a-z-]+)", guide))
    assert subcommands == {"example-detection", "send-example-detection"}

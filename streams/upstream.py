"""Sending input events from an upstream system: validated first, framed, keyed and idempotent.

Upstream systems (the overload control system, the penalty and licensing systems, and the
objection and credit repair desks) write the input topics of ``streams/topics.py``.
:class:`UpstreamProducer` does what each of their sends must do, the way the pipeline expects
it (``docs/upstream-guide.md``):

- validate the event with :func:`processors.validation.validate` and refuse to send one the
  pipeline would dead-letter (:class:`~streams.errors.ValidationError`, listing every reason
  code with its masked message);
- encode it with :class:`~streams.codecs.AvroSerde` in the configured wire format (Confluent or
  Avro single-object);
- key it by the identifier that partitions its topic (:func:`record_key`) and add the headers
  ``event_id`` and ``record``;
- send it with an idempotent producer (``enable_idempotence=True``, ``acks="all"``), so that the
  producer's own retries never write a record twice. A resend after a crash is the caller's:
  it must carry the same ``event_id``, which is how the pipeline recognises it.

Run as a module, it writes the encoded bytes of an example detection to stdout (for ``kcat``)
or sends one to a broker::

    python -m streams.upstream example-detection > detection.bin
    python -m streams.upstream send-example-detection --bootstrap 127.0.0.1:9092
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType, TracebackType
from typing import Any, NamedTuple, Protocol, Self, assert_never

from processors.model import (
    InputEvent,
    LicensingDecision,
    Objection,
    OverloadDetection,
    PenaltyDecision,
    PlateColour,
    Rejection,
    RepairApplication,
    StationType,
    vehicle_key,
)
from processors.validation import DEFAULT, ValidationPolicy, validate
from streams.codecs import AvroSerde, WireFormat
from streams.errors import ValidationError
from streams.mapping import from_domain, record_name_of
from streams.topics import INPUT_TOPICS, TopicSpec

TOPIC_BY_RECORD: Mapping[str, TopicSpec] = MappingProxyType(
    {spec.record: spec for spec in INPUT_TOPICS if spec.record is not None}
)
"""The input topic of each input record: ``OverloadDetection`` → ``overload-detections``, ..."""

EVENT_ID_HEADER = "event_id"
"""Header holding the event's ``event_id`` (UTF-8), for tools that do not decode Avro."""
RECORD_HEADER = "record"
"""Header holding the Avro record name of the value, e.g. ``OverloadDetection``."""


class RecordSender(Protocol):
    """What :class:`UpstreamProducer` needs of a Kafka producer; ``AIOKafkaProducer`` has it."""

    async def start(self) -> None:
        """Connect."""

    async def stop(self) -> None:
        """Flush pending records and disconnect."""

    async def send_and_wait(
        self,
        topic: str,
        value: bytes,
        key: bytes,
        *,
        headers: Sequence[tuple[str, bytes]],
    ) -> Any:
        """Send one record and wait until the broker has it; returns its metadata."""


class Encoder(Protocol):
    """What :class:`UpstreamProducer` needs of a codec; :class:`AvroSerde` has it."""

    def encode(self, record_name: str, value: Mapping[str, Any]) -> bytes:
        """``value`` written with the current schema of ``record_name``, framed."""
        ...


class Delivery(NamedTuple):
    """Where a sent event landed."""

    topic: str
    """Topic name."""
    partition: int
    """Partition the key chose."""
    offset: int
    """Offset of the record in that partition."""
    key: bytes
    """The record key, UTF-8."""
    event_id: str
    """The event's stable id, as in the ``event_id`` header."""


def record_key(event: InputEvent) -> bytes:
    """The record key of ``event``: the identifier that partitions its topic, UTF-8.

    ``<plate number>|<plate colour>`` for a detection (``鲁P12345|YELLOW``, the vehicle's credit
    file key), the decision number for a penalty, the licence number for a licensing decision,
    so that every revision of one decision lands in one partition, in order; the objection id
    for an objection (its filing and its resolution stay in order), the application id for a
    credit repair application.
    """
    match event:
        case OverloadDetection():
            return vehicle_key(event.plate_number, event.plate_colour).encode()
        case PenaltyDecision():
            return event.decision_number.encode()
        case LicensingDecision():
            return event.licence_number.encode()
        case Objection():
            return event.objection_id.encode()
        case RepairApplication():
            return event.application_id.encode()
        case _:
            assert_never(event)


def rejection_summary(record_name: str, event_id: str, rejections: Sequence[Rejection]) -> str:
    """One line naming every rejection: reason code, field and (masked) message."""
    problems = "; ".join(
        f"{rejection.reason_code}"
        + (f" ({rejection.field_name})" if rejection.field_name else "")
        + f": {rejection.message}"
        for rejection in rejections
    )
    return f"{record_name} {event_id!r} not sent, the pipeline would dead-letter it: {problems}"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class UpstreamProducer:
    """Validates, encodes, keys and sends input events to their topics.

    Use :meth:`create` for a real idempotent Kafka producer, as an async context manager::

        async with UpstreamProducer.create("kafka:9092") as producer:
            delivery = await producer.send(detection)
    """

    def __init__(
        self,
        producer: RecordSender,
        codec: Encoder,
        *,
        clock: Callable[[], datetime] = _utc_now,
        policy: ValidationPolicy = DEFAULT,
    ) -> None:
        """Send through ``producer``, encoding with ``codec``.

        :param producer: the Kafka producer, e.g. from :meth:`create`; tests pass a fake.
        :param codec: the encoder; an :class:`AvroSerde` writes its configured wire format.
        :param clock: the current instant (timezone-aware), the ``now`` of validation.
        :param policy: validation tolerances; the pipeline's defaults unless it is tuned.
        """
        self._producer = producer
        self._codec = codec
        self._clock = clock
        self._policy = policy

    @classmethod
    def create(
        cls,
        bootstrap_servers: str,
        *,
        serde: AvroSerde | None = None,
        wire_format: WireFormat = WireFormat.CONFLUENT,
        **producer_options: Any,
    ) -> UpstreamProducer:
        """An upstream producer over a new idempotent ``AIOKafkaProducer``; call it in a coroutine.

        :param bootstrap_servers: the brokers, ``host:port[,host:port...]``.
        :param serde: the codec; by default the checked-in schemas and schema ids
            (``schemas/avro/ids.json``), writing ``wire_format``. Pass one built on
            :class:`~streams.codecs.RegistrySchemaIds` when the deployment runs a registry.
        :param wire_format: the framing of the default serde.
        :param producer_options: more ``AIOKafkaProducer`` settings (security, ``linger_ms``...).
        """
        # aiokafka binds the producer to the running event loop when it is built.
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            # The broker drops the duplicates the producer's own retries would write, and a
            # send is acknowledged only once every in-sync replica has it.
            enable_idempotence=True,
            acks="all",
            **producer_options,
        )
        return cls(producer, serde or AvroSerde.with_local_ids(wire_format=wire_format))

    async def start(self) -> None:
        """Connect the producer."""
        await self._producer.start()

    async def stop(self) -> None:
        """Flush and disconnect the producer."""
        await self._producer.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def send(self, event: InputEvent) -> Delivery:
        """Validate ``event``, then send it to its topic and wait for the broker's ack.

        :raises ValidationError: when the pipeline would reject the event; nothing is sent.
            The message lists every reason code with its field and masked message.
        :raises SerializationError: (``MAPPING_FAILED``) for a value Avro cannot carry
            faithfully, such as an amount with more than two decimal places.
        :raises aiokafka.errors.KafkaError: when the broker does not take the record; sending
            the same event again is safe.
        """
        record_name = record_name_of(event)
        result = validate(event, now=self._clock(), policy=self._policy)
        if not result.ok:
            raise ValidationError(rejection_summary(record_name, event.event_id, result.rejections))
        topic = TOPIC_BY_RECORD[record_name].name
        value = self._codec.encode(record_name, from_domain(event))
        key = record_key(event)
        headers = [
            (EVENT_ID_HEADER, event.event_id.encode()),
            (RECORD_HEADER, record_name.encode()),
        ]
        metadata = await self._producer.send_and_wait(topic, value, key, headers=headers)
        return Delivery(topic, int(metadata.partition), int(metadata.offset), key, event.event_id)

    async def send_detection(self, detection: OverloadDetection) -> Delivery:
        """Send a weighing to ``overload-detections`` (see :meth:`send`)."""
        return await self.send(detection)

    async def send_penalty(self, penalty: PenaltyDecision) -> Delivery:
        """Send a penalty decision, or a revision of one, to ``penalty-decisions``."""
        return await self.send(penalty)

    async def send_licensing(self, licensing: LicensingDecision) -> Delivery:
        """Send a licensing decision, or a status change, to ``licensing-decisions``."""
        return await self.send(licensing)

    async def send_objection(self, objection: Objection) -> Delivery:
        """Send an objection's filing or resolution to ``objections``."""
        return await self.send(objection)

    async def send_repair_application(self, application: RepairApplication) -> Delivery:
        """Send a credit repair application to ``credit-repair-applications``."""
        return await self.send(application)


# --- the example of the guide -------------------------------------------------------------------

EXAMPLE_STATION_ID = "371524-ZC-01"
EXAMPLE_CARRIER_USCC = "91371524MA3C00001B"
"""A well-formed (made-up) unified social credit code: registered in 东阿县 (371524)."""


def example_detection(
    *, detection_id: str = "JC3715240000000001", now: datetime | None = None
) -> OverloadDetection:
    """A valid precise weighing of a six-axle truck 25 % over its 49 t limit, a minute ago.

    The event id is derived from what identifies the weighing at its source (station and
    detection number), so that sending the same weighing again repeats the same id.
    """
    weighed_at = (now or _utc_now()) - timedelta(minutes=1)
    return OverloadDetection(
        event_id=f"{EXAMPLE_STATION_ID}/{detection_id}",
        detection_id=detection_id,
        event_time=weighed_at.replace(microsecond=0),
        station_id=EXAMPLE_STATION_ID,
        station_name="东阿县超限检测站",
        station_type=StationType.FIXED_STATION_PRECISE,
        plate_number="鲁P12345",
        plate_colour=PlateColour.YELLOW,
        vehicle_class="六轴列车",
        axle_count=6,
        gross_weight_kg=61_250,
        legal_limit_kg=49_000,
        reported_overload_ratio=0.25,
        carrier_uscc=EXAMPLE_CARRIER_USCC,
        carrier_name="东阿县某运输有限公司",
        evidence_refs=(f"photo/{detection_id}-front.jpg",),
    )


def encode_example_detection(
    *, detection_id: str = "JC3715240000000001", wire_format: WireFormat = WireFormat.CONFLUENT
) -> bytes:
    """The bytes of :func:`example_detection` as the pipeline reads them, validated first."""
    detection = example_detection(detection_id=detection_id)
    result = validate(detection, now=_utc_now())
    if not result.ok:  # the example must always be one the pipeline accepts
        raise ValidationError(
            rejection_summary("OverloadDetection", detection.event_id, result.rejections)
        )
    serde = AvroSerde.with_local_ids(wire_format=wire_format)
    return serde.encode("OverloadDetection", from_domain(detection))


async def send_example_detection(
    bootstrap: str,
    *,
    detection_id: str = "JC3715240000000001",
    wire_format: WireFormat = WireFormat.CONFLUENT,
) -> Delivery:
    """Send :func:`example_detection` to ``overload-detections`` at ``bootstrap``."""
    async with UpstreamProducer.create(bootstrap, wire_format=wire_format) as producer:
        return await producer.send_detection(example_detection(detection_id=detection_id))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streams.upstream``: the example detection, as bytes or sent to a broker."""
    parser = argparse.ArgumentParser(prog="python -m streams.upstream", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser(
        "example-detection", help="write the encoded example detection to stdout"
    )
    send = commands.add_parser(
        "send-example-detection", help="send the example detection to a broker"
    )
    send.add_argument("--bootstrap", required=True, help="host:port of a broker")
    for command in (write, send):
        command.add_argument("--detection-id", default="JC3715240000000001")
        command.add_argument(
            "--wire-format",
            choices=[wire_format.value for wire_format in WireFormat],
            default=WireFormat.CONFLUENT.value,
        )
    arguments = parser.parse_args(argv)
    wire_format = WireFormat(arguments.wire_format)
    event_id = f"{EXAMPLE_STATION_ID}/{arguments.detection_id}"
    if arguments.command == "example-detection":
        if sys.stdout.isatty():
            parser.error("the output is binary Avro: redirect it to a file")
        data = encode_example_detection(
            detection_id=arguments.detection_id, wire_format=wire_format
        )
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        sys.stderr.write(f"{len(data)} bytes, event_id={event_id}\n")
        return 0
    delivery = asyncio.run(
        send_example_detection(
            arguments.bootstrap, detection_id=arguments.detection_id, wire_format=wire_format
        )
    )
    sys.stderr.write(
        f"sent event_id={delivery.event_id} to {delivery.topic} "
        f"partition {delivery.partition} offset {delivery.offset}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Replay dead letters: send the original records back to their source topic once the cause is
fixed (a schema registered, a validation rule corrected, an upstream record repaired).

    credit-transport replay-dead-letters overload-detections [--reason UNKNOWN_MAGIC_BYTE]

Each DeadLetter record of ``<topic>.dead-letter`` goes back to its ``source_topic`` with its
original key, value and headers, plus a ``replayed-from`` header naming the dead letter
(topic/partition/offset). A record that is still bad is dead-lettered again, with its attempt
visible from that header; nothing is dropped. The replay reads with its own consumer group and
commits after the producer has the records, so running it twice does not resend.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.codecs import AvroSerde
from streams.errors import SerializationError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What one replay did."""

    read: int
    replayed: int
    skipped_other_reason: int
    unreadable: int


async def replay_dead_letters(
    bootstrap_servers: str,
    dead_letter_topic: str,
    *,
    reason: str | None = None,
    group_id: str = "credit-transport-replay",
    idle_ms: int = 2000,
) -> ReplayReport:
    """Send the dead letters of ``dead_letter_topic`` (optionally one reason) back to source.

    :param reason: replay only letters with this reason code (one of a comma-separated list).
    :param group_id: the replay's consumer group: its committed offsets remember what was sent.
    :param idle_ms: stop when no dead letter arrived for this long.
    """
    serde = AvroSerde.with_local_ids()
    consumer = AIOKafkaConsumer(
        dead_letter_topic,
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, enable_idempotence=True, acks="all"
    )
    read = replayed = skipped = unreadable = 0
    await consumer.start()
    await producer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=idle_ms, max_records=500)
            if not batch:
                break
            deliveries = []
            for records in batch.values():
                for record in records:
                    read += 1
                    try:
                        letter = serde.decode(record.value, "DeadLetter").value
                    except SerializationError:
                        unreadable += 1
                        log.warning("unreadable dead letter at offset %d kept", record.offset)
                        continue
                    if reason is not None and reason not in letter["reason_code"].split(","):
                        skipped += 1
                        continue
                    headers = [(h["key"], h["value"] or b"") for h in letter["original_headers"]]
                    headers.append(
                        (
                            "replayed-from",
                            f"{record.topic}/{record.partition}/{record.offset}".encode(),
                        )
                    )
                    deliveries.append(
                        await producer.send(
                            letter["source_topic"],
                            letter["original_value"],
                            key=letter["original_key"],
                            headers=headers,
                        )
                    )
                    replayed += 1
            for delivery in deliveries:
                await delivery
            await consumer.commit()  # only after the broker has every replayed record
    finally:
        await producer.stop()
        await consumer.stop()
    return ReplayReport(read, replayed, skipped, unreadable)

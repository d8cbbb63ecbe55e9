"""Small helpers for integration tests on the real broker: topics, producing, reading committed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord


async def create_topics(
    bootstrap: str, names: Iterable[str], partitions: int = 4, *, compacted: bool = False
) -> None:
    """Create topics and wait until their metadata is visible."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        config = {"cleanup.policy": "compact"} if compacted else {}
        await admin.create_topics(
            [NewTopic(name, partitions, 1, topic_configs=config) for name in names]
        )
    finally:
        await admin.close()


async def produce(
    bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes]]
) -> None:
    """Send records with an idempotent producer and wait until all are acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    """The committed (read_committed) end offset of each of the topic's partitions."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    await consumer.start()
    # aiokafka 0.14 raises CancelledError from stop() when its no-group task never ran.
    await asyncio.sleep(0)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        offsets = await consumer.end_offsets(tps)
        return {tp.partition: offset for tp, offset in offsets.items()}
    finally:
        await consumer.stop()


async def read_committed(
    bootstrap: str,
    topic: str,
    *,
    expect: int | None = None,
    idle: float = 3.0,
    timeout: float = 120.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read every committed record of ``topic``.

    Reads until ``expect`` records arrived (when given) and then no new record came for ``idle``
    seconds, or ``timeout`` passed.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            got = [record for part in batch.values() for record in part]
            if got:
                records.extend(got)
                last_new = time.monotonic()
            enough = expect is None or len(records) >= expect
            if enough and time.monotonic() - last_new >= idle:
                break
        return records
    finally:
        await consumer.stop()


async def consumption_left(
    bootstrap: str, group_id: str, topics: dict[str, int]
) -> dict[str, tuple[int | None, int, int]]:
    """Per partition of ``topics`` (name: partition count) that holds committed records past the
    group's committed offset: ``"topic[p]": (committed, end, records left)``.

    Tells a stall (input left unconsumed) from a loss (all consumed, outputs missing). Commit
    markers sit between a committed offset and the end too; they are not records and not left.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    await asyncio.sleep(0)
    try:
        left: dict[str, tuple[int | None, int, int]] = {}
        for topic, partitions in topics.items():
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                committed = await consumer.committed(tp)
                if (committed or 0) >= ends[tp]:
                    continue
                consumer.assign([tp])
                consumer.seek(tp, committed or 0)
                records = 0
                deadline = time.monotonic() + 10
                while await consumer.position(tp) < ends[tp] and time.monotonic() < deadline:
                    batch = await consumer.getmany(tp, timeout_ms=500)
                    records += sum(len(part) for part in batch.values())
                if records:
                    left[f"{topic}[{tp.partition}]"] = (committed, ends[tp], records)
        return left
    finally:
        await consumer.stop()

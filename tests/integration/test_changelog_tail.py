"""Where a table's recovery stops (streams/changelog_tail.py), on the real broker: just past the
last committed record of each changelog partition, whatever markers and aborted records follow."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.changelog_tail import FIRST_WINDOW, past_last_records
from tests.conftest import KafkaService
from tests.integration.kafka_helpers import create_topics

pytestmark = pytest.mark.integration


async def _transaction(
    producer: AIOKafkaProducer, topic: str, partition: int, count: int, *, commit: bool
) -> None:
    await producer.begin_transaction()
    for n in range(count):
        await producer.send(topic, b"v%d" % n, key=b"k%d" % n, partition=partition)
    if commit:
        await producer.commit_transaction()
    else:
        await producer.abort_transaction()


async def test_recovery_ends_just_past_the_last_committed_record(
    kafka: KafkaService, unique_name: str
) -> None:
    bootstrap, topic = kafka.bootstrap_servers, f"{unique_name}-changelog"
    await create_topics(bootstrap, [topic], partitions=4, compacted=True)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=unique_name)
    await producer.start()
    try:
        # 0: three committed records (offsets 0-2, marker 3), then an aborted transaction longer
        #    than the first window read back (offsets 4 to 4 + n, then its marker).
        await _transaction(producer, topic, 0, 3, commit=True)
        await _transaction(producer, topic, 0, FIRST_WINDOW * 2, commit=False)
        # 1: nothing. 2: aborted records only. 3: two committed transactions (0-4, 6-7).
        await _transaction(producer, topic, 2, 5, commit=False)
        await _transaction(producer, topic, 3, 5, commit=True)
        await _transaction(producer, topic, 3, 2, commit=True)
    finally:
        await producer.stop()
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    await reader.start()
    await asyncio.sleep(0)
    try:
        tps = [TopicPartition(topic, p) for p in range(4)]
        stable_ends = await reader.end_offsets(tps)
        assert stable_ends[tps[0]] == 3 + 1 + FIRST_WINDOW * 2 + 1, "the LSO lies past the markers"
        ends = await past_last_records(reader, stable_ends)
    finally:
        await reader.stop()
    assert ends == {tps[0]: 3, tps[1]: 0, tps[2]: 0, tps[3]: 8}

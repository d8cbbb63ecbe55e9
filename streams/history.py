"""A subject's history from the audit topic: every state change of its list entries,
objections, repairs and set-aside decisions, oldest first.

    credit-transport history VEHICLE:鲁P12345|YELLOW

The audit topic is keyed by subject, so one subject's records are on one partition, in the order
the worker committed them; the reader sees committed records only (``read_committed``). A driver's
key is an ID number: it is taken as the operator gives it and never printed back unmasked.
"""

from __future__ import annotations

import json
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.admin import topic_partitions
from streams.clock import key_partition

__all__ = ["subject_history"]


async def subject_history(bootstrap_servers: str, topic: str, subject: str) -> list[dict[str, Any]]:
    """Every audit record of ``subject`` in ``topic``, in commit order."""
    key = subject.encode()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        partitions = await topic_partitions(bootstrap_servers, topic)
        if not partitions:
            raise LookupError(f"topic {topic} does not exist")
        tp = TopicPartition(topic, key_partition(key, len(partitions)))
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        records: list[dict[str, Any]] = []
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            for message in batch.get(tp, []):
                if message.key == key:
                    records.append(json.loads(message.value or b"{}"))
        return records
    finally:
        await consumer.stop()

"""Where a table's recovery can stop: just past the last committed record of each changelog.

faust recovers a table partition until its offset reaches the partition's high-water mark. In
exactly-once mode every transaction ends with a commit marker, an offset that holds no record,
so the last record is always below the last stable offset (LSO) and faust never sees it reached:
each recovery ended only through faust's "Aborted tx until highwater" check, which runs after
two 5-second waits for a record that never comes. Every restart and every handover paused the
worker for about 10 s (README, "Exactly-once"). Reading the tail of each changelog partition
(a few records, with ``read_committed``) tells where its last committed record is, so recovery
ends as soon as it has applied that record.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition

FIRST_WINDOW = 64
"""Offsets read back from the LSO first; the window grows when it holds no committed record
(a crashed owner can leave a long aborted transaction at the end)."""


async def past_last_records(
    reader: AIOKafkaConsumer, stable_ends: Mapping[TopicPartition, int], within: float = 10.0
) -> dict[TopicPartition, int]:
    """For each partition, the offset just past its last committed record below its LSO.

    ``reader`` is a started consumer with ``isolation_level="read_committed"`` and no group
    subscription; its assignment is replaced. A partition with no committed record gets its
    beginning offset, so faust sees nothing to recover. Raises ``TimeoutError`` when the tails
    could not be read within ``within`` seconds (the caller then falls back on the LSO).
    """
    partitions = list(stable_ends)
    if not partitions:
        return {}
    reader.assign(partitions)
    beginnings = await reader.beginning_offsets(partitions)
    deadline = time.monotonic() + within
    return {
        tp: await _past_last_record(reader, tp, beginnings[tp], stable_ends[tp], deadline)
        for tp in partitions
    }


async def _past_last_record(
    reader: AIOKafkaConsumer, tp: TopicPartition, beginning: int, end: int, deadline: float
) -> int:
    window = FIRST_WINDOW
    while True:
        start = max(beginning, end - window)
        last = await _last_record_between(reader, tp, start, end, deadline)
        if last is not None:
            return last + 1
        if start == beginning:
            return beginning
        window *= 8


async def _last_record_between(
    reader: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int, deadline: float
) -> int | None:
    """The offset of the last committed record in [start, end), read to ``end`` in full."""
    if start >= end:
        return None
    reader.seek(tp, start)
    last = None
    while await reader.position(tp) < end:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the tail of {tp.topic}[{tp.partition}] was not read in time")
        batches = await reader.getmany(tp, timeout_ms=int(min(left, 1.0) * 1000))
        for record in batches.get(tp, []):
            if record.offset < end:
                last = record.offset
        await asyncio.sleep(0)
    return last

"""The offsets a worker commits on a topic written in transactions (streams/eos.py).

A ``read_committed`` consumer never sees a transaction's commit marker: each is an offset with no
record, a gap that faust learns of when it reads the record after it. These tests drive faust's
own bookkeeping the way its fetcher does (``_add_gap`` on reading past missing offsets, then an
ack per record) and ask what a commit may take, without a broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from faust.types import TP

from streams import eos
from streams.eos import BatchAwareConsumer
from tests.unit.faust_support import close_consumer_loop, unconnected_app

FACTS = TP("credit-facts", 0)


@pytest.fixture
def consumer(tmp_path: Path) -> Iterator[BatchAwareConsumer]:
    app = unconnected_app("commit-offsets-test", tmp_path, "exactly_once")
    made = app.consumer
    assert isinstance(made, BatchAwareConsumer)
    yield made
    close_consumer_loop(app)


async def _read_and_ack(consumer: BatchAwareConsumer, offsets: list[int]) -> None:
    """Read ``offsets`` in order as faust's fetcher does, then ack each record."""
    read = None
    for offset in offsets:
        if read is not None and offset - read > 1:
            await consumer._add_gap(FACTS, read + 1, offset)  # the fetcher's own call
        read = offset
    for offset in offsets:
        consumer._acked_index[FACTS].add(offset)
        consumer._acked[FACTS].append(offset)


async def test_one_commit_takes_every_handled_record_past_every_marker(
    consumer: BatchAwareConsumer,
) -> None:
    # Records 0-9, two markers (10, 11), records 12-19, a marker (20), records 21-29.
    records = [*range(10), *range(12, 20), *range(21, 30)]
    await _read_and_ack(consumer, records)
    assert consumer._new_offset(FACTS) == 30


async def test_a_record_not_yet_handled_still_holds_the_commit_back(
    consumer: BatchAwareConsumer,
) -> None:
    await _read_and_ack(consumer, [*range(10), *range(12, 20)])
    consumer._acked[FACTS].remove(15)  # read but not handled: nothing from 15 on may commit
    consumer._acked_index[FACTS].discard(15)
    assert consumer._new_offset(FACTS) == 15


async def test_a_batch_cancelled_while_sending_finishes_under_the_lock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """faust cancels its agents on stop, before its last commit: a batch that has begun to hand
    its records to the transactions still sends them all and acks its events, and the lock (which
    every commit takes) stays held until it has."""
    lock = asyncio.Lock()
    monkeypatch.setattr(eos, "_batch_lock", lambda app: lock)
    sending, may_finish = asyncio.Event(), asyncio.Event()

    async def slow_flush(self: eos.BatchOutput) -> None:
        sending.set()
        await may_finish.wait()

    monkeypatch.setattr(eos.BatchOutput, "flush", slow_flush)
    acked: list[int] = []

    class Event:
        def __init__(self, offset: int) -> None:
            self.offset = offset

        def ack(self) -> bool:
            acked.append(self.offset)
            return True

    async def one_batch() -> None:
        events = [Event(1), Event(2), Event(3)]
        async with eos.exactly_once_batch(object(), events):  # type: ignore[arg-type]
            pass

    batch = asyncio.ensure_future(one_batch())
    await sending.wait()
    batch.cancel()
    await asyncio.sleep(0.02)
    assert lock.locked() and acked == [], "still sending, under the lock"
    may_finish.set()
    with pytest.raises(asyncio.CancelledError):
        await batch
    assert acked == [1, 2, 3] and not lock.locked()


async def test_a_rebalance_commits_what_was_handled_before_it_forgets_the_partition(
    consumer: BatchAwareConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """faust hands a revocation to the app's handler, which waits for the agents and commits
    what they acked; the partition's offsets must still be there for that commit (gap 8). A
    worker keeps its open transaction for a partition it is assigned again: offsets it failed to
    commit there meant the events were handled twice and both copies committed."""
    await _read_and_ack(consumer, [*range(10), *range(12, 20)])
    committable_in_handler: dict[TP, int] = {}

    async def app_handler(revoked: set[TP]) -> None:  # the commit's own choice of offsets
        committable_in_handler.update(consumer._filter_committable_offsets(revoked))

    monkeypatch.setattr(consumer, "_on_partitions_revoked", app_handler)
    await consumer.on_partitions_revoked({FACTS})
    assert committable_in_handler == {FACTS: 20}
    # Forgotten afterwards: the next assignment starts from the committed offsets.
    assert not consumer._acked.get(FACTS) and consumer._committed_offset.get(FACTS) is None

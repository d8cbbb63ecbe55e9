"""The end of a table recovery, against the exactly-once consumer (streams/eos.py, gap 6).

faust's ``Recovery.on_recovery_completed`` resumes the stream partitions, seeks them to their
committed offsets, then resumes the flow, which empties the agents' queues. The fetcher runs
through all of it after a table recovery, so a stream partition must not be fetchable before
the queues are emptied: a record delivered in between is processed twice or thrown away (the
restart stall in the README). No broker: the seek and the flow's resume are observed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from faust.types import TP

from streams.eos import BatchAwareConsumer, ExactlyOnceApp
from tests.unit.faust_support import close_consumer_loop, unconnected_app

SOURCE = TP("credit-facts", 0)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[ExactlyOnceApp]:
    app = unconnected_app("eos-consumer-test", tmp_path, "exactly_once")
    app.Table("subject_to_file", default=None, partitions=1)
    yield app
    close_consumer_loop(app)


def _changelog(app: ExactlyOnceApp) -> TP:
    (name,) = app.tables.changelog_topics
    return TP(name, 0)


async def test_stream_partitions_fetch_only_after_the_seek_and_the_emptied_queues(
    app: ExactlyOnceApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = app.consumer
    assert isinstance(consumer, BatchAwareConsumer)
    changelog = _changelog(app)
    recovery = cast(Any, app.tables).recovery  # TableManagerT does not declare it
    fetchable_at: dict[str, set[TP]] = {}

    async def perform_seek() -> None:
        fetchable_at["seek"] = set(consumer._get_active_partitions())

    resume_flow_control = app.flow_control.resume

    def flow_control_resume() -> None:  # empties the agents' queues
        fetchable_at["queues emptied"] = set(consumer._get_active_partitions())
        resume_flow_control()

    async def fetcher_started() -> None:
        return None

    monkeypatch.setattr(consumer, "assignment", lambda: {SOURCE, changelog})
    monkeypatch.setattr(consumer, "perform_seek", perform_seek)
    monkeypatch.setattr(app.flow_control, "resume", flow_control_resume)
    monkeypatch.setattr(app._fetcher, "maybe_start", fetcher_started)
    app.consumer_generation_id = 7

    # A rebalance pauses everything; the recovery resumes the changelog and reads it.
    consumer.pause_partitions({SOURCE, changelog})
    consumer.resume_partitions({changelog})
    assert changelog in consumer._get_active_partitions()
    consumer.resume_flow()
    consumer.pause_partitions({changelog})  # "Done reading from changelog topics"

    await recovery.on_recovery_completed(generation_id=7)

    assert SOURCE not in fetchable_at["seek"]
    assert SOURCE not in fetchable_at["queues emptied"]
    assert SOURCE in consumer._get_active_partitions()


def test_a_partition_paused_again_is_not_resumed_by_the_flow(app: ExactlyOnceApp) -> None:
    """A rebalance that interrupts the seek pauses the partition; the next flow resume (the
    new recovery's, before its own seek) must leave it paused."""
    consumer = app.consumer
    assert isinstance(consumer, BatchAwareConsumer)
    consumer.pause_partitions({SOURCE})
    consumer.resume_partitions({SOURCE})
    consumer.pause_partitions({SOURCE})
    consumer.resume_flow()
    assert SOURCE not in consumer._get_active_partitions()


async def test_a_fetch_that_waits_takes_only_the_partitions_active_when_it_began(
    app: ExactlyOnceApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The end of a recovery pauses the changelog while the fetcher's last read of it still
    waits in the consumer thread (up to a second), and aiokafka reads an empty set of
    partitions as "every partition". Records of a paused stream partition must stay with
    aiokafka: returned, they advanced its position and faust dropped them as inactive, so the
    partition was never read again (gap 9)."""
    consumer = app.consumer
    assert isinstance(consumer, BatchAwareConsumer)
    changelog = _changelog(app)
    fetched = {changelog: ["changelog record"], SOURCE: ["record 221", "record 222"]}
    response = asyncio.Event()

    async def fetched_records(partitions: set[TP], timeout: float) -> dict[TP, list[str]]:
        await response.wait()  # aiokafka's wait for a fetch response, in the consumer thread
        return {
            tp: fetched.pop(tp)
            for tp in list(fetched)
            if not partitions or tp in partitions  # aiokafka: empty means every partition
        }

    monkeypatch.setattr(consumer, "assignment", lambda: {SOURCE, changelog})
    monkeypatch.setattr(consumer._thread, "getmany", fetched_records)
    consumer.pause_partitions({SOURCE, changelog})
    consumer.resume_partitions({changelog})  # the recovery reads the changelog

    reading = asyncio.ensure_future(consumer._wait_next_records(timeout=1.0))
    await asyncio.sleep(0.01)
    consumer.pause_partitions({changelog})  # "Done reading from changelog topics"
    response.set()
    records, _ = await reading

    assert set(records) == {changelog}
    assert SOURCE in fetched, "still aiokafka's, for when the partition is resumed"

"""The serving-store sink on the real broker and a real Redis: writes, removals, replays that
never regress, a Redis killed mid-stream, and a rebuild (issue 5).

Each test has its own topics, consumer group and Redis key prefix; the fault test starts a Redis
of its own, so that killing it disturbs no other test.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from ops.services import LocalRedis
from processors.lists import VEHICLE_OVERLOAD, ListAction, ListName
from sinks.serving_store import (
    RebuildRefusedError,
    ServingStoreLayout,
    ServingStoreMetrics,
    connect_redis,
    rebuild_store,
)
from tests.conftest import KafkaService, RedisService
from tests.integration.kafka_helpers import end_offsets
from tests.integration.serving_helpers import (
    T0,
    Topics,
    TransactionalProducer,
    carrier,
    driver,
    entry,
    eventually,
    record,
    snapshot,
    start_sink,
    store_ready,
    stored,
    subject_count,
    trigger,
    vehicle,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis(redis_service: RedisService) -> AsyncIterator[Redis]:
    client = connect_redis(redis_service.url)
    yield client
    await client.aclose()


@pytest.fixture
def layout() -> ServingStoreLayout:
    return ServingStoreLayout(prefix=f"t-{uuid.uuid4().hex[:10]}:")


async def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        result = {}
        for p in range(partitions):
            offset = await consumer.committed(TopicPartition(topic, p))
            result[p] = offset or 0
        return result
    finally:
        await consumer.stop()


async def test_sink_writes_snapshots_and_trigger_history_then_commits(
    kafka: KafkaService, redis: Redis, layout: ServingStoreLayout, unique_name: str
) -> None:
    """Snapshots land in Redis with their version and documents; offsets are committed after."""
    bootstrap = kafka.bootstrap_servers
    topics = await Topics.create(bootstrap, unique_name)
    blacklisted = entry(ListName.BLACKLIST, VEHICLE_OVERLOAD, T0, ["e1", "e2", "e3", "e4"])
    truck = snapshot(
        vehicle(1),
        T0,
        entries=[blacklisted],
        carrier_of=carrier(1),
        drivers=[driver(1), driver(2)],
        score=50,
    )
    others = [snapshot(vehicle(n), T0) for n in range(2, 200)]
    async with TransactionalProducer(bootstrap) as producer:
        await producer.send_all(topics.snapshots, [record(truck)] + [record(s) for s in others])
        await producer.send_all(
            topics.triggers, [record(trigger(ListAction.ADD, blacklisted, vehicle(1), T0))]
        )
    group = f"serving-{unique_name}"
    sink = await start_sink(redis, bootstrap, topics, layout, group=group)
    try:
        await eventually(lambda: store_ready(redis, layout))
        assert await subject_count(redis, layout) == 199
        assert int(await redis.hget(layout.meta, "subjects") or 0) == 199
        data = await stored(redis, layout, vehicle(1))
        assert data["lists"] == "BLACKLIST"
        assert data["related"].split("\n") == [str(carrier(1)), str(driver(1)), str(driver(2))]
        assert data["full"]["lists"]["blacklist"]["rules"][0]["evidence_event_ids"] == [
            "e1",
            "e2",
            "e3",
            "e4",
        ]
        assert data["full"]["grade"] == "AA" and data["full"]["score"] == 50
        assert "evidence_event_ids" not in data["basic"]["lists"]["blacklist"]["rules"][0]
        assert data["source"].startswith(f"{topics.snapshots}/")
        history = await redis.zrange(layout.triggers(str(vehicle(1))), 0, -1)
        assert len(history) == 1 and b'"action":"ADD"' in history[0]
        meta = await redis.hgetall(layout.meta)
        assert meta[b"as_of"].decode() == T0.isoformat()
        assert b"written_at" in meta and b"caught_up_at" in meta
        assert (
            sink.counter(
                "credit_serving_store_writes_total", topic=topics.snapshots, result="applied"
            )
            == 199
        )
        lags = [
            sink.registry.get_sample_value(
                "credit_consumer_lag_messages", {"topic": topics.snapshots, "partition": str(p)}
            )
            for p in range(topics.partitions)
        ]
        assert lags == [0.0] * topics.partitions
        assert sink.registry.get_sample_value("credit_serving_store_lag_seconds") == 0.0

        # Offsets reach Kafka only after Redis has the records they cover.
        ends = await end_offsets(bootstrap, topics.snapshots, topics.partitions)

        async def committed_to_the_end() -> bool:
            got = await _committed(bootstrap, group, topics.snapshots, topics.partitions)
            return all(got[p] >= ends[p] - 1 for p in ends)  # the last marker is not a record

        await eventually(committed_to_the_end)
    finally:
        await sink.close()


async def test_a_later_snapshot_without_the_entry_removes_it_and_an_older_one_never_wins(
    kafka: KafkaService, redis: Redis, layout: ServingStoreLayout, unique_name: str
) -> None:
    """Removal by a newer snapshot; an older snapshot written later, or a whole replay from the
    start of the topic, leaves the newer state in place."""
    bootstrap = kafka.bootstrap_servers
    topics = await Topics.create(bootstrap, unique_name)
    listed = entry(ListName.BLACKLIST, VEHICLE_OVERLOAD, T0, ["e1", "e2", "e3", "e4"])
    later = T0 + timedelta(hours=1)
    sink = await start_sink(redis, bootstrap, topics, layout)
    try:
        async with TransactionalProducer(bootstrap) as producer:
            await producer.send_all(
                topics.snapshots, [record(snapshot(vehicle(1), T0, entries=[listed]))]
            )

            async def listed_now() -> bool:
                return (await stored(redis, layout, vehicle(1))).get("lists") == "BLACKLIST"

            await eventually(listed_now)
            # The worker's next judgement: the entry no longer stands.
            await producer.send_all(topics.snapshots, [record(snapshot(vehicle(1), later))])

            async def removed() -> bool:
                data = await stored(redis, layout, vehicle(1))
                return data.get("lists") == "" and data["full"]["listed"] is False

            await eventually(removed)
            # An older snapshot at a later offset (a late duplicate) must not bring it back.
            await producer.send_all(
                topics.snapshots, [record(snapshot(vehicle(1), T0, entries=[listed]))]
            )

            async def stale_counted() -> bool:
                name = "credit_serving_store_writes_total"
                return sink.counter(name, topic=topics.snapshots, result="stale") >= 1

            await eventually(stale_counted)
        data = await stored(redis, layout, vehicle(1))
        assert data["lists"] == ""
        assert data["as_of"] == later.isoformat()
    finally:
        await sink.close()

    # Replay the whole topic from its start (the stored offsets are gone, the data is not).
    await redis.delete(layout.offsets)
    replay = await start_sink(redis, bootstrap, topics, layout)
    try:

        async def replayed() -> bool:
            name = "credit_serving_store_writes_total"
            return replay.counter(name, topic=topics.snapshots, result="stale") >= 2

        await eventually(replayed)
        data = await stored(redis, layout, vehicle(1))
        assert data["lists"] == "" and data["as_of"] == later.isoformat()
    finally:
        await replay.close()


async def test_a_redis_killed_mid_stream_is_retried_and_reloaded_without_loss(
    kafka: KafkaService, unique_name: str, tmp_path: Path
) -> None:
    """Kill Redis (no persistence: it comes back empty) while snapshots stream in: the sink
    retries with backoff, sees that Redis lost its offsets, reads the topics again, and ends
    with every subject at its latest state."""
    bootstrap = kafka.bootstrap_servers
    topics = await Topics.create(bootstrap, unique_name)
    server = LocalRedis(tmp_path / "redis").start()
    redis = connect_redis(server.url, timeout=0.5)
    layout = ServingStoreLayout(prefix="fault:")
    # Every round updates the same 500 vehicles; 100 more appear in the first round only, so
    # they are in Redis before the kill and nowhere in what is produced after it.
    subjects, only_first, rounds = 500, 100, 8
    sink = await start_sink(redis, bootstrap, topics, layout)
    figures: dict[str, float] = {}
    try:
        async with TransactionalProducer(bootstrap) as producer:
            for r in range(rounds):
                as_of = T0 + timedelta(minutes=r)
                count = subjects + (only_first if r == 0 else 0)
                await producer.send_all(
                    topics.snapshots,
                    [record(snapshot(vehicle(n), as_of, score=100 - r)) for n in range(count)],
                )
                if r == 3:
                    # Mid-stream: four rounds are in (or on their way); two more are produced
                    # while Redis is down, two after it is back.
                    figures["subjects_before_kill"] = await subject_count(redis, layout)
                    server.kill()
                    killed_at = time.monotonic()
                if r == 5:
                    await asyncio.sleep(0.5)
                    server = LocalRedis(tmp_path / "redis", port=server.port).start()
                    restarted_at = time.monotonic()
                    figures["down_seconds"] = restarted_at - killed_at
                await asyncio.sleep(0.2)

        last = T0 + timedelta(minutes=rounds - 1)

        async def converged() -> bool:
            if not await store_ready(redis, layout):
                return False
            if await subject_count(redis, layout) != subjects + only_first:
                return False
            async with redis.pipeline(transaction=False) as pipe:
                for n in range(subjects):
                    pipe.hget(layout.subject(str(vehicle(n))), "as_of")
                values = await pipe.execute()
            return all(v == last.isoformat().encode() for v in values)

        await eventually(converged, timeout=25, every=0.05)
        figures["converged_seconds_after_restart"] = time.monotonic() - restarted_at
        figures["retries"] = sink.counter("credit_serving_store_retries_total")
        figures["records_written"] = sink.counter(
            "credit_serving_store_writes_total", topic=topics.snapshots, result="applied"
        ) + sink.counter(
            "credit_serving_store_writes_total", topic=topics.snapshots, result="stale"
        )
        figures["reloads"] = sink.counter("credit_serving_store_reloads_total")
        figures["subjects"] = await subject_count(redis, layout)
        print(f"fault figures: {figures}")
        assert figures["retries"] >= 1
        assert figures["reloads"] >= 1
        assert figures["subjects"] == subjects + only_first
    finally:
        await sink.close()
        await redis.aclose()
        server.stop()


async def test_rebuild_loads_the_compacted_topic_into_an_empty_store_only(
    kafka: KafkaService, redis: Redis, layout: ServingStoreLayout, unique_name: str
) -> None:
    """A rebuild reads the topic from its start, reports what it did, keeps the newest state, and
    refuses a store that holds data unless forced."""
    bootstrap = kafka.bootstrap_servers
    topics = await Topics.create(bootstrap, unique_name)
    listed = entry(ListName.BLACKLIST, VEHICLE_OVERLOAD, T0, ["e1", "e2", "e3", "e4"])
    async with TransactionalProducer(bootstrap) as producer:
        await producer.send_all(
            topics.snapshots, [record(snapshot(vehicle(n), T0)) for n in range(300)]
        )
        await producer.send_all(
            topics.snapshots,
            [record(snapshot(vehicle(7), T0 + timedelta(hours=1), entries=[listed]))],
        )
    metrics = ServingStoreMetrics.create(CollectorRegistry())
    report = await rebuild_store(
        redis,
        bootstrap_servers=bootstrap,
        metrics=metrics,
        layout=layout,
        snapshots_topic=topics.snapshots,
    )
    print(f"rebuild report: {report}")
    assert report.records == 301 and report.subjects == 300 and report.partitions == 4
    assert await store_ready(redis, layout)
    assert (await stored(redis, layout, vehicle(7)))["lists"] == "BLACKLIST"
    with pytest.raises(RebuildRefusedError):
        await rebuild_store(
            redis,
            bootstrap_servers=bootstrap,
            metrics=metrics,
            layout=layout,
            snapshots_topic=topics.snapshots,
        )
    await redis.hset(layout.subject("VEHICLE:鲁P99999|YELLOW"), "version", "1")  # a stray entry
    forced = await rebuild_store(
        redis,
        bootstrap_servers=bootstrap,
        metrics=metrics,
        layout=layout,
        snapshots_topic=topics.snapshots,
        force=True,
    )
    assert forced.subjects == 300
    assert await subject_count(redis, layout) == 300

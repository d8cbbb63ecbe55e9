"""Builders and runners for the serving-store and query-API tests.

Snapshots and triggers are the worker's own types (``CreditSnapshot``, ``ListTrigger``) written
with ``processors.fact_codec.to_json``, exactly as ``streams/app.py`` writes them, and produced
with a transactional producer, as the worker's exactly-once transactions do.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Any

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from processors.fact_codec import to_json
from processors.facts import ViolationKind
from processors.identifiers import resident_id_check_digit, uscc_check_character
from processors.lists import ListAction, ListEntry, ListName, ListTrigger
from processors.model import PlateColour, SubjectKind, SubjectRef, vehicle_key
from processors.policy import Grade
from processors.snapshot import CreditSnapshot, Membership
from sinks.serving_store import (
    Backoff,
    ServingStore,
    ServingStoreLayout,
    ServingStoreMetrics,
)
from tests.integration.kafka_helpers import create_topics

POLICY_VERSION = "2026-04-01"
T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


def uscc(n: int) -> str:
    """A well-formed unified social credit code (a company in 东阿县)."""
    first17 = f"91371524MA3C{n:05d}"
    return first17 + uscc_check_character(first17)


def resident_id(n: int) -> str:
    """A well-formed resident ID number (born 1980-1999 in 东阿县)."""
    born = date(1980, 1, 1) + timedelta(days=n % 7000)
    first17 = f"371524{born:%Y%m%d}{n % 1000:03d}"
    return first17 + resident_id_check_digit(first17)


def plate(n: int) -> str:
    """An ordinary plate number of 聊城 (鲁P)."""
    return f"鲁P{n:05d}"


def vehicle(n: int) -> SubjectRef:
    return SubjectRef(SubjectKind.VEHICLE, vehicle_key(plate(n), PlateColour.YELLOW))


def carrier(n: int) -> SubjectRef:
    return SubjectRef(SubjectKind.CARRIER, uscc(n))


def driver(n: int) -> SubjectRef:
    return SubjectRef(SubjectKind.DRIVER, resident_id(n))


def entry(list_name: ListName, rule_id: str, since: datetime, events: Sequence[str]) -> ListEntry:
    """A standing list entry supported by ``events``."""
    return ListEntry(
        list_name=list_name,
        rule_id=rule_id,
        policy_version=POLICY_VERSION,
        since=since,
        evidence_event_ids=tuple(events),
        evidence_violation_ids=tuple(f"{e}/det" for e in events),
        reason=f"{len(events)} overload violations within 365 days, more than 3",
    )


def snapshot(
    subject: SubjectRef,
    as_of: datetime,
    *,
    entries: Sequence[ListEntry] = (),
    carrier_of: SubjectRef | None = None,
    drivers: Sequence[SubjectRef] = (),
    score: int = 100,
    grade: Grade = Grade.AA,
) -> CreditSnapshot:
    """A credit snapshot as ``processors.snapshot.snapshot`` builds it."""
    overloads = sum(len(e.evidence_event_ids) for e in entries)
    counts = dict.fromkeys(ViolationKind, 0) | {ViolationKind.OVERLOAD: overloads}
    return CreditSnapshot(
        subject=subject,
        as_of=as_of,
        policy_version=POLICY_VERSION,
        score=score,
        grade=grade,
        memberships=tuple(
            Membership(
                e.list_name,
                e.rule_id,
                "listed",
                e.policy_version,
                e.since,
                e.reason,
                e.evidence_event_ids,
                e.evidence_violation_ids,
            )
            for e in entries
        ),
        violations_in_window=MappingProxyType(counts),
        window_days=365,
        carrier=carrier_of,
        recent_drivers=tuple(drivers),
        stale_events=0,
    )


def trigger(
    action: ListAction, e: ListEntry, subject: SubjectRef, recorded_at: datetime
) -> ListTrigger:
    """The trigger the worker raises when ``e`` starts or stops standing."""
    return ListTrigger(
        action=action,
        list_name=e.list_name,
        subject=subject,
        rule_id=e.rule_id,
        policy_version=e.policy_version,
        evidence_event_ids=e.evidence_event_ids,
        effective_time=e.since if action is ListAction.ADD else recorded_at,
        reason=e.reason if action is ListAction.ADD else f"no longer supported (was: {e.reason})",
        recorded_at=recorded_at,
    )


def record(value: CreditSnapshot | ListTrigger) -> tuple[bytes, bytes]:
    """Key and value as the worker writes them."""
    body = json.dumps(to_json(value), ensure_ascii=False, separators=(",", ":")).encode()
    return str(value.subject).encode(), body


@dataclass
class Topics:
    """A unique pair of snapshots and triggers topics."""

    snapshots: str
    triggers: str
    partitions: int = 4

    @classmethod
    async def create(cls, bootstrap: str, stem: str, partitions: int = 4) -> Topics:
        topics = cls(f"{stem}-snapshots", f"{stem}-triggers", partitions)
        await create_topics(bootstrap, [topics.snapshots], partitions, compacted=True)
        await create_topics(bootstrap, [topics.triggers], partitions)
        return topics


@dataclass
class TransactionalProducer:
    """A producer that writes each ``send_all`` in one transaction, like the worker."""

    bootstrap: str
    _producer: AIOKafkaProducer | None = field(default=None, init=False)

    async def __aenter__(self) -> TransactionalProducer:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            transactional_id=f"test-{uuid.uuid4().hex[:12]}",
            enable_idempotence=True,
            linger_ms=5,
        )
        await self._producer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._producer is not None
        await self._producer.stop()

    async def send_all(self, topic: str, records: Iterable[tuple[bytes, bytes | None]]) -> None:
        assert self._producer is not None
        async with self._producer.transaction():
            for key, value in records:
                await self._producer.send(topic, value, key=key)


@dataclass
class RunningSink:
    """A serving-store sink running in a task of the test's loop."""

    store: ServingStore
    metrics: ServingStoreMetrics
    registry: CollectorRegistry
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)
        await self.store.stop()

    def counter(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return value or 0.0


async def start_sink(
    redis: Redis,
    bootstrap: str,
    topics: Topics,
    layout: ServingStoreLayout,
    *,
    group: str | None = None,
    backoff: Backoff | None = None,
) -> RunningSink:
    """Start a sink on ``topics`` writing under ``layout``."""
    registry = CollectorRegistry()
    metrics = ServingStoreMetrics.create(registry)
    store = ServingStore(
        redis,
        bootstrap_servers=bootstrap,
        group_id=group or f"serving-{uuid.uuid4().hex[:8]}",
        metrics=metrics,
        layout=layout,
        snapshots_topic=topics.snapshots,
        triggers_topic=topics.triggers,
        backoff=backoff or Backoff(initial=0.05, cap=0.5),
        poll_timeout=0.2,
    )
    await store.start()
    stop = asyncio.Event()
    task = asyncio.create_task(store.run(stop))
    return RunningSink(store, metrics, registry, stop, task)


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 20.0, every: float = 0.1
) -> float:
    """Wait until ``check()`` holds; the seconds it took. Fails the test after ``timeout``."""
    started = time.monotonic()
    while True:
        try:
            if await check():
                return time.monotonic() - started
        except Exception:
            pass
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(every)


async def stored(redis: Redis, layout: ServingStoreLayout, subject: SubjectRef) -> dict[str, Any]:
    """A subject's hash, decoded, with its ``full`` document parsed."""
    raw = await redis.hgetall(layout.subject(str(subject)))
    data = {k.decode(): v.decode() for k, v in raw.items()}
    if "full" in data:
        data["full"] = json.loads(data["full"])
        data["basic"] = json.loads(data["basic"])
    return data


async def subject_count(redis: Redis, layout: ServingStoreLayout) -> int:
    """Subject hashes in the store, counted by SCAN (not the store's own counter)."""
    count = 0
    async for _ in redis.scan_iter(match=layout.subject_prefix + "*", count=1000):
        count += 1
    return count


async def store_ready(redis: Redis, layout: ServingStoreLayout) -> bool:
    return await redis.hget(layout.meta, "ready") == b"1"

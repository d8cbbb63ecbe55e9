"""The lifecycle's clock: ticks on every ``credit-facts`` partition.

Entries, objections and publications fall due with the passing of time (the end of a notice, of
a publication period, of an objection's response deadline), when no event may arrive for the
subject (``processors.lifecycle``). The leader worker sends a tick to every partition of
``credit-facts`` every ``clock_interval_seconds``; the partition's owner, in the transaction of
that partition, applies a :class:`~processors.facts.ReviewFact` at the tick's time to each file
whose next due instant has come, found through the ``subject_due`` table. So each due change
happens once (exactly-once, like any record), survives restarts and rebalances (the table and
the tick are in Kafka), and a tick sent twice does nothing the second time.

Ticks go through a plain idempotent producer, outside every transaction: a tick is a trigger,
not a result, and faust's transactional producers belong to source partitions.

Tests and operators can drive the clock themselves: ``credit-transport tick --at <instant>``
(:func:`send_ticks`) sends ticks at any instant, earlier ticks are harmless and a file's
lifecycle time never goes back.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

__all__ = [
    "CLOCK_KEY",
    "due_keys",
    "key_partition",
    "parse_tick",
    "send_ticks",
    "subject_partition",
    "tick_value",
]

CLOCK_KEY = b"~clock"
"""Key of a tick on ``credit-facts``; no subject key starts with ``~``."""


def tick_value(at: datetime) -> bytes:
    """The record value of a tick at ``at``."""
    if at.tzinfo is None:
        raise ValueError("a tick needs a timezone-aware instant")
    return json.dumps({"type": "ClockTick", "at": at.astimezone(UTC).isoformat()}).encode()


def parse_tick(value: bytes | None) -> datetime:
    """The instant of a tick record; :class:`ValueError` when it is not one."""
    try:
        data = json.loads(value or b"null")
        at = datetime.fromisoformat(data["at"]) if data.get("type") == "ClockTick" else None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ValueError("not a clock tick") from exc
    if at is None or at.tzinfo is None:
        raise ValueError("not a clock tick")
    return at


@functools.lru_cache(maxsize=65_536)
def key_partition(key: bytes, partitions: int) -> int:
    """The partition the producer's default partitioner gives ``key`` (Kafka's murmur2, in pure
    Python: remembered)."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


@functools.lru_cache(maxsize=65_536)
def subject_partition(subject: str, partitions: int) -> int:
    """The ``credit-facts`` partition, and so the table partition, of a subject's credit file.

    It is the partition of the subject's key without its kind (``鲁P12345|YELLOW`` for
    ``VEHICLE:鲁P12345|YELLOW``), so a detection keyed by its vehicle's plate and colour, as
    upstream sends it, arrives on the same partition number as the vehicle's file: the first hop
    can judge it in place (streams/app.py).
    """
    _, _, key = subject.partition(":")
    return key_partition(key.encode(), partitions)


def due_keys(
    dues: Iterable[tuple[str, str | None]], partition: int, partitions: int, at: datetime
) -> list[str]:
    """The subjects of ``partition`` whose due instant (ISO text) is at or before ``at``."""
    found = []
    for key, due in dues:
        if due is None or datetime.fromisoformat(due) > at:
            continue
        if subject_partition(key, partitions) == partition:
            found.append(key)
    return sorted(found)


async def send_ticks(
    producer: AIOKafkaProducer, topic: str, partitions: Iterable[int], at: datetime
) -> None:
    """Send a tick at ``at`` to each of ``partitions`` of ``topic`` and wait for the acks."""
    value = tick_value(at)
    sent = [
        await producer.send(topic, value=value, key=CLOCK_KEY, partition=partition)
        for partition in partitions
    ]
    for future in sent:
        await future


async def tick_once(bootstrap_servers: str, topic: str, at: datetime) -> int:
    """Send one tick at ``at`` to every partition of ``topic``; the number of partitions."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, enable_idempotence=True)
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        await send_ticks(producer, topic, partitions, at)
    finally:
        await producer.stop()
    return len(partitions)

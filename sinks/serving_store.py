"""The Redis serving store: the latest credit snapshot of every subject, for the query API.

Data flow::

    credit-snapshots (compacted) ─┐
    list-triggers ────────────────┴─ ServingStore (aiokafka, read_committed) ─→ Redis ─→ api/

The sink reads both topics in batches (``getmany``) and writes each batch in one Redis pipeline:
one Lua script call per partition of the batch, so that a partition's records *and* its next
offset land together or not at all. Redis, not Kafka, is where the sink's position lives: on
assignment it seeks to the offsets stored in Redis (the start of the topic when there are none),
and every write checks that the stored offset is still the one the sink last wrote. A Redis that
lost its data (a restart without persistence) therefore shows up as a mismatch, and the sink
reads the topics again from the start; nothing is lost, and an empty store is never mistaken for
a complete one (the API answers 503 until ``meta.ready`` is set again). Consumer offsets are also
committed to Kafka, after Redis has the data, for lag dashboards and tooling.

Writes are idempotent: a snapshot replaces the stored one only if its version is not older, so a
replay (or an old record written late) never moves a subject back. A Redis error retries the same
batch with capped exponential backoff; the consumer does not move on meanwhile.

Redis layout (``P`` is the layout prefix, ``credit:`` by default; ``S`` a subject ``KIND:key`` as
the worker keys it, e.g. ``VEHICLE:鲁P12345|YELLOW``, ``CARRIER:<USCC>``, ``DRIVER:<ID number>``):

``P subject:S`` (hash), one per subject with a snapshot:
    ``version``  the snapshot's ``as_of`` in microseconds since the epoch: compared first;
    ``offset``   its offset in the snapshots topic: breaks a tie of versions;
    ``source``   ``topic/partition/offset`` of the record, for operators;
    ``as_of``    the snapshot's ``as_of`` (ISO 8601);
    ``full``     the answer for the ``evidence`` scope (JSON, see :func:`stored_subject`);
    ``basic``    the answer for the ``basic`` scope (JSON; no evidence, driver IDs masked);
    ``lists``    the lists it is on now, comma separated (``BLACKLIST,WATCHLIST``), or empty;
    ``related``  vehicles only: the subjects of its carrier and recent drivers, one per line.
``P triggers:S`` (sorted set): the subject's latest list triggers (at most ``history`` of them),
    scored by ``recorded_at`` in microseconds; each member is a JSON trigger with its ``source``
    (a replay adds the same member again, so it is idempotent).
``P offsets`` (hash): ``<topic>:<partition>`` → the next offset to read, written atomically with
    the records before it.
``P meta`` (hash), the freshness marker:
    ``as_of`` / ``as_of_us``  the newest snapshot ``as_of`` written;
    ``written_at`` / ``written_at_ms``  wall-clock time of the last write;
    ``caught_up_at``  last time the sink had read every partition to its end;
    ``ready``  ``1`` once the store has been loaded to the end of the topics (absent while an
               empty store loads, so the API never answers "not listed" from a partial store);
    ``subjects``  how many ``subject:`` hashes exist.
``P audit`` (stream): the API's audit log (written by ``api/``, never by this sink).

The scripts build no key names themselves (every key is passed in ``KEYS``), but they touch keys
of many hash slots: the layout is for a single Redis (or a primary with replicas), not a cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from processors.identifiers import mask_identifier
from processors.lists import ListName
from streams.admin import topic_partitions
from streams.settings import Settings
from streams.topics import CREDIT_SNAPSHOTS_TOPIC, LIST_TRIGGERS_TOPIC, prefixed

__all__ = [
    "LIST_FIELDS",
    "NOT_LISTED",
    "STATUS_PRECEDENCE",
    "Backoff",
    "BatchOutcome",
    "RebuildRefusedError",
    "RebuildReport",
    "ServingStore",
    "ServingStoreLayout",
    "ServingStoreMetrics",
    "SnapshotFormatError",
    "StoreWriter",
    "StoredSubject",
    "StoredTrigger",
    "connect_redis",
    "operator_app",
    "rebuild",
    "rebuild_store",
    "run_serving_store",
    "shown_subject",
    "stored_subject",
    "stored_trigger",
]

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

LIST_FIELDS: Mapping[ListName, str] = {
    ListName.BLACKLIST: "blacklist",
    ListName.WATCHLIST: "watchlist",
    ListName.RED_LIST: "red_list",
}
"""The name of each list in answers."""

# A rule's lifecycle status, when the snapshot carries one (proposed, published, withdrawn);
# an entry without one stands, and reads "listed". Which statuses put a subject on the list:
_LISTED_STATUSES = frozenset({"listed", "published"})
STATUS_PRECEDENCE = ("published", "listed", "proposed", "withdrawn", "removed", "cancelled")
"""How a list's status is chosen from its rules' statuses: the first one present wins."""
NOT_LISTED = "not_listed"


# --- layout -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServingStoreLayout:
    """Key names of the serving store (see the module docstring)."""

    prefix: str = "credit:"
    """Prepended to every key; tests use a unique one each."""

    def subject(self, subject: str) -> str:
        """The hash of one subject's latest snapshot."""
        return f"{self.prefix}subject:{subject}"

    def triggers(self, subject: str) -> str:
        """The sorted set of one subject's latest list triggers."""
        return f"{self.prefix}triggers:{subject}"

    @property
    def subject_prefix(self) -> str:
        """What every subject hash's name starts with."""
        return f"{self.prefix}subject:"

    @property
    def triggers_prefix(self) -> str:
        """What every trigger history's name starts with."""
        return f"{self.prefix}triggers:"

    @property
    def offsets(self) -> str:
        """Next offset to read per topic partition."""
        return f"{self.prefix}offsets"

    @property
    def meta(self) -> str:
        """The freshness marker."""
        return f"{self.prefix}meta"

    @property
    def audit(self) -> str:
        """The API's audit stream."""
        return f"{self.prefix}audit"


# --- documents: what the API serves, built once per snapshot ---------------------------------


class SnapshotFormatError(ValueError):
    """A record of the snapshots or triggers topic is not what the worker writes."""


@dataclass(frozen=True, slots=True)
class StoredSubject:
    """A snapshot as the serving store keeps it."""

    subject: str
    """``KIND:key``."""
    version: int
    """``as_of`` in microseconds since the epoch."""
    as_of: str
    """``as_of`` as the snapshot gives it (ISO 8601)."""
    full: bytes
    """Answer document for the ``evidence`` scope."""
    basic: bytes
    """Answer document for the ``basic`` scope."""
    lists: str
    """Lists the subject is on, comma separated, empty when none."""
    related: tuple[str, ...]
    """Vehicles: the carrier's and the recent drivers' subjects."""


@dataclass(frozen=True, slots=True)
class StoredTrigger:
    """A list trigger as a subject's history keeps it."""

    subject: str
    """Whose trigger."""
    score: int
    """``recorded_at`` in microseconds since the epoch."""
    member: bytes
    """The trigger as JSON, with its source record."""


def shown_subject(subject: str, *, evidence: bool) -> str:
    """A subject as an answer shows it: driver ID numbers masked outside the evidence scope."""
    if not evidence and subject.startswith("DRIVER:"):
        return "DRIVER:" + mask_identifier(subject[len("DRIVER:") :])
    return subject


def _instant_us(raw: object, name: str) -> tuple[int, str]:
    if not isinstance(raw, str):
        raise SnapshotFormatError(f"{name}: expected an ISO 8601 instant")
    try:
        value = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise SnapshotFormatError(f"{name}: not an ISO 8601 instant") from exc
    if value.tzinfo is None:
        raise SnapshotFormatError(f"{name}: instant without a time zone")
    return (value - _EPOCH) // _MICROSECOND, raw


def _strings(raw: object, name: str) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise SnapshotFormatError(f"{name}: expected a list of strings")
    return list(raw)


def _rule_status(entry: Mapping[str, Any]) -> str:
    status = entry.get("status") or entry.get("lifecycle_status") or "listed"
    return str(status).lower()


def stored_subject(value: Mapping[str, Any], key: str | None = None) -> StoredSubject:
    """The serving store's form of a snapshot (``processors.snapshot.CreditSnapshot`` as JSON).

    The ``evidence`` document::

        {"subject": "VEHICLE:鲁P12345|YELLOW", "known": true, "listed": true,
         "lists_on": ["blacklist"], "as_of": "...", "policy_version": "2026-04-01",
         "grade": "C", "score": 50,
         "lists": {"blacklist": {"listed": true, "status": "listed",
                                 "rules": [{"rule_id": "overload.vehicle", "status": "listed",
                                            "policy_version": "...", "since": "...",
                                            "reason": "...", "evidence_event_ids": [...],
                                            "evidence_violation_ids": [...]}]},
                   "watchlist": {...}, "red_list": {...}},
         "violations_in_window": {"OVERLOAD": 5, ...}, "window_days": 365,
         "carrier": "CARRIER:...", "recent_drivers": ["DRIVER:..."]}

    The ``basic`` document keeps subject, listed, lists (status and rule ids only), grade, score,
    policy version and ``as_of``; a driver's ID number in it is masked.

    :param value: the decoded JSON value of a ``credit-snapshots`` record.
    :param key: the record key; it names the subject when given.
    :raises SnapshotFormatError: when the value is not a snapshot.
    """
    subject = key if key is not None else value.get("subject")
    if not isinstance(subject, str) or ":" not in subject:
        raise SnapshotFormatError("subject: expected KIND:key")
    version, as_of = _instant_us(value.get("as_of"), "as_of")
    memberships = value.get("memberships") or []
    if not isinstance(memberships, list):
        raise SnapshotFormatError("memberships: expected a list")
    rules_by_list: dict[str, list[dict[str, Any]]] = {name: [] for name in LIST_FIELDS.values()}
    for index, entry in enumerate(memberships):
        if not isinstance(entry, dict):
            raise SnapshotFormatError(f"memberships[{index}]: expected an object")
        try:
            list_field = LIST_FIELDS[ListName(str(entry.get("list_name")))]
        except ValueError as exc:
            raise SnapshotFormatError(f"memberships[{index}].list_name: unknown list") from exc
        rules_by_list[list_field].append(
            {
                "rule_id": str(entry.get("rule_id")),
                "status": _rule_status(entry),
                "policy_version": entry.get("policy_version"),
                "since": entry.get("since"),
                "reason": entry.get("reason"),
                "evidence_event_ids": _strings(
                    entry.get("evidence_event_ids"), f"memberships[{index}].evidence_event_ids"
                ),
                "evidence_violation_ids": _strings(
                    entry.get("evidence_violation_ids"),
                    f"memberships[{index}].evidence_violation_ids",
                ),
                # The lifecycle (processors.lifecycle): notice, publication, objection.
                "notice_ends": entry.get("notice_ends"),
                "published_on": entry.get("published_on"),
                "public_until": entry.get("public_until"),
                "disputed": bool(entry.get("disputed")),
            }
        )
    full_lists: dict[str, Any] = {}
    basic_lists: dict[str, Any] = {}
    on: list[str] = []
    for list_name, list_field in LIST_FIELDS.items():
        rules = rules_by_list[list_field]
        statuses = {rule["status"] for rule in rules}
        listed = bool(statuses & _LISTED_STATUSES)
        status = next((s for s in STATUS_PRECEDENCE if s in statuses), NOT_LISTED)
        if listed:
            on.append(list_name.value)
        full_lists[list_field] = {"listed": listed, "status": status, "rules": rules}
        basic_lists[list_field] = {
            "listed": listed,
            "status": status,
            "rules": [
                {"rule_id": r["rule_id"], "status": r["status"], "disputed": r["disputed"]}
                for r in rules
            ],
        }
    carrier = value.get("carrier")
    if carrier is not None and not isinstance(carrier, str):
        raise SnapshotFormatError("carrier: expected a subject or null")
    drivers = _strings(value.get("recent_drivers"), "recent_drivers")
    related = tuple(([carrier] if carrier else []) + drivers)
    head = {
        "known": True,
        "listed": bool(on),
        "lists_on": [LIST_FIELDS[ListName(name)] for name in on],
        "as_of": as_of,
        "policy_version": value.get("policy_version"),
        "grade": value.get("grade"),
        "score": value.get("score"),
    }
    full = {
        "subject": subject,
        **head,
        "lists": full_lists,
        "violations_in_window": value.get("violations_in_window") or {},
        "window_days": value.get("window_days"),
        "carrier": carrier,
        "recent_drivers": drivers,
    }
    basic = {"subject": shown_subject(subject, evidence=False), **head, "lists": basic_lists}
    return StoredSubject(
        subject=subject,
        version=version,
        as_of=as_of,
        full=orjson.dumps(full),
        basic=orjson.dumps(basic),
        lists=",".join(on),
        related=related,
    )


def stored_trigger(value: Mapping[str, Any], source: str, key: str | None = None) -> StoredTrigger:
    """The history form of a list trigger (``processors.lists.ListTrigger`` as JSON).

    :param value: the decoded JSON value of a ``list-triggers`` record.
    :param source: ``topic/partition/offset`` of the record.
    :param key: the record key; it names the subject when given.
    :raises SnapshotFormatError: when the value is not a trigger.
    """
    subject = key if key is not None else value.get("subject")
    if not isinstance(subject, str) or ":" not in subject:
        raise SnapshotFormatError("subject: expected KIND:key")
    score, recorded_at = _instant_us(value.get("recorded_at"), "recorded_at")
    try:
        list_field = LIST_FIELDS[ListName(str(value.get("list_name")))]
    except ValueError as exc:
        raise SnapshotFormatError("list_name: unknown list") from exc
    member = {
        "action": value.get("action"),
        "list": list_field,
        "rule_id": value.get("rule_id"),
        "effective_time": value.get("effective_time"),
        "recorded_at": recorded_at,
        "reason": value.get("reason"),
        "policy_version": value.get("policy_version"),
        "evidence_event_ids": _strings(value.get("evidence_event_ids"), "evidence_event_ids"),
        "source": source,
    }
    return StoredTrigger(subject, score, orjson.dumps(member))


# --- the write script -----------------------------------------------------------------------

# One call per partition of a batch. KEYS[1] offsets, KEYS[2] meta, then one key per operation.
# ARGV[1] offsets field, ARGV[2] the stored offset the writer expects ('' for none), ARGV[3] the
# next offset after the batch, ARGV[4] written_at_ms, ARGV[5] written_at (ISO), ARGV[6] history
# length, then 8 values per operation:
#   'S' version offset source as_of full basic lists|related   -- snapshot (compare and set)
#   'D' offset - - - - - -                                       -- tombstone: subject erased
#   'T' score member - - - - - -                                 -- list trigger
# Returns {1, applied, stale, tombstones, triggers, newest version applied or -1}, or
# {-1, stored offset} when the stored offset is not the one expected (the store lost data, or
# another writer moved on): then nothing is written.
_WRITE_SCRIPT = """
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if (stored or '') ~= ARGV[2] then
  return {-1, stored or ''}
end
local applied, stale, tombstones, triggers = 0, 0, 0, 0
local newest, newest_iso = -1, ''
local history = tonumber(ARGV[6])
local k = 3
for i = 7, #ARGV, 8 do
  local op = ARGV[i]
  local key = KEYS[k]
  k = k + 1
  if op == 'S' then
    local version, offset = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
    local cur = redis.call('HMGET', key, 'version', 'offset')
    local cv, co = tonumber(cur[1]), tonumber(cur[2])
    if cv and (version < cv or (version == cv and offset < co)) then
      stale = stale + 1
    else
      local sep = string.find(ARGV[i + 7], '|', 1, true)
      redis.call('HSET', key, 'version', ARGV[i + 1], 'offset', ARGV[i + 2],
        'source', ARGV[i + 3], 'as_of', ARGV[i + 4], 'full', ARGV[i + 5], 'basic', ARGV[i + 6],
        'lists', string.sub(ARGV[i + 7], 1, sep - 1))
      local related = string.sub(ARGV[i + 7], sep + 1)
      if related == '' then
        redis.call('HDEL', key, 'related')
      else
        redis.call('HSET', key, 'related', related)
      end
      if not cv then
        redis.call('HINCRBY', KEYS[2], 'subjects', 1)
      end
      applied = applied + 1
      if version > newest then
        newest, newest_iso = version, ARGV[i + 4]
      end
    end
  elseif op == 'D' then
    if redis.call('DEL', key) == 1 then
      redis.call('HINCRBY', KEYS[2], 'subjects', -1)
    end
    tombstones = tombstones + 1
  else
    redis.call('ZADD', key, ARGV[i + 1], ARGV[i + 2])
    redis.call('ZREMRANGEBYRANK', key, 0, -(history + 1))
    triggers = triggers + 1
  end
end
if newest >= 0 then
  local known = tonumber(redis.call('HGET', KEYS[2], 'as_of_us'))
  if not known or newest > known then
    redis.call('HSET', KEYS[2], 'as_of_us', newest, 'as_of', newest_iso)
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], 'written_at_ms', ARGV[4], 'written_at', ARGV[5])
return {1, applied, stale, tombstones, triggers, newest}
"""

# Sets ready when every stored offset is the one the writer expects. KEYS[1] offsets, KEYS[2]
# meta; ARGV[1] caught_up_at, then pairs of offsets field and expected offset ('' for none).
# Returns 1, or 0 (nothing written) when an offset differs: the store lost data.
_CAUGHT_UP_SCRIPT = """
for i = 2, #ARGV, 2 do
  if (redis.call('HGET', KEYS[1], ARGV[i]) or '') ~= ARGV[i + 1] then
    return 0
  end
end
redis.call('HSET', KEYS[2], 'ready', '1', 'caught_up_at', ARGV[1])
return 1
"""


def _offsets_field(tp: TopicPartition) -> str:
    return f"{tp.topic}:{tp.partition}"


def _iso_now() -> tuple[int, str]:
    now = datetime.now(UTC)
    return int(now.timestamp() * 1000), now.isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class _PartitionWrite:
    """The script call for one partition of a batch."""

    tp: TopicPartition
    keys: list[str]
    args: list[str | bytes | int]
    next_offset: int


# --- metrics ------------------------------------------------------------------------------------


class ServingStoreMetrics(NamedTuple):
    """What the serving-store sink exports."""

    writes: Counter
    """credit_serving_store_writes_total{topic,result}: records written, by result."""
    lag_seconds: Gauge
    """credit_serving_store_lag_seconds: now minus the newest snapshot ``as_of`` written, while
    records wait to be written (0 when every partition is read to its end)."""
    retries: Counter
    """credit_serving_store_retries_total: batch writes retried after a Redis error."""
    consumer_lag: Gauge
    """credit_consumer_lag_messages{topic,partition}: committed records not yet in Redis."""
    skipped: Counter
    """credit_serving_store_skipped_total{topic,reason}: records that are not snapshots."""
    reloads: Counter
    """credit_serving_store_reloads_total: partitions read again because Redis lost data."""
    batch_seconds: Histogram
    """credit_serving_store_batch_seconds: one batch written, retries included."""

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ServingStoreMetrics:
        """Register every serving-store metric on ``registry``."""
        return cls(
            writes=Counter(
                "credit_serving_store_writes",
                "Records written to Redis, by topic and result (applied, stale, tombstone, "
                "trigger).",
                ["topic", "result"],
                registry=registry,
            ),
            lag_seconds=Gauge(
                "credit_serving_store_lag_seconds",
                "Now minus the newest snapshot as_of written to Redis, while records wait to "
                "be written (0 when caught up).",
                registry=registry,
            ),
            retries=Counter(
                "credit_serving_store_retries",
                "Batch writes retried after a Redis error.",
                registry=registry,
            ),
            consumer_lag=Gauge(
                "credit_consumer_lag_messages",
                "Records not yet read, by topic and partition.",
                ["topic", "partition"],
                registry=registry,
            ),
            skipped=Counter(
                "credit_serving_store_skipped",
                "Records skipped because they are not what the worker writes, by topic and reason.",
                ["topic", "reason"],
                registry=registry,
            ),
            reloads=Counter(
                "credit_serving_store_reloads",
                "Partitions read again from the offset Redis holds, after Redis lost data.",
                registry=registry,
            ),
            batch_seconds=Histogram(
                "credit_serving_store_batch_seconds",
                "Time to write one batch to Redis, retries included.",
                buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0),
                registry=registry,
            ),
        )


# --- writing batches ----------------------------------------------------------------------------


@dataclass
class Backoff:
    """Capped exponential backoff with jitter: ``initial * 2**n``, at most ``cap`` seconds."""

    initial: float = 0.05
    cap: float = 5.0
    attempts: int = field(default=0, init=False)

    def next_delay(self) -> float:
        """The delay before the next attempt (between half and all of the exponential step)."""
        step = min(self.cap, self.initial * 2.0 ** min(self.attempts, 32))
        self.attempts += 1
        jitter: float = random.random()  # noqa: S311 (jitter, not a secret)
        return step * (0.5 + jitter / 2)

    def reset(self) -> None:
        """Start again from ``initial`` after a success."""
        self.attempts = 0


def connect_redis(url: str, *, timeout: float = 2.0, bounded_reads: bool = True) -> Redis:
    """A Redis client that fails fast: one immediate retry (a stale pooled connection after a
    restart), then the error goes to the caller, which owns backoff and metrics.

    :param timeout: seconds to connect, and to wait for each reply when ``bounded_reads``.
    :param bounded_reads: False for a caller that bounds each call itself (the API does, once
        per script call, instead of once per socket read).
    """
    return Redis.from_url(
        url,
        socket_timeout=timeout if bounded_reads else None,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
    )


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; True when it was."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What writing one batch did."""

    written: tuple[tuple[TopicPartition, int], ...] = ()
    """Partitions written, with the next offset to read."""
    lost: tuple[TopicPartition, ...] = ()
    """Partitions not written: Redis does not hold the offset this writer last wrote."""
    applied: int = 0
    """Snapshots written."""
    stale: int = 0
    """Snapshots older than the stored one, left out."""


class StoreWriter:
    """Writes batches of records to the serving store, retrying on Redis errors.

    Keeps, per partition, the next offset as it last wrote it; every write checks that Redis
    still holds that offset (see the module docstring).
    """

    def __init__(
        self,
        redis: Redis,
        *,
        metrics: ServingStoreMetrics,
        layout: ServingStoreLayout,
        snapshots_topic: str,
        history: int = 20,
        backoff: Backoff | None = None,
    ) -> None:
        """
        :param redis: the serving store (see :func:`connect_redis`).
        :param metrics: where to count.
        :param layout: key names.
        :param snapshots_topic: records of this topic are snapshots, of any other triggers.
        :param history: list triggers kept per subject.
        :param backoff: delays between retries of a batch after a Redis error.
        """
        self.redis = redis
        self.layout = layout
        self.metrics = metrics
        self.expected: dict[TopicPartition, int | None] = {}
        """Next offset of each owned partition as this writer last wrote it (None: nothing)."""
        self.redis_ok = False
        """Whether the last Redis call succeeded."""
        self.newest_as_of_us: int | None = None
        """Newest snapshot ``as_of`` this writer wrote."""
        self._snapshots_topic = snapshots_topic
        self._history = history
        self._backoff = backoff or Backoff()
        self._write = redis.register_script(_WRITE_SCRIPT)
        self._caught_up = redis.register_script(_CAUGHT_UP_SCRIPT)

    async def stored_offsets(
        self, tps: Sequence[TopicPartition], stop: asyncio.Event
    ) -> dict[TopicPartition, int] | None:
        """The next offsets Redis holds for ``tps`` (retrying); None when stopped first."""
        fields = [_offsets_field(tp) for tp in tps]
        while True:
            try:
                raw = await self.redis.hmget(self.layout.offsets, fields) if fields else []
                newest = await self.redis.hget(self.layout.meta, "as_of_us")
            except RedisError as exc:
                self._failed("reading stored offsets", exc)
                if await _wait(stop, self._backoff.next_delay()):
                    return None
                continue
            self._succeeded()
            if newest is not None and self.newest_as_of_us is None:
                self.newest_as_of_us = int(newest)  # the lag gauge starts from what is stored
            return {tp: int(v) for tp, v in zip(tps, raw, strict=True) if v is not None}

    async def write(
        self, batch: Mapping[TopicPartition, Sequence[Any]], stop: asyncio.Event
    ) -> BatchOutcome | None:
        """Write one batch: one pipeline, one script call per partition; retried until Redis
        has it. None when ``stop`` was set first (nothing of the batch counts as written)."""
        started = time.perf_counter()
        writes = [self._prepare(tp, records) for tp, records in batch.items() if records]
        if not writes:
            return BatchOutcome()
        while True:
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for write in writes:
                        await self._write(keys=write.keys, args=write.args, client=pipe)
                    replies = await pipe.execute()
            except RedisError as exc:
                self._failed(f"writing a batch of {len(writes)} partitions", exc)
                if await _wait(stop, self._backoff.next_delay()):
                    return None
                continue
            break
        self._succeeded()
        written: list[tuple[TopicPartition, int]] = []
        lost: list[TopicPartition] = []
        applied = stale = 0
        for write, reply in zip(writes, replies, strict=True):
            tp = write.tp
            if int(reply[0]) != 1:
                stored = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
                log.warning(
                    "Redis holds offset %s for %s, not %s: reading it again from there",
                    stored or "(none)",
                    _offsets_field(tp),
                    self.expected.get(tp),
                )
                self.metrics.reloads.inc()
                lost.append(tp)
                continue
            n_applied, n_stale, n_tombstones, n_triggers, newest = (int(n) for n in reply[1:6])
            self.expected[tp] = write.next_offset
            written.append((tp, write.next_offset))
            applied += n_applied
            stale += n_stale
            for result, count in (
                ("applied", n_applied),
                ("stale", n_stale),
                ("tombstone", n_tombstones),
                ("trigger", n_triggers),
            ):
                if count:
                    self.metrics.writes.labels(tp.topic, result).inc(count)
            if newest >= 0:
                self.newest_as_of_us = max(newest, self.newest_as_of_us or newest)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        return BatchOutcome(tuple(written), tuple(lost), applied, stale)

    async def mark_caught_up(self, tps: Sequence[TopicPartition]) -> bool | None:
        """Mark the store ready, if Redis still holds every offset this writer wrote.

        :returns: True when marked, False when Redis lost data (read ``tps`` again), None when
            Redis did not answer.
        """
        args: list[str] = [datetime.now(UTC).isoformat(timespec="milliseconds")]
        for tp in tps:
            expected = self.expected.get(tp)
            args += [_offsets_field(tp), "" if expected is None else str(expected)]
        try:
            marked = await self._caught_up(keys=[self.layout.offsets, self.layout.meta], args=args)
        except RedisError as exc:
            self._failed("marking the store caught up", exc)
            return None
        self._succeeded()
        if not marked:
            log.warning("Redis lost the offsets this sink wrote: reading the partitions again")
            self.metrics.reloads.inc(len(tps))
        return bool(marked)

    def _failed(self, what: str, exc: RedisError) -> None:
        self.redis_ok = False
        self.metrics.retries.inc()
        log.warning("%s failed (%s); retrying", what, type(exc).__name__)

    def _succeeded(self) -> None:
        self.redis_ok = True
        self._backoff.reset()

    def _prepare(self, tp: TopicPartition, records: Sequence[Any]) -> _PartitionWrite:
        expected = self.expected.get(tp)
        keys = [self.layout.offsets, self.layout.meta]
        written_at_ms, written_at = _iso_now()
        next_offset = int(records[-1].offset) + 1
        args: list[str | bytes | int] = [
            _offsets_field(tp),
            "" if expected is None else str(expected),
            next_offset,
            written_at_ms,
            written_at,
            self._history,
        ]
        is_snapshots = tp.topic == self._snapshots_topic
        for record in records:
            source = f"{tp.topic}/{tp.partition}/{record.offset}"
            try:
                key = record.key.decode() if record.key is not None else None
                if record.value is None:
                    if is_snapshots and key:  # a tombstone: the subject is erased
                        keys.append(self.layout.subject(key))
                        args += ["D", record.offset, "", "", "", "", "", ""]
                    continue
                value = orjson.loads(record.value)
                if not isinstance(value, dict):
                    raise SnapshotFormatError("expected a JSON object")
                if is_snapshots:
                    stored = stored_subject(value, key)
                    keys.append(self.layout.subject(stored.subject))
                    args += [
                        "S",
                        stored.version,
                        record.offset,
                        source,
                        stored.as_of,
                        stored.full,
                        stored.basic,
                        stored.lists + "|" + "\n".join(stored.related),
                    ]
                else:
                    trigger = stored_trigger(value, source, key)
                    keys.append(self.layout.triggers(trigger.subject))
                    args += ["T", trigger.score, trigger.member, "", "", "", "", ""]
            except (orjson.JSONDecodeError, SnapshotFormatError, UnicodeDecodeError) as exc:
                # The value may hold personal data: log where it is, never what it says.
                self.metrics.skipped.labels(tp.topic, type(exc).__name__).inc()
                log.warning("skipped %s: %s", source, type(exc).__name__)
        return _PartitionWrite(tp, keys, args, next_offset)


# --- the sink: a consumer group around the writer ---------------------------------------------


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, store: ServingStore) -> None:
        self._store = store

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self._store.forget(revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._store.hold_until_positioned(assigned)


class ServingStore:
    """Keeps the Redis serving store up to date from the snapshots and triggers topics."""

    def __init__(
        self,
        redis: Redis,
        *,
        bootstrap_servers: str,
        group_id: str,
        metrics: ServingStoreMetrics,
        layout: ServingStoreLayout | None = None,
        snapshots_topic: str = CREDIT_SNAPSHOTS_TOPIC.name,
        triggers_topic: str | None = LIST_TRIGGERS_TOPIC.name,
        max_records: int = 500,
        history: int = 20,
        backoff: Backoff | None = None,
        poll_timeout: float = 0.5,
    ) -> None:
        """
        :param redis: the serving store (see :func:`connect_redis`).
        :param bootstrap_servers: Kafka brokers, comma separated.
        :param group_id: the sink's own consumer group.
        :param metrics: where to count.
        :param layout: key names; the default prefix when None.
        :param snapshots_topic: the compacted snapshots topic.
        :param triggers_topic: the list-triggers topic, or None to keep no trigger history.
        :param max_records: most records per batch (one Redis pipeline each).
        :param history: list triggers kept per subject.
        :param backoff: delays between retries after a Redis error.
        :param poll_timeout: longest wait of one poll, in seconds.
        """
        self._writer = StoreWriter(
            redis,
            metrics=metrics,
            layout=layout or ServingStoreLayout(),
            snapshots_topic=snapshots_topic,
            history=history,
            backoff=backoff,
        )
        self._metrics = metrics
        self._topics = [snapshots_topic] + ([triggers_topic] if triggers_topic else [])
        self._max_records = max_records
        self._poll_ms = int(poll_timeout * 1000)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            isolation_level="read_committed",
            enable_auto_commit=False,
            # The position comes from Redis (see _position); this only matters if it cannot.
            auto_offset_reset="earliest",
        )
        self._unpositioned: set[TopicPartition] = set()
        """Partitions assigned (or found lost) and not yet at the offset Redis holds."""
        self._last_caught_up = 0.0
        self._is_caught_up = False
        self._started = False
        metrics.lag_seconds.set_function(self._lag_seconds)

    @property
    def ready(self) -> bool:
        """Consuming, every partition positioned, and the last Redis call successful."""
        return (
            self._started
            and self._writer.redis_ok
            and not self._unpositioned
            and bool(self._consumer.assignment())
        )

    async def start(self) -> None:
        """Join the group."""
        self._consumer.subscribe(self._topics, listener=_Rebalance(self))
        await self._consumer.start()
        self._started = True

    async def stop(self) -> None:
        """Leave the group."""
        self._started = False
        await self._consumer.stop()

    async def run(self, stop: asyncio.Event) -> None:
        """Poll, write and commit until ``stop`` is set."""
        while not stop.is_set():
            if self._unpositioned and not await self._position(stop):
                return
            batch: dict[TopicPartition, list[Any]] = await self._consumer.getmany(
                timeout_ms=self._poll_ms, max_records=self._max_records
            )
            batch = {
                tp: records
                for tp, records in batch.items()
                if tp in self._writer.expected and tp not in self._unpositioned
            }
            if batch:
                outcome = await self._writer.write(batch, stop)
                if outcome is None:
                    return
                self.hold_until_positioned(outcome.lost)
                await self._commit(dict(outcome.written))
            await self._after_poll()

    def forget(self, revoked: Iterable[TopicPartition]) -> None:
        """Partitions taken away by a rebalance."""
        for tp in revoked:
            self._writer.expected.pop(tp, None)
            self._unpositioned.discard(tp)
            with contextlib.suppress(KeyError):
                self._metrics.consumer_lag.remove(tp.topic, str(tp.partition))

    def hold_until_positioned(self, tps: Iterable[TopicPartition]) -> None:
        """Read nothing of ``tps`` until they are at the offset Redis holds (not at the one
        Kafka committed, which Redis may have lost since)."""
        tps = list(tps)
        if tps:
            self._consumer.pause(*tps)
            self._unpositioned.update(tps)

    async def _position(self, stop: asyncio.Event) -> bool:
        """Seek the held partitions to the offsets Redis holds; False when stopped first."""
        assignment = self._consumer.assignment()
        tps = [tp for tp in self._unpositioned if tp in assignment]
        stored = await self._writer.stored_offsets(tps, stop)
        if stored is None:
            return False
        start = [tp for tp in tps if tp not in stored]
        if start:
            await self._consumer.seek_to_beginning(*start)
        for tp in tps:
            if tp in stored:
                self._consumer.seek(tp, stored[tp])
            self._writer.expected[tp] = stored.get(tp)
        self._unpositioned.clear()
        self._consumer.resume(*tps)
        log.info("positioned %d partitions from Redis, %d from the start", len(tps), len(start))
        return True

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except Exception as exc:  # noqa: BLE001 (Redis holds the position; Kafka's is a copy)
            log.warning("committing offsets to Kafka failed: %s", type(exc).__name__)

    async def _after_poll(self) -> None:
        """Update the lag gauges; mark the store ready when every partition is read to its end."""
        assignment = self._consumer.assignment()
        caught_up = bool(assignment) and not self._unpositioned
        for tp in assignment:
            end = self._consumer.last_stable_offset(tp)
            if end is None or tp in self._unpositioned:
                caught_up = False
                continue
            # The fetch position, past any transaction marker that follows the last record.
            lag = max(0, end - await self._consumer.position(tp))
            self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)
            caught_up = caught_up and lag == 0
        self._is_caught_up = caught_up
        now = time.monotonic()
        if caught_up and now - self._last_caught_up >= 1.0:
            tps = sorted(assignment)
            if await self._writer.mark_caught_up(tps) is False:
                self.hold_until_positioned(tps)
            self._last_caught_up = now

    def _lag_seconds(self) -> float:
        # Caught up, the store holds everything there is, however old: no lag. (Else a quiet
        # night would read as a store falling behind.)
        newest = self._writer.newest_as_of_us
        if self._is_caught_up or newest is None:
            return 0.0
        return max(0.0, time.time() - newest / 1e6)


# --- rebuild ------------------------------------------------------------------------------------


class RebuildRefusedError(RuntimeError):
    """The store is not empty and the rebuild was not forced, or there is no topic to read."""


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What a rebuild did."""

    topic: str
    """The compacted topic read."""
    partitions: int
    """Its partitions."""
    records: int
    """Records read (compaction may have removed older ones)."""
    applied: int
    """Snapshots written (the rest were older than one already written)."""
    subjects: int
    """Subjects in the store afterwards."""
    seconds: float
    """From the start of reading to the store marked ready."""

    @property
    def records_per_second(self) -> float:
        """Read and write rate."""
        return self.records / self.seconds if self.seconds else 0.0


def _glob(prefix: str) -> str:
    """``prefix`` with the glob characters of SCAN's MATCH escaped."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in prefix)


async def _is_empty(redis: Redis, layout: ServingStoreLayout) -> bool:
    if await redis.exists(layout.meta, layout.offsets):
        return False
    async for _ in redis.scan_iter(match=_glob(layout.subject_prefix) + "*", count=1000):
        return False
    return True


async def _wipe(redis: Redis, layout: ServingStoreLayout) -> int:
    """Remove the store's keys (the audit stream stays)."""
    removed = int(await redis.delete(layout.meta, layout.offsets))
    for prefix in (layout.subject_prefix, layout.triggers_prefix):
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=_glob(prefix) + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                removed += int(await redis.unlink(*batch))
                batch = []
        if batch:
            removed += int(await redis.unlink(*batch))
    return removed


async def rebuild_store(
    redis: Redis,
    *,
    bootstrap_servers: str,
    metrics: ServingStoreMetrics,
    layout: ServingStoreLayout | None = None,
    snapshots_topic: str = CREDIT_SNAPSHOTS_TOPIC.name,
    force: bool = False,
    max_records: int = 2000,
) -> RebuildReport:
    """Load the compacted snapshots topic from its start into an empty store.

    The store's offsets are written with the data, so a sink started afterwards continues where
    the rebuild stopped. Until it ends the store is not ``ready``, and the API answers 503.

    :raises RebuildRefusedError: when the store holds data and ``force`` is False (with
        ``force`` the store's keys, not the audit stream, are removed first), or when the topic
        does not exist.
    """
    layout = layout or ServingStoreLayout()
    if not await _is_empty(redis, layout):
        if not force:
            raise RebuildRefusedError(
                f"the serving store under {layout.prefix!r} is not empty; force to replace it"
            )
        log.info("removed %d keys of the serving store to rebuild it", await _wipe(redis, layout))
    writer = StoreWriter(redis, metrics=metrics, layout=layout, snapshots_topic=snapshots_topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    started = time.perf_counter()
    records = applied = 0
    try:
        partitions = await topic_partitions(bootstrap_servers, snapshots_topic)
        if not partitions:
            raise RebuildRefusedError(f"topic {snapshots_topic!r} does not exist")
        tps = [TopicPartition(snapshots_topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        for tp in tps:
            writer.expected[tp] = None
        remaining = {tp for tp in tps if ends[tp] > 0}
        never = asyncio.Event()
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=max_records)
            if batch:
                records += sum(len(part) for part in batch.values())
                outcome = await writer.write(batch, never)
                if outcome is None or outcome.lost:
                    raise RebuildRefusedError("another writer changed the store during the rebuild")
                applied += outcome.applied
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        if not await writer.mark_caught_up(tps):
            raise RebuildRefusedError("the store changed during the rebuild")
        subjects = int(await redis.hget(layout.meta, "subjects") or 0)
    finally:
        await consumer.stop()
    return RebuildReport(
        topic=snapshots_topic,
        partitions=len(tps),
        records=records,
        applied=applied,
        subjects=subjects,
        seconds=time.perf_counter() - started,
    )


async def rebuild(settings: Settings, *, force: bool = False) -> RebuildReport:
    """Rebuild the serving store at ``settings.redis_url`` from ``credit-snapshots``."""
    redis = connect_redis(settings.redis_url)
    try:
        return await rebuild_store(
            redis,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            metrics=ServingStoreMetrics.create(CollectorRegistry()),
            snapshots_topic=prefixed(CREDIT_SNAPSHOTS_TOPIC, settings.topic_prefix).name,
            force=force,
        )
    finally:
        await redis.aclose()


# --- the process --------------------------------------------------------------------------------


def operator_app(store: ServingStore, registry: CollectorRegistry) -> web.Application:
    """/metrics, /health/live and /health/ready of the sink process."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), content_type=CONTENT_TYPE_LATEST.split(";")[0]
        )

    async def live(_: web.Request) -> web.Response:
        return web.json_response({"status": "live"})

    async def ready(_: web.Request) -> web.Response:
        is_ready = store.ready
        return web.json_response(
            {"status": "ready" if is_ready else "not ready"}, status=200 if is_ready else 503
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
    return app


async def run_serving_store(settings: Settings) -> None:
    """Run the serving-store sink until SIGTERM or SIGINT."""
    registry = CollectorRegistry()
    redis = connect_redis(settings.redis_url)
    store = ServingStore(
        redis,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"{settings.topic_prefix}{settings.app_id}-serving-store",
        metrics=ServingStoreMetrics.create(registry),
        snapshots_topic=prefixed(CREDIT_SNAPSHOTS_TOPIC, settings.topic_prefix).name,
        triggers_topic=prefixed(LIST_TRIGGERS_TOPIC, settings.topic_prefix).name,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(operator_app(store, registry), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.bind_host, settings.serving_store_metrics_port)
    await site.start()
    log.info(
        "serving store: %s -> Redis; /metrics on %s:%d",
        settings.kafka_bootstrap_servers,
        settings.bind_host,
        settings.serving_store_metrics_port,
    )
    try:
        await store.start()
        await store.run(stop)
    finally:
        await store.stop()
        await runner.cleanup()
        await redis.aclose()

"""The outbox relay: deliver publication requests to the credit website, earliest deadline first.

Data flow (ANCHORS.md §C, transactional outbox)::

    publication-requests ──read_committed, manual commits──▶ KafkaOutboxRelay
        ──▶ Publisher: one queue ordered by legal deadline, bounded concurrency, retries
        ──PUT / DELETE /api/v1/publications/{id}──▶ credit website (idempotent)
        ──▶ publication-status (compacted: id → DELIVERED | DEAD_LETTERED, revision, action)
        ──▶ publication-requests.dead-letter (what the website refused, with the reason)

**Delivery is at least once to an idempotent receiver.** Every request carries
``Idempotency-Key: <publication id>:<revision>:<action>``; the website answers a replay with its
first answer and ignores a lower revision (``stale``). A record's offset is committed only after
its outcome is in the status topic, so a crash resends at most what was in flight; on start the
relay reads the whole status topic and skips whatever it says was acknowledged at the same or a
later ``(revision, action)``, so a restart (or lost offsets) does not resend acknowledged work.

**Order.** Per publication id only the newest request matters: ``(revision, action)`` with a
withdrawal above a publication of the same revision, as on the website. A newer request replaces
a queued older one; while an older one is in flight the newer one waits for it, so a withdrawal
never overtakes the publication it withdraws. Across ids, the backlog is served earliest legal
deadline first (ties: earliest appended).

**Retries** (never given up: a legal deadline does not end because the website is down):

- network errors and timeouts, 408, 429, 502, 503, 504 and 401 are *host* failures: the whole
  website is paused for a capped exponential backoff with full jitter (``Retry-After`` honoured
  as a floor, in seconds or as an HTTP date), and the request is retried;
- 500 and other 5xx are *request* failures: only that request backs off, so one record the
  website chokes on cannot hold up the others;
- every request that fails also backs off by its own attempt count; the first success after a
  host failure makes every waiting request due again, so the backlog resumes in deadline order;
- any other 4xx is final: the request goes to the dead-letter topic (reason, status, a masked
  excerpt of the body) and DEAD_LETTERED is recorded;
- 404 on a withdrawal means the website never had the record: done.

401 is retried rather than dead-lettered (a local choice): a wrong token is an operator error
that affects every request, and dead-lettering the whole stream until it is fixed would need a
manual replay of each; retrying keeps the at-risk and overdue alarms meaningful instead.

Time comes from an injected :class:`Clock` and randomness from an injected ``random.Random``, so
tests run days of backoff instantly.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import heapq
import itertools
import json
import logging
import random
import signal
from collections import Counter as Tally
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple, Protocol
from urllib.parse import quote

import httpx
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from processors.disclosure import (
    PublicationAction,
    PublicationRequest,
    find_personal_data,
    mask_free_text,
    request_from_dict,
    request_to_dict,
)
from processors.facts import china_date
from processors.workdays import (
    CHINESE_CALENDAR,
    WorkdayCalendar,
    parse_official_schedule,
    working_days_left,
)
from streams.settings import Settings
from streams.topics import PUBLICATION_REQUESTS_TOPIC, PUBLICATION_STATUS_TOPIC, prefixed

__all__ = [
    "Clock",
    "DeadLetterSink",
    "DeliveryStatus",
    "KafkaDeadLetters",
    "KafkaOutboxRelay",
    "KafkaStatusStore",
    "MemoryDeadLetters",
    "MemoryStatusStore",
    "Publisher",
    "PublisherMetrics",
    "RetryPolicy",
    "StatusRecord",
    "StatusStore",
    "SystemClock",
    "idempotency_key",
    "run_publisher",
]

log = logging.getLogger(__name__)

DELIVERY_BUCKETS = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14_400.0,
    86_400.0, 259_200.0, 604_800.0,
)  # fmt: skip
"""Seconds from append to acknowledgement: sub-second when healthy, days through an outage."""
BODY_EXCERPT_CHARS = 500
"""How much of a refusing response's body a dead letter keeps (masked)."""
MALFORMED_REQUEST = "MALFORMED_REQUEST"
UNMASKED_PERSONAL_DATA = "UNMASKED_PERSONAL_DATA"
HOST_FAILURE_STATUSES = frozenset({401, 408, 429, 502, 503, 504})
"""Answers that say the website as a whole cannot take requests now."""


# --- time -----------------------------------------------------------------------------------------


class Clock(Protocol):
    """Where the publisher gets the time and waits; tests pass a fake that advances instantly."""

    def now(self) -> datetime:
        """The current instant, timezone-aware."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


# --- status and dead letters ----------------------------------------------------------------------


class DeliveryStatus(StrEnum):
    """What became of a request, as the status topic records it."""

    DELIVERED = "DELIVERED"
    DEAD_LETTERED = "DEAD_LETTERED"


_ACTION_RANK = {PublicationAction.PUBLISH: 0, PublicationAction.WITHDRAW: 1}


def _order(revision: int, action: PublicationAction) -> tuple[int, int]:
    """Which of two requests for one publication is newer: a withdrawal beats a publication of
    the same revision (the website's rule)."""
    return revision, _ACTION_RANK[action]


@dataclass(frozen=True, slots=True)
class StatusRecord:
    """The last outcome for one publication id (value of the compacted status topic)."""

    status: DeliveryStatus
    """Delivered (acknowledged by the website) or dead-lettered."""
    revision: int
    """Revision of the request the outcome is for."""
    action: PublicationAction
    """Publish or withdraw."""
    delivered_at: datetime
    """When the outcome was reached."""
    attempts: int
    """HTTP attempts it took."""

    @property
    def order(self) -> tuple[int, int]:
        """``(revision, action)`` rank; see :func:`_order`."""
        return _order(self.revision, self.action)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for the status topic."""
        return {
            "status": self.status.value,
            "revision": self.revision,
            "action": self.action.value,
            "delivered_at": self.delivered_at.isoformat(),
            "attempts": self.attempts,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StatusRecord:
        """The record :meth:`to_dict` wrote. :raises ValueError: for anything else."""
        try:
            revision, attempts = data["revision"], data["attempts"]
            if not isinstance(revision, int) or not isinstance(attempts, int):
                raise ValueError("revision and attempts must be integers")
            delivered_at = datetime.fromisoformat(data["delivered_at"])
            if delivered_at.tzinfo is None:
                raise ValueError("delivered_at must carry a time zone")
            return cls(
                DeliveryStatus(data["status"]),
                revision,
                PublicationAction(data["action"]),
                delivered_at,
                attempts,
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a status record: {error!r}") from error


class StatusStore(Protocol):
    """Outcomes by publication id: read at start, written as requests are settled."""

    def get(self, publication_id: str) -> StatusRecord | None:
        """The recorded outcome, if any."""
        ...

    async def put(self, publication_id: str, record: StatusRecord) -> None:
        """Record an outcome durably; return once it is stored."""
        ...


class MemoryStatusStore:
    """A status store in a dict (tests, and the cache behind :class:`KafkaStatusStore`)."""

    def __init__(self, records: Mapping[str, StatusRecord] | None = None) -> None:
        self.records: dict[str, StatusRecord] = dict(records or {})

    def get(self, publication_id: str) -> StatusRecord | None:
        return self.records.get(publication_id)

    async def put(self, publication_id: str, record: StatusRecord) -> None:
        self.records[publication_id] = record


class DeadLetterSink(Protocol):
    """Where refused requests go, with the reason."""

    async def dead_letter(self, key: str, letter: Mapping[str, Any]) -> None:
        """Store one dead letter durably."""
        ...


class MemoryDeadLetters:
    """Dead letters in a list (tests)."""

    def __init__(self) -> None:
        self.letters: list[tuple[str, dict[str, Any]]] = []

    async def dead_letter(self, key: str, letter: Mapping[str, Any]) -> None:
        self.letters.append((key, dict(letter)))


def _json_bytes(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class KafkaStatusStore:
    """The compacted ``publication-status`` topic, cached in memory.

    :param producer: a started, idempotent producer.
    :param topic: the status topic.
    :param records: what :meth:`load` read.
    """

    def __init__(
        self, producer: AIOKafkaProducer, topic: str, records: Mapping[str, StatusRecord]
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._records = dict(records)

    @staticmethod
    async def load(
        bootstrap_servers: str, topic: str, producer: AIOKafkaProducer
    ) -> dict[str, StatusRecord]:
        """Read the status topic from the beginning to its current end.

        :param producer: a started producer, used to wait for the topic's metadata.
        """
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            isolation_level="read_committed",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        await asyncio.sleep(0)  # aiokafka 0.14: stop() before its first step raises
        records: dict[str, StatusRecord] = {}
        try:
            # The producer waits for the topic's metadata (a consumer would not ask for it).
            partitions = await producer.partitions_for(topic)
            tps = [TopicPartition(topic, p) for p in sorted(partitions or ())]
            if not tps:
                raise RuntimeError(f"the status topic {topic!r} does not exist")
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)

            async def behind() -> bool:
                for tp in tps:
                    if await consumer.position(tp) < ends[tp]:
                        return True
                return False

            while await behind():
                batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
                for part in batch.values():
                    for record in part:
                        key = record.key.decode() if record.key is not None else None
                        if key is None:
                            continue
                        if record.value is None:
                            records.pop(key, None)  # a tombstone
                            continue
                        try:
                            records[key] = StatusRecord.from_dict(json.loads(record.value))
                        except ValueError:
                            log.warning("ignoring a malformed status record at %s", record.offset)
            return records
        finally:
            await consumer.stop()

    def get(self, publication_id: str) -> StatusRecord | None:
        return self._records.get(publication_id)

    async def put(self, publication_id: str, record: StatusRecord) -> None:
        future = await self._producer.send(
            self._topic, _json_bytes(record.to_dict()), key=publication_id.encode()
        )
        await future
        self._records[publication_id] = record

    def __len__(self) -> int:
        return len(self._records)


class KafkaDeadLetters:
    """The ``publication-requests.dead-letter`` topic, keyed by publication id."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def dead_letter(self, key: str, letter: Mapping[str, Any]) -> None:
        future = await self._producer.send(self._topic, _json_bytes(letter), key=key.encode())
        await future


# --- retries and metrics --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter (AWS architecture blog's "Full Jitter")."""

    base_seconds: float = 1.0
    """Ceiling of the first delay."""
    cap_seconds: float = 300.0
    """Largest delay ceiling: a website back from an outage is retried within this long."""
    max_retry_after_seconds: float = 3600.0
    """A larger ``Retry-After`` is cut to this, so a wrong header cannot stall a deadline."""

    def delay(self, failures: int, rng: random.Random) -> float:
        """A delay after ``failures`` consecutive failures (>= 1): uniform in [0, ceiling]."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2.0 ** min(failures - 1, 62))
        return rng.uniform(0.0, ceiling)


class PublisherMetrics(NamedTuple):
    """What the publisher exports."""

    pending: Gauge
    at_risk: Gauge
    overdue: Gauge
    provisional_deadlines: Gauge
    delivery_seconds: Histogram
    retries: Counter
    delivered: Counter
    dead_lettered: Counter
    skipped: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> PublisherMetrics:
        """Register every publisher metric on ``registry``."""
        return cls(
            pending=Gauge(
                "credit_publications_pending",
                "Publication requests not yet acknowledged by the website, by kind.",
                ["kind"],
                registry=registry,
            ),
            at_risk=Gauge(
                "credit_publications_at_risk",
                "Pending requests with few working days left before their legal deadline "
                "(publisher_at_risk_working_days or fewer), by kind.",
                ["kind"],
                registry=registry,
            ),
            overdue=Gauge(
                "credit_publications_overdue",
                "Pending requests past their legal deadline, by kind.",
                ["kind"],
                registry=registry,
            ),
            provisional_deadlines=Gauge(
                "credit_provisional_deadlines",
                "Pending requests whose deadline counted days of a year without an official "
                "holiday schedule (load the schedule: the deadline may be too early).",
                registry=registry,
            ),
            delivery_seconds=Histogram(
                "credit_publication_delivery_seconds",
                "From a request's append to the outbox topic to the website's acknowledgement.",
                ["kind"],
                buckets=DELIVERY_BUCKETS,
                registry=registry,
            ),
            retries=Counter(
                "credit_publication_retries",
                "Failed delivery attempts that will be retried, by kind and reason.",
                ["kind", "reason"],
                registry=registry,
            ),
            delivered=Counter(
                "credit_publications_delivered",
                "Requests acknowledged by the website, by kind and action.",
                ["kind", "action"],
                registry=registry,
            ),
            dead_lettered=Counter(
                "credit_publications_dead_lettered",
                "Requests sent to the dead-letter topic, by kind and reason.",
                ["kind", "reason"],
                registry=registry,
            ),
            skipped=Counter(
                "credit_publications_skipped",
                "Requests not sent, by kind and reason: acknowledged (the status topic has it), "
                "superseded (a newer revision is pending), duplicate (the same one is pending).",
                ["kind", "reason"],
                registry=registry,
            ),
        )


# --- the delivery engine --------------------------------------------------------------------------


def idempotency_key(request: PublicationRequest) -> str:
    """``<publication id>:<revision>:<action>``: the same request always gets the same key."""
    return f"{request.publication_id}:{request.revision}:{request.action.value}"


@dataclass(eq=False, slots=True)
class _Item:
    request: PublicationRequest
    appended_at: datetime
    on_done: Callable[[], None] | None
    seq: int
    attempts: int = 0
    not_before: datetime | None = None

    @property
    def order(self) -> tuple[int, int]:
        return _order(self.request.revision, self.request.action)

    def done(self) -> None:
        """Tell the source the record is settled, once."""
        callback, self.on_done = self.on_done, None
        if callback is not None:
            callback()

    def also_done(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` too when this request is settled."""
        if callback is None:
            return
        first = self.on_done
        if first is None:
            self.on_done = callback
            return

        def both() -> None:
            first()
            callback()

        self.on_done = both


class _Outcome(NamedTuple):
    final: DeliveryStatus | None
    """DELIVERED or DEAD_LETTERED when settled; None to retry."""
    reason: str
    """Retry or dead-letter reason (``http_503``, ``timeout``, ...), or the website's answer."""
    status_code: int | None = None
    body: str = ""
    host_failure: bool = False
    retry_after: float | None = None


class Publisher:
    """Delivers publication requests to the website: EDF queue, bounded concurrency, retries.

    :param client: the HTTP client (tests pass ``httpx.AsyncClient(transport=MockTransport)``);
        its timeouts bound each attempt.
    :param website_url: base URL of the website, e.g. ``http://127.0.0.1:8000``.
    :param api_token: the bearer token of the website's publication API.
    :param status: outcomes already recorded (read at start) and where new ones go.
    :param dead_letters: where refused requests go.
    :param metrics: the publisher's metrics.
    :param clock: time and waiting; :class:`SystemClock` by default.
    :param rng: the jitter source; a fresh ``random.Random()`` by default.
    :param calendar: working days, for the at-risk gauge.
    :param at_risk_working_days: a pending request with this many working days left or fewer
        is at risk.
    :param concurrency: most requests in flight at once.
    :param retry: backoff settings.
    :param gauge_interval_seconds: how often the deadline gauges are recomputed.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        website_url: str,
        api_token: str,
        *,
        status: StatusStore,
        dead_letters: DeadLetterSink,
        metrics: PublisherMetrics,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        calendar: WorkdayCalendar = CHINESE_CALENDAR,
        at_risk_working_days: int = 2,
        concurrency: int = 8,
        retry: RetryPolicy | None = None,
        gauge_interval_seconds: float = 15.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._client = client
        self._base = website_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_token}"}
        self._status = status
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._clock: Clock = clock or SystemClock()
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not cryptography)
        self._calendar = calendar
        self._at_risk_days = at_risk_working_days
        self._concurrency = concurrency
        self._retry = retry or RetryPolicy()
        self._gauge_interval = timedelta(seconds=gauge_interval_seconds)
        self._seq = itertools.count()
        self._latest: dict[str, _Item] = {}
        """The newest request per id, queued or in flight: what is pending."""
        self._in_flight: dict[str, _Item] = {}
        self._ready: list[tuple[date, datetime, int, _Item]] = []
        self._delayed: list[tuple[datetime, int, _Item]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._wakeup = asyncio.Event()
        self._host_failures = 0
        self._host_not_before: datetime | None = None
        self._gauges_at: datetime | None = None
        # Kinds with gauges from the start, so that alerts see zeros rather than no series.
        self._kinds_seen: set[str] = {"penalty", "licensing"}

    # --- the queue -----------------------------------------------------------------------------

    @property
    def pending_count(self) -> int:
        """Requests not yet settled (queued, waiting to retry, or in flight)."""
        return len(self._latest)

    def status_of(self, publication_id: str) -> StatusRecord | None:
        """The recorded outcome for ``publication_id``, if any."""
        return self._status.get(publication_id)

    def submit(
        self,
        request: PublicationRequest,
        appended_at: datetime,
        on_done: Callable[[], None] | None = None,
    ) -> bool:
        """Queue a request; ``on_done`` is called once it needs nothing more from its source
        (settled, skipped, or superseded by a newer request for the same id).

        :returns: False when the request is skipped: the status store says a request at the
            same or a later ``(revision, action)`` was already settled, or the same or a newer
            one is pending (a duplicate's ``on_done`` then waits for the pending copy).
        """
        publication_id, kind = request.publication_id, request.kind.value
        order = _order(request.revision, request.action)
        recorded = self._status.get(publication_id)
        if recorded is not None and recorded.order >= order:
            self._metrics.skipped.labels(kind, "acknowledged").inc()
            if on_done is not None:
                on_done()
            return False
        item = _Item(request, appended_at, on_done, next(self._seq))
        current = self._latest.get(publication_id)
        if current is not None:
            if current.order == order:
                # The same request read again (partitions moved back to this process): its
                # record is settled when the pending copy is, not before.
                self._metrics.skipped.labels(kind, "duplicate").inc()
                current.also_done(on_done)
                return False
            if current.order > order:
                self._metrics.skipped.labels(kind, "superseded").inc()
                item.done()
                return False
            # The newer request replaces the older: its record need not be read again.
            self._metrics.skipped.labels(current.request.kind.value, "superseded").inc()
            current.done()
        self._latest[publication_id] = item
        self._kinds_seen.add(kind)
        if current is None:
            self._metrics.pending.labels(kind).inc()
        if publication_id not in self._in_flight:
            self._push_ready(item)
        self._wakeup.set()
        return True

    def _push_ready(self, item: _Item) -> None:
        item.not_before = None
        heapq.heappush(self._ready, (item.request.deadline, item.appended_at, item.seq, item))

    def _push_delayed(self, item: _Item, not_before: datetime) -> None:
        item.not_before = not_before
        heapq.heappush(self._delayed, (not_before, item.seq, item))

    def _is_current(self, item: _Item) -> bool:
        return self._latest.get(item.request.publication_id) is item

    def _promote(self, now: datetime) -> None:
        """Move delayed requests whose time has come to the ready queue."""
        while self._delayed and self._delayed[0][0] <= now:
            not_before, _, item = heapq.heappop(self._delayed)
            if self._is_current(item) and item.not_before == not_before:
                self._push_ready(item)

    def _promote_all(self) -> None:
        """The website is back: everything waiting is due again, in deadline order."""
        while self._delayed:
            not_before, _, item = heapq.heappop(self._delayed)
            if self._is_current(item) and item.not_before == not_before:
                self._push_ready(item)

    def _pop_ready(self) -> _Item | None:
        while self._ready:
            *_, item = heapq.heappop(self._ready)
            publication_id = item.request.publication_id
            # Skip entries left behind by a newer request or by a retry that re-queued the item.
            if (
                self._is_current(item)
                and item.not_before is None
                and publication_id not in self._in_flight
            ):
                return item
        return None

    # --- the dispatcher --------------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver until cancelled."""
        try:
            while True:
                self._wakeup.clear()
                now = self._clock.now()
                self._promote(now)
                gated = self._host_not_before is not None and now < self._host_not_before
                while not gated and len(self._tasks) < self._concurrency:
                    item = self._pop_ready()
                    if item is None:
                        break
                    self._start(item)
                if self._gauges_at is None or now - self._gauges_at >= self._gauge_interval:
                    self.refresh_gauges(now)
                await self._wait(self._seconds_to_next(now, gated))
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    def _seconds_to_next(self, now: datetime, gated: bool) -> float | None:
        """How long the dispatcher may sleep; None to wait for a submit or a completion."""
        moments: list[datetime] = []
        if len(self._tasks) < self._concurrency:
            if self._delayed:
                moments.append(self._delayed[0][0])
            if gated and self._ready and self._host_not_before is not None:
                moments.append(self._host_not_before)
        if not self._tasks and self._latest:
            # Nothing will wake the dispatcher, yet the deadline gauges age: refresh them.
            moments.append(now + self._gauge_interval)
        if not moments:
            return None
        return max(0.0, (min(moments) - now).total_seconds())

    async def _wait(self, seconds: float | None) -> None:
        if seconds is None:
            await self._wakeup.wait()
            return
        if self._wakeup.is_set():
            return
        waiter = asyncio.ensure_future(self._wakeup.wait())
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        try:
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiter, sleeper):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    def _start(self, item: _Item) -> None:
        self._in_flight[item.request.publication_id] = item
        task = asyncio.create_task(self._deliver(item))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, item: _Item) -> None:
        try:
            outcome = await self._attempt(item)
            await self._settle(item, outcome)
        except asyncio.CancelledError:
            self._in_flight.pop(item.request.publication_id, None)
            raise
        except Exception:
            # The status or dead-letter write failed (the broker is away): try again later.
            log.exception("settling %s failed; retrying", item.request.publication_id)
            self._metrics.retries.labels(item.request.kind.value, "bookkeeping").inc()
            self._reschedule(item, self._clock.now(), _Outcome(None, "bookkeeping"))
        finally:
            # Free the slot before waking the dispatcher (the done callback would come later).
            task = asyncio.current_task()
            if task is not None:
                self._tasks.discard(task)
            self._wakeup.set()

    async def _attempt(self, item: _Item) -> _Outcome:
        request = item.request
        leaked = find_personal_data(
            f"{request.publication_id}\n{json.dumps(_body(request), ensure_ascii=False)}"
        )
        if leaked:
            # A last line of defence: never send what the website must refuse anyway.
            return _Outcome(
                DeliveryStatus.DEAD_LETTERED,
                UNMASKED_PERSONAL_DATA,
                body=f"{len(leaked)} unmasked value(s) found before sending",
            )
        item.attempts += 1
        url = f"{self._base}/api/v1/publications/{quote(request.publication_id, safe=':')}"
        headers = {**self._headers, "Idempotency-Key": idempotency_key(request)}
        method = "PUT" if request.action is PublicationAction.PUBLISH else "DELETE"
        try:
            response = await self._client.request(method, url, json=_body(request), headers=headers)
        except httpx.TimeoutException:
            return _Outcome(None, "timeout", host_failure=True)
        except httpx.TransportError:
            return _Outcome(None, "network", host_failure=True)
        code = response.status_code
        if 200 <= code < 300 or (code == 404 and method == "DELETE"):
            return _Outcome(DeliveryStatus.DELIVERED, _answer(response), code)
        retry_after = _retry_after(response, self._clock.now())
        if code in HOST_FAILURE_STATUSES:
            return _Outcome(None, f"http_{code}", code, host_failure=True, retry_after=retry_after)
        if code >= 500:
            return _Outcome(None, f"http_{code}", code, retry_after=retry_after)
        return _Outcome(DeliveryStatus.DEAD_LETTERED, f"http_{code}", code, response.text)

    async def _settle(self, item: _Item, outcome: _Outcome) -> None:
        request, now = item.request, self._clock.now()
        kind = request.kind.value
        if outcome.final is None:
            self._metrics.retries.labels(kind, outcome.reason).inc()
            log.info(
                "retrying %s (%s, attempt %d)",
                request.publication_id,
                outcome.reason,
                item.attempts,
            )
            self._reschedule(item, now, outcome)
            return
        if outcome.final is DeliveryStatus.DEAD_LETTERED:
            await self._dead_letters.dead_letter(
                request.publication_id, _dead_letter(request, outcome, item.attempts, now)
            )
        elif self._host_failures:
            self._host_failures = 0
            self._promote_all()  # the website is back: serve the backlog in deadline order
        record = StatusRecord(outcome.final, request.revision, request.action, now, item.attempts)
        await self._status.put(request.publication_id, record)
        # Counted once the outcome is recorded: a failed status write retries and must not count.
        if outcome.final is DeliveryStatus.DEAD_LETTERED:
            self._metrics.dead_lettered.labels(kind, outcome.reason).inc()
            log.warning(
                "dead-lettered %s revision %d: %s",
                request.publication_id,
                request.revision,
                outcome.reason,
            )
        else:
            seconds = (now - item.appended_at).total_seconds()
            self._metrics.delivery_seconds.labels(kind).observe(max(0.0, seconds))
            self._metrics.delivered.labels(kind, request.action.value).inc()
        self._finish(item)

    def _finish(self, item: _Item) -> None:
        publication_id = item.request.publication_id
        self._in_flight.pop(publication_id, None)
        if self._is_current(item):
            del self._latest[publication_id]
            self._metrics.pending.labels(item.request.kind.value).dec()
            item.done()
        else:
            newer = self._latest.get(publication_id)
            if newer is not None:
                self._push_ready(newer)

    def _reschedule(self, item: _Item, now: datetime, outcome: _Outcome) -> None:
        publication_id = item.request.publication_id
        self._in_flight.pop(publication_id, None)
        floor = min(outcome.retry_after or 0.0, self._retry.max_retry_after_seconds)
        if outcome.host_failure:
            self._host_failures += 1
            pause = max(floor, self._retry.delay(self._host_failures, self._rng))
            until = now + timedelta(seconds=pause)
            if self._host_not_before is None or until > self._host_not_before:
                self._host_not_before = until
        if not self._is_current(item):
            newer = self._latest.get(publication_id)
            if newer is not None:
                self._push_ready(newer)
            return
        own = max(floor, self._retry.delay(max(item.attempts, 1), self._rng))
        self._push_delayed(item, now + timedelta(seconds=own))

    # --- gauges ----------------------------------------------------------------------------------

    def refresh_gauges(self, now: datetime | None = None) -> None:
        """Recompute pending, at-risk, overdue and provisional counts for ``now``."""
        now = now or self._clock.now()
        self._gauges_at = now
        today = china_date(now)
        by_deadline = Tally(
            (i.request.kind.value, i.request.deadline) for i in self._latest.values()
        )
        pending, at_risk, overdue = Tally[str](), Tally[str](), Tally[str]()
        for (kind, due), count in by_deadline.items():
            pending[kind] += count
            if today > due:
                overdue[kind] += count
            elif working_days_left(self._calendar, today, due) <= self._at_risk_days:
                at_risk[kind] += count
        for kind in self._kinds_seen:
            self._metrics.pending.labels(kind).set(pending[kind])
            self._metrics.at_risk.labels(kind).set(at_risk[kind])
            self._metrics.overdue.labels(kind).set(overdue[kind])
        provisional = sum(1 for i in self._latest.values() if i.request.deadline_provisional)
        self._metrics.provisional_deadlines.set(provisional)


def _body(request: PublicationRequest) -> dict[str, Any]:
    """The JSON body of the website's API for ``request``."""
    if request.action is PublicationAction.WITHDRAW:
        reason = request.withdrawal_reason
        return {"reason": reason.value if reason else "revoked", "revision": request.revision}
    return {
        "kind": request.kind.value,
        "fields": dict(request.fields),
        "subject_name": request.subject_name,
        "subject_code": request.subject_code,
        "plate": request.plate,
        "decision_date": request.decision_date.isoformat(),
        "publication_end": (
            request.publication_end.isoformat() if request.publication_end else None
        ),
        "revision": request.revision,
    }


def _answer(response: httpx.Response) -> str:
    try:
        status = response.json().get("status")
    except (ValueError, AttributeError):
        return "ok"
    return str(status) if status else "ok"


def _retry_after(response: httpx.Response, now: datetime) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())


def _dead_letter(
    request: PublicationRequest, outcome: _Outcome, attempts: int, now: datetime
) -> dict[str, Any]:
    return {
        "reason": outcome.reason,
        "status_code": outcome.status_code,
        "body_excerpt": mask_free_text(outcome.body[:BODY_EXCERPT_CHARS]),
        "publication_id": request.publication_id,
        "revision": request.revision,
        "action": request.action.value,
        "kind": request.kind.value,
        "attempts": attempts,
        "dead_lettered_at": now.isoformat(),
        "request": request_to_dict(request),
    }


# --- the Kafka relay ------------------------------------------------------------------------------


class _Offsets:
    """Per partition: offsets read but not settled; what may be committed."""

    def __init__(self) -> None:
        self._pending: dict[TopicPartition, set[int]] = {}
        self._next: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}

    def read(self, tp: TopicPartition, offset: int) -> None:
        self._pending.setdefault(tp, set()).add(offset)
        self._next[tp] = max(self._next.get(tp, 0), offset + 1)

    def settled(self, tp: TopicPartition, offset: int) -> None:
        pending = self._pending.get(tp)
        if pending is not None:
            pending.discard(offset)

    def committable(self, tps: set[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Offsets to commit: each partition's first unsettled offset (or its end)."""
        result: dict[TopicPartition, int] = {}
        for tp, next_offset in self._next.items():
            if tps is not None and tp not in tps:
                continue
            pending = self._pending.get(tp)
            point = min(pending) if pending else next_offset
            if point > self._committed.get(tp, -1):
                result[tp] = point
        return result

    def committed(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._committed.update(offsets)

    def forget(self, tps: set[TopicPartition]) -> None:
        for tp in tps:
            self._pending.pop(tp, None)
            self._next.pop(tp, None)
            self._committed.pop(tp, None)


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, relay: KafkaOutboxRelay) -> None:
        self._relay = relay

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._relay.commit(set(revoked))
        self._relay.offsets.forget(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        return None


PublisherFactory = Callable[[StatusStore, DeadLetterSink], Publisher]
"""Builds the publisher once the relay has loaded the status topic."""


class KafkaOutboxRelay:
    """Reads ``publication-requests`` and hands them to a :class:`Publisher`.

    :param bootstrap_servers: the brokers.
    :param make_publisher: builds the publisher from the loaded status store and the dead-letter
        sink.
    :param requests_topic: the outbox topic (``publication-requests``).
    :param status_topic: the compacted status topic (``publication-status``).
    :param dead_letter_topic: where refused requests go.
    :param group_id: consumer group; offsets are committed to it by hand.
    :param max_pending: stop reading while this many requests are pending (memory bound; the
        deadline order only covers what has been read).
    :param commit_interval_seconds: how often settled offsets are committed.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        make_publisher: PublisherFactory,
        *,
        requests_topic: str = PUBLICATION_REQUESTS_TOPIC.name,
        status_topic: str = PUBLICATION_STATUS_TOPIC.name,
        dead_letter_topic: str = PUBLICATION_REQUESTS_TOPIC.dead_letter.name,
        group_id: str = "credit-transport-publisher",
        max_pending: int = 50_000,
        commit_interval_seconds: float = 1.0,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._make_publisher = make_publisher
        self._requests_topic = requests_topic
        self._status_topic = status_topic
        self._dead_letter_topic = dead_letter_topic
        self._group_id = group_id
        self._max_pending = max_pending
        self._commit_interval = commit_interval_seconds
        self.offsets = _Offsets()
        self.publisher: Publisher | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._ready = False

    @property
    def ready(self) -> bool:
        """The status topic is loaded and partitions are assigned."""
        consumer = self._consumer
        return self._ready and consumer is not None and bool(consumer.assignment())

    async def commit(self, tps: set[TopicPartition] | None = None) -> None:
        """Commit every settled prefix (of ``tps``, or of every partition)."""
        consumer = self._consumer
        if consumer is None:
            return
        offsets = self.offsets.committable(tps)
        if offsets:
            await consumer.commit(offsets)
            self.offsets.committed(offsets)

    async def run(self) -> None:
        """Load the status topic, then relay until cancelled."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, enable_idempotence=True, acks="all", linger_ms=5
        )
        await producer.start()
        try:
            records = await KafkaStatusStore.load(self._bootstrap, self._status_topic, producer)
            log.info("status topic loaded: %d publications", len(records))
            status = KafkaStatusStore(producer, self._status_topic, records)
            publisher = self._make_publisher(
                status, KafkaDeadLetters(producer, self._dead_letter_topic)
            )
            self.publisher = publisher
            await self._relay(publisher, producer)
        finally:
            self._ready = False
            await producer.stop()

    async def _relay(self, publisher: Publisher, producer: AIOKafkaProducer) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self._group_id,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        consumer.subscribe([self._requests_topic], listener=_CommitOnRevoke(self))
        await consumer.start()
        self._consumer = consumer
        self._ready = True
        delivery = asyncio.create_task(publisher.run())
        loop = asyncio.get_running_loop()
        committed_at = loop.time()
        try:
            while True:
                if delivery.done():
                    delivery.result()  # the publisher stopped: raise its error
                if publisher.pending_count >= self._max_pending:
                    await asyncio.sleep(0.1)  # backpressure: let deliveries drain
                else:
                    batch = await consumer.getmany(timeout_ms=200, max_records=1000)
                    for tp, part in batch.items():
                        for record in part:
                            await self._accept(publisher, producer, tp, record)
                if loop.time() - committed_at >= self._commit_interval:
                    await self.commit()
                    committed_at = loop.time()
        finally:
            delivery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await delivery
            with contextlib.suppress(Exception):
                await self.commit()
            self._consumer = None
            await consumer.stop()

    async def _accept(
        self, publisher: Publisher, producer: AIOKafkaProducer, tp: TopicPartition, record: Any
    ) -> None:
        self.offsets.read(tp, record.offset)
        appended_at = datetime.fromtimestamp(record.timestamp / 1000, UTC)
        try:
            request = request_from_dict(json.loads(record.value))
        except (ValueError, TypeError) as error:  # RequestFormatError, bad JSON, no value
            letter = {
                "reason": MALFORMED_REQUEST,
                "status_code": None,
                "body_excerpt": mask_free_text(str(error)[:BODY_EXCERPT_CHARS]),
                "source": f"{tp.topic}[{tp.partition}]@{record.offset}",
            }
            key = record.key.decode(errors="replace") if record.key else ""
            future = await producer.send(
                self._dead_letter_topic, _json_bytes(letter), key=record.key
            )
            await future
            log.warning("dead-lettered a malformed request %s at offset %d", key, record.offset)
            self.offsets.settled(tp, record.offset)
            return
        offset = record.offset
        publisher.submit(request, appended_at, lambda: self.offsets.settled(tp, offset))


# --- the process ----------------------------------------------------------------------------------


def load_calendar(directory: Path) -> WorkdayCalendar:
    """The working-day calendar with every official schedule (``*.yaml``, ``*.json``) in
    ``directory``; ``chinese_calendar`` alone when the folder does not exist."""
    if not directory.is_dir():
        return CHINESE_CALENDAR
    schedules = [
        parse_official_schedule(path.read_text(encoding="utf-8"))
        for path in sorted(directory.iterdir())
        if path.suffix in {".yaml", ".yml", ".json"}
    ]
    return WorkdayCalendar(schedules)


def operator_app(registry: CollectorRegistry, is_ready: Callable[[], bool]) -> web.Application:
    """/metrics, /health/live and /health/ready."""

    async def metrics_page(request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def live(request: web.Request) -> web.Response:
        return web.json_response({"status": "live"})

    async def ready(request: web.Request) -> web.Response:
        if is_ready():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "starting"}, status=503)

    app = web.Application()
    app.add_routes(
        [
            web.get("/metrics", metrics_page),
            web.get("/health/live", live),
            web.get("/health/ready", ready),
        ]
    )
    return app


async def run_publisher(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """The publisher process: relay the outbox to the website until SIGTERM/SIGINT (or ``stop``).

    Serves /metrics and /health/* on ``bind_host:publisher_metrics_port``.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
    try:
        await _serve_publisher(settings, stop)
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


async def _serve_publisher(settings: Settings, stop: asyncio.Event) -> None:
    requests_topic = prefixed(PUBLICATION_REQUESTS_TOPIC, settings.topic_prefix)
    status_topic = prefixed(PUBLICATION_STATUS_TOPIC, settings.topic_prefix)
    registry = CollectorRegistry()
    metrics = PublisherMetrics.create(registry)
    calendar = load_calendar(settings.calendar_dir)
    timeout = httpx.Timeout(10.0, connect=5.0)
    async with httpx.AsyncClient(timeout=timeout) as client:

        def make_publisher(status: StatusStore, dead_letters: DeadLetterSink) -> Publisher:
            return Publisher(
                client,
                settings.website_url,
                settings.website_api_token.get_secret_value(),
                status=status,
                dead_letters=dead_letters,
                metrics=metrics,
                calendar=calendar,
                at_risk_working_days=settings.publisher_at_risk_working_days,
            )

        relay = KafkaOutboxRelay(
            settings.kafka_bootstrap_servers,
            make_publisher,
            requests_topic=requests_topic.name,
            status_topic=status_topic.name,
            dead_letter_topic=requests_topic.dead_letter.name,
            group_id=f"{settings.topic_prefix}{settings.app_id}-publisher",
        )
        runner = web.AppRunner(operator_app(registry, lambda: relay.ready), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, settings.bind_host, settings.publisher_metrics_port)
        await site.start()
        log.info(
            "publisher: %s -> %s; metrics on %s:%d",
            requests_topic.name,
            settings.website_url,
            settings.bind_host,
            settings.publisher_metrics_port,
        )
        relaying = asyncio.create_task(relay.run())
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({relaying, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (relaying, stopping):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relaying
            await runner.cleanup()

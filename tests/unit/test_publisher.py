"""The publisher against a mock website (httpx.MockTransport) with a fake clock."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from processors.disclosure import (
    PublicationAction,
    PublicationKind,
    PublicationRequest,
    WithdrawalReason,
)
from sinks.publisher import (
    DeliveryStatus,
    MemoryDeadLetters,
    MemoryStatusStore,
    Publisher,
    PublisherMetrics,
    RetryPolicy,
    StatusRecord,
    _Offsets,
    _retry_after,
    idempotency_key,
)

D = date.fromisoformat
# Mon 2025-11-03 09:00 in China.
START = datetime(2025, 11, 3, 1, 0, tzinfo=UTC)
WEBSITE = "http://website.test"
TOKEN = "test-token"


class FakeClock:
    """Time that moves only when the publisher sleeps, and then at once."""

    def __init__(self, start: datetime = START) -> None:
        self._now = start
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:
        # Let every task that can run do so first: time passes only when all are waiting.
        for _ in range(20):
            await asyncio.sleep(0)
        self._now += timedelta(seconds=seconds)
        self.slept.append(seconds)
        await asyncio.sleep(0)

    def advance(self, delta: timedelta) -> None:
        self._now += delta


def request(
    publication_id: str = "CF:1",
    *,
    deadline: str = "2025-11-12",
    action: PublicationAction = PublicationAction.PUBLISH,
    revision: int = 0,
    kind: PublicationKind = PublicationKind.PENALTY,
    provisional: bool = False,
    subject_code: str = "91371524MA3C00001X",
) -> PublicationRequest:
    """A small request; a withdrawal carries no fields."""
    withdraw = action is PublicationAction.WITHDRAW
    return PublicationRequest(
        publication_id=publication_id,
        action=action,
        kind=kind,
        revision=revision,
        decision_date=D("2025-11-03"),
        deadline=D(deadline),
        deadline_provisional=provisional,
        source_event_id=f"event-{publication_id}-{revision}",
        fields={} if withdraw else {"CF_NR_FK": "0.200000", "CF_SY": "超限运输"},
        subject_name="" if withdraw else "东阿县顺达运输有限公司",
        subject_code="" if withdraw else subject_code,
        withdrawal_reason=WithdrawalReason.REVOKED if withdraw else None,
    )


Reply = httpx.Response | Exception


class FakeWebsite:
    """The website's publication API in a dict, with scripted faults first.

    Each call takes the next scripted reply if any is left, else behaves like the website:
    201/200 for PUT (stale for a lower revision), 200 or 404 for DELETE.
    """

    def __init__(self, clock: FakeClock, script: list[Reply] | None = None) -> None:
        self.clock = clock
        self.script = list(script or [])
        self.calls: list[tuple[datetime, str, str, str, dict[str, object]]] = []
        self.records: dict[str, dict[str, object]] = {}
        self.created = 0

    def __call__(self, http_request: httpx.Request) -> httpx.Response:
        publication_id = http_request.url.path.rsplit("/", 1)[-1]
        body = json.loads(http_request.content) if http_request.content else {}
        assert http_request.headers["Authorization"] == f"Bearer {TOKEN}"
        self.calls.append(
            (
                self.clock.now(),
                http_request.method,
                publication_id,
                http_request.headers["Idempotency-Key"],
                body,
            )
        )
        if self.script:
            reply = self.script.pop(0)
            if isinstance(reply, Exception):
                raise reply
            return reply
        stored = self.records.get(publication_id)
        revision = body["revision"]
        assert isinstance(revision, int)
        if http_request.method == "PUT":
            if stored is not None and revision < stored["revision"]:  # type: ignore[operator]
                return httpx.Response(200, json={"status": "stale"})
            self.records[publication_id] = {**body, "status": "published"}
            if stored is None:
                self.created += 1
                return httpx.Response(201, json={"status": "created"})
            return httpx.Response(200, json={"status": "replaced"})
        if stored is None:
            return httpx.Response(404, json={"status": "not_found"})
        if revision < stored["revision"]:  # type: ignore[operator]
            return httpx.Response(200, json={"status": "stale"})
        stored.update(status="withdrawn", revision=revision, reason=body["reason"])
        return httpx.Response(200, json={"status": "withdrawn"})

    def methods(self) -> list[tuple[str, str]]:
        return [(method, publication_id) for _, method, publication_id, _, _ in self.calls]


class Harness:
    """A publisher wired to a fake website, a fake clock and in-memory stores."""

    def __init__(
        self,
        script: list[Reply] | None = None,
        *,
        concurrency: int = 4,
        status: MemoryStatusStore | None = None,
        clock: FakeClock | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.clock = clock or FakeClock()
        self.website = FakeWebsite(self.clock, script)
        self.client = httpx.AsyncClient(transport=httpx.MockTransport(self.website))
        self.status = status if status is not None else MemoryStatusStore()
        self.dead_letters = MemoryDeadLetters()
        self.registry = CollectorRegistry()
        self.publisher = Publisher(
            self.client,
            WEBSITE,
            TOKEN,
            status=self.status,
            dead_letters=self.dead_letters,
            metrics=PublisherMetrics.create(self.registry),
            clock=self.clock,
            rng=random.Random(7),
            concurrency=concurrency,
            retry=retry or RetryPolicy(base_seconds=1.0, cap_seconds=60.0),
        )
        self.done: list[str] = []

    def submit(self, req: PublicationRequest, appended_at: datetime | None = None) -> bool:
        tag = f"{req.publication_id}:{req.revision}:{req.action.value}"
        return self.publisher.submit(
            req, appended_at or self.clock.now(), lambda: self.done.append(tag)
        )

    async def drain(self, until: Callable[[], bool] | None = None) -> None:
        """Run the publisher until nothing is pending (or ``until`` holds)."""
        condition = until or (lambda: self.publisher.pending_count == 0)
        task = asyncio.create_task(self.publisher.run())
        try:
            for _ in range(200_000):
                if condition():
                    break
                if task.done():
                    task.result()
                await asyncio.sleep(0)
            else:
                pytest.fail("the publisher did not settle")
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await self.client.aclose()

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


# --- retries --------------------------------------------------------------------------------------


async def test_a_5xx_burst_then_success_publishes_once() -> None:
    """500, 502, 503, 504, then 201: one publication, the same Idempotency-Key every time."""
    harness = Harness([httpx.Response(code) for code in (500, 502, 503, 504)])
    harness.submit(request())
    await harness.drain()
    assert [method for _, method, *_ in harness.website.calls] == ["PUT"] * 5
    assert {key for *_, key, _ in harness.website.calls} == {"CF:1:0:PUBLISH"}
    assert harness.website.created == 1
    record = harness.status.get("CF:1")
    assert record is not None
    assert (record.status, record.attempts) == (DeliveryStatus.DELIVERED, 5)
    assert harness.done == ["CF:1:0:PUBLISH"]
    for code in ("500", "502", "503", "504"):
        assert (
            harness.metric(
                "credit_publication_retries_total", kind="penalty", reason=f"http_{code}"
            )
            == 1
        )
    assert harness.dead_letters.letters == []


async def test_backoff_is_capped_exponential_with_full_jitter() -> None:
    """Each gap is within [0, min(cap, base * 2**(n-1))] and the gaps are not all equal."""
    harness = Harness([httpx.Response(500) for _ in range(10)])
    harness.submit(request())
    await harness.drain()
    times = [moment for moment, *_ in harness.website.calls]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert len(gaps) == 10
    for failures, gap in enumerate(gaps, start=1):
        ceiling = min(60.0, 2.0 ** (failures - 1))
        assert 0.0 <= gap <= ceiling + 1e-6, (failures, gap)
    assert len(set(gaps)) > 1


def test_retry_policy_delay_is_bounded() -> None:
    """Full jitter: uniform between zero and the capped exponential ceiling."""
    policy, rng = RetryPolicy(base_seconds=0.5, cap_seconds=30.0), random.Random(1)
    for failures in range(1, 80):
        assert 0.0 <= policy.delay(failures, rng) <= min(30.0, 0.5 * 2 ** (failures - 1))


@pytest.mark.parametrize("header", ["120", "HTTP-DATE"])
async def test_429_retry_after_is_honoured(header: str) -> None:
    """The next attempt waits at least Retry-After (seconds or an HTTP date)."""
    clock = FakeClock()
    value = (
        format_datetime(START + timedelta(seconds=120), usegmt=True)
        if header == "HTTP-DATE"
        else header
    )
    harness = Harness([httpx.Response(429, headers={"Retry-After": value})], clock=clock)
    harness.submit(request())
    await harness.drain()
    (first, *_), (second, *_) = harness.website.calls
    assert (second - first).total_seconds() >= 120
    assert (
        harness.metric("credit_publication_retries_total", kind="penalty", reason="http_429") == 1
    )


async def test_retry_after_holds_the_whole_website() -> None:
    """A 429 pauses every request, not only the one that got it."""
    harness = Harness([httpx.Response(429, headers={"Retry-After": "300"})], concurrency=1)
    harness.submit(request("CF:1", deadline="2025-11-05"))
    harness.submit(request("CF:2", deadline="2025-11-06"))
    await harness.drain()
    first = harness.website.calls[0][0]
    assert all((moment - first).total_seconds() >= 300 for moment, *_ in harness.website.calls[1:])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30", 30.0),
        (" 7 ", 7.0),
        ("Mon, 03 Nov 2025 01:01:00 GMT", 60.0),
        ("soon", None),
        ("-5", None),
    ],
)
def test_retry_after_parsing(value: str, expected: float | None) -> None:
    """Delta-seconds or an HTTP date; anything else is ignored."""
    response = httpx.Response(429, headers={"Retry-After": value})
    assert _retry_after(response, START) == expected


async def test_timeouts_are_retried() -> None:
    """Read and connect timeouts and refused connections are retried."""
    harness = Harness(
        [httpx.ReadTimeout("slow"), httpx.ConnectTimeout("slow"), httpx.ConnectError("refused")]
    )
    harness.submit(request())
    await harness.drain()
    assert len(harness.website.calls) == 4
    assert harness.website.created == 1
    assert harness.metric("credit_publication_retries_total", kind="penalty", reason="timeout") == 2
    assert harness.metric("credit_publication_retries_total", kind="penalty", reason="network") == 1


async def test_401_is_retried_not_dead_lettered() -> None:
    """A wrong token affects every request: retried until it is fixed (local choice)."""
    harness = Harness([httpx.Response(401), httpx.Response(401)])
    harness.submit(request())
    await harness.drain()
    assert harness.website.created == 1
    assert harness.dead_letters.letters == []


# --- dead letters -------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [400, 403, 409, 413, 422])
async def test_other_4xx_go_to_the_dead_letter_topic_without_retry(code: int) -> None:
    """One attempt; the dead letter has the reason, the status and a masked body excerpt."""
    body = {"status": "error", "reason": "UNMASKED_PERSONAL_DATA", "message": "电话13812345678"}
    harness = Harness([httpx.Response(code, json=body)])
    harness.submit(request())
    await harness.drain()
    assert len(harness.website.calls) == 1
    ((key, letter),) = harness.dead_letters.letters
    assert key == "CF:1"
    assert (letter["reason"], letter["status_code"], letter["attempts"]) == (
        f"http_{code}",
        code,
        1,
    )
    assert "UNMASKED_PERSONAL_DATA" in letter["body_excerpt"]
    assert "13812345678" not in letter["body_excerpt"]
    assert letter["request"]["publication_id"] == "CF:1"
    record = harness.status.get("CF:1")
    assert record is not None and record.status is DeliveryStatus.DEAD_LETTERED
    assert harness.done == ["CF:1:0:PUBLISH"]
    assert (
        harness.metric(
            "credit_publications_dead_lettered_total", kind="penalty", reason=f"http_{code}"
        )
        == 1
    )


async def test_unmasked_personal_data_is_never_sent() -> None:
    """A request that still holds a resident ID is dead-lettered before any HTTP call."""
    harness = Harness()
    harness.submit(request(subject_code="371524199001011237"))
    await harness.drain()
    assert harness.website.calls == []
    ((_, letter),) = harness.dead_letters.letters
    assert letter["reason"] == "UNMASKED_PERSONAL_DATA"
    assert "371524199001011237" not in json.dumps(letter["body_excerpt"])


async def test_withdrawing_what_the_website_never_had_is_done() -> None:
    """DELETE answered 404 not_found: nothing to take down, delivered."""
    harness = Harness()
    harness.submit(request(action=PublicationAction.WITHDRAW, revision=1))
    await harness.drain()
    assert harness.website.methods() == [("DELETE", "CF:1")]
    record = harness.status.get("CF:1")
    assert record is not None and record.status is DeliveryStatus.DELIVERED


# --- order ----------------------------------------------------------------------------------------


async def test_backlog_is_served_earliest_deadline_first() -> None:
    """With a backlog, the earliest legal deadline goes first; ties by append time."""
    harness = Harness(concurrency=1)
    appended = [
        ("CF:late", "2025-11-12", 0),
        ("CF:soonest", "2025-11-04", 1),
        ("CF:tie-second", "2025-11-06", 3),
        ("CF:tie-first", "2025-11-06", 2),
        ("CF:middle", "2025-11-10", 4),
    ]
    for publication_id, due, minute in appended:
        harness.submit(
            request(publication_id, deadline=due), START - timedelta(minutes=10 - minute)
        )
    await harness.drain()
    assert [publication_id for _, publication_id in harness.website.methods()] == [
        "CF:soonest",
        "CF:tie-first",
        "CF:tie-second",
        "CF:middle",
        "CF:late",
    ]


async def test_after_an_outage_the_backlog_resumes_in_deadline_order() -> None:
    """Refused connections for a while, then the earliest deadline is the first delivered."""
    refused = [httpx.ConnectError("refused") for _ in range(12)]
    harness = Harness(refused, concurrency=2)
    for index, due in enumerate(
        ["2025-11-10", "2025-11-05", "2025-11-12", "2025-11-04", "2025-11-07"]
    ):
        harness.submit(request(f"CF:{index}", deadline=due))
    await harness.drain()
    delivered = [pid for _, method, pid, _, _ in harness.website.calls[12:]]
    assert delivered[0] == "CF:3"  # due 11-04
    assert sorted(delivered) == ["CF:0", "CF:1", "CF:2", "CF:3", "CF:4"]
    assert harness.website.created == 5


async def test_concurrency_is_bounded() -> None:
    """No more requests in flight than the limit."""
    in_flight, peak = 0, 0
    release = asyncio.Event()

    async def handler(http_request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await release.wait()
        in_flight -= 1
        return httpx.Response(201, json={"status": "created"})

    clock = FakeClock()
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    publisher = Publisher(
        client, WEBSITE, TOKEN, status=MemoryStatusStore(), dead_letters=MemoryDeadLetters(),
        metrics=PublisherMetrics.create(CollectorRegistry()), clock=clock, concurrency=3,
    )  # fmt: skip
    for index in range(10):
        publisher.submit(request(f"CF:{index}"), START)
    task = asyncio.create_task(publisher.run())
    for _ in range(200):
        await asyncio.sleep(0)
    assert peak == 3
    release.set()
    for _ in range(2000):
        if publisher.pending_count == 0:
            break
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await client.aclose()
    assert publisher.pending_count == 0 and peak == 3


# --- revisions and withdrawals --------------------------------------------------------------------


async def test_a_withdrawal_after_a_publish_lands() -> None:
    """Publish, then withdraw at a higher revision: the website ends with the record withdrawn."""
    harness = Harness()
    harness.submit(request("CF:9"))
    await harness.drain(until=lambda: harness.website.created == 1)
    harness2 = Harness(status=harness.status, clock=harness.clock)
    harness2.website.records = harness.website.records
    harness2.submit(request("CF:9", action=PublicationAction.WITHDRAW, revision=1))
    await harness2.drain()
    assert harness2.website.methods() == [("DELETE", "CF:9")]
    assert harness2.website.records["CF:9"]["status"] == "withdrawn"
    record = harness2.status.get("CF:9")
    assert record is not None
    assert (record.action, record.revision) == (PublicationAction.WITHDRAW, 1)


async def test_a_withdrawal_waits_for_the_publication_in_flight() -> None:
    """A withdrawal queued while its publication is in flight is sent after it, not before."""
    harness = Harness([httpx.Response(503), httpx.Response(503)])
    harness.submit(request("CF:9"))
    task = asyncio.create_task(harness.publisher.run())
    for _ in range(50):  # the PUT is now in flight or backing off
        await asyncio.sleep(0)
    harness.submit(request("CF:9", action=PublicationAction.WITHDRAW, revision=1))
    for _ in range(100_000):
        if harness.publisher.pending_count == 0:
            break
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    methods = harness.website.methods()
    assert methods[-1] == ("DELETE", "CF:9")
    assert ("PUT", "CF:9") in methods[:1]
    assert (
        "CF:9" not in harness.website.records
        or harness.website.records["CF:9"]["status"] == "withdrawn"
    )
    # The superseded publication and the withdrawal both told their source they are done.
    assert sorted(harness.done) == ["CF:9:0:PUBLISH", "CF:9:1:WITHDRAW"]


async def test_a_queued_older_revision_is_replaced_by_the_newer_one() -> None:
    """Revision 0 and 1 queued together: only revision 1 is sent."""
    harness = Harness()
    harness.submit(request("CF:5", revision=0))
    harness.submit(request("CF:5", revision=1))
    assert harness.submit(request("CF:5", revision=0)) is False  # a replay of the older one
    await harness.drain()
    assert [body["revision"] for *_, body in harness.website.calls] == [1]
    assert sorted(harness.done) == ["CF:5:0:PUBLISH", "CF:5:0:PUBLISH", "CF:5:1:PUBLISH"]


async def test_a_duplicate_of_a_pending_request_settles_with_it() -> None:
    """The same request read twice is sent once, and both records settle only when it is."""
    harness = Harness([httpx.Response(503)])
    harness.submit(request("CF:6"))
    assert harness.submit(request("CF:6")) is False
    assert harness.done == []  # neither record may be committed before the delivery
    await harness.drain()
    assert harness.website.methods() == [("PUT", "CF:6"), ("PUT", "CF:6")]  # the 503, the retry
    assert harness.done == ["CF:6:0:PUBLISH", "CF:6:0:PUBLISH"]


# --- restart --------------------------------------------------------------------------------------


async def test_the_status_store_prevents_resending_acknowledged_requests_after_a_restart() -> None:
    """After a restart the same records are read again: acknowledged ones are not resent."""
    status = MemoryStatusStore()
    first = Harness(status=status)
    first.submit(request("CF:1"))
    first.submit(request("CF:2", action=PublicationAction.WITHDRAW, revision=1))
    await first.drain()
    assert len(first.website.calls) == 2

    # A new process with the status topic read back, re-reading the same outbox records.
    restarted = Harness(status=MemoryStatusStore(status.records), clock=first.clock)
    assert restarted.submit(request("CF:1")) is False
    assert restarted.submit(request("CF:2", action=PublicationAction.WITHDRAW, revision=1)) is False
    assert restarted.submit(request("CF:2", revision=1)) is False  # older than the withdrawal
    assert restarted.submit(request("CF:1", revision=1)) is True  # a newer revision is new work
    assert restarted.submit(request("CF:3")) is True
    await restarted.drain()
    assert restarted.website.methods() == [("PUT", "CF:1"), ("PUT", "CF:3")]
    assert (
        restarted.metric("credit_publications_skipped_total", kind="penalty", reason="acknowledged")
        == 3
    )
    assert len(restarted.done) == 5


def test_status_records_round_trip() -> None:
    """The status topic's JSON reads back to the same record."""
    record = StatusRecord(DeliveryStatus.DELIVERED, 3, PublicationAction.WITHDRAW, START, 2)
    assert StatusRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    with pytest.raises(ValueError):
        StatusRecord.from_dict({"status": "DELIVERED"})


def test_idempotency_key() -> None:
    """publication id, revision and action."""
    assert idempotency_key(request("CF:2025-101.ab", revision=2)) == "CF:2025-101.ab:2:PUBLISH"


# --- offsets ------------------------------------------------------------------------------------


def test_offsets_commit_only_the_settled_prefix() -> None:
    """A partition commits up to its first unsettled offset, never past it."""
    offsets, tp = _Offsets(), TopicPartition("publication-requests", 0)
    for offset in range(5):
        offsets.read(tp, offset)
    offsets.settled(tp, 0)
    offsets.settled(tp, 2)
    assert offsets.committable() == {tp: 1}
    offsets.committed({tp: 1})
    assert offsets.committable() == {}
    for offset in (1, 3, 4):
        offsets.settled(tp, offset)
    assert offsets.committable() == {tp: 5}


# --- metrics ------------------------------------------------------------------------------------


async def test_deadline_gauges() -> None:
    """Pending, at risk (<= 2 working days left), overdue and provisional, by kind."""
    clock = FakeClock()  # Mon 2025-11-03
    harness = Harness([httpx.ConnectError("down") for _ in range(1000)], clock=clock)
    harness.submit(request("CF:overdue", deadline="2025-10-31"))
    harness.submit(request("CF:today", deadline="2025-11-03"))
    harness.submit(request("CF:wed", deadline="2025-11-05"))  # 2 working days left: at risk
    harness.submit(request("CF:thu", deadline="2025-11-06"))  # 3 left: not yet
    harness.submit(
        request("XK:1", deadline="2025-11-12", kind=PublicationKind.LICENSING, provisional=True)
    )
    harness.publisher.refresh_gauges()
    assert harness.metric("credit_publications_pending", kind="penalty") == 4
    assert harness.metric("credit_publications_pending", kind="licensing") == 1
    assert harness.metric("credit_publications_overdue", kind="penalty") == 1
    assert harness.metric("credit_publications_at_risk", kind="penalty") == 2
    assert harness.metric("credit_publications_at_risk", kind="licensing") == 0
    assert harness.metric("credit_provisional_deadlines") == 1
    await harness.client.aclose()


async def test_pending_follows_every_change() -> None:
    """The pending gauge counts up on submit and down on settle, without waiting for a refresh."""
    harness = Harness()
    harness.submit(request("CF:1"))
    harness.submit(request("CF:1", revision=1))  # replaces: still one pending
    harness.submit(request("XK:1", kind=PublicationKind.LICENSING))
    assert harness.metric("credit_publications_pending", kind="penalty") == 1
    assert harness.metric("credit_publications_pending", kind="licensing") == 1
    await harness.drain()
    assert harness.metric("credit_publications_pending", kind="penalty") == 0
    assert harness.metric("credit_publications_pending", kind="licensing") == 0


async def test_delivery_seconds_count_from_the_append() -> None:
    """The histogram measures from the record's append time to the acknowledgement."""
    harness = Harness()
    harness.submit(request(), appended_at=START - timedelta(seconds=42))
    await harness.drain()
    assert harness.metric(
        "credit_publication_delivery_seconds_sum", kind="penalty"
    ) == pytest.approx(42)
    assert (
        harness.metric("credit_publications_delivered_total", kind="penalty", action="PUBLISH") == 1
    )

"""The publisher on the real broker against the real website process, with faults injected.

A small HTTP proxy between the two answers 503, holds requests past the client's timeout, and
refuses connections while a virtual clock runs through three working days ("the website is down
from Monday 08:00 to Thursday 09:00"). The test checks that every request ends up on the website
exactly once (through the website's own API and counters), that withdrawals land, that no
deadline still reachable when the website came back is missed, and that a restarted publisher
that reads the outbox again resends nothing the status topic says was acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from ops.services import free_port
from processors.disclosure import (
    PublicationAction,
    PublicationRequest,
    publication_for_licensing,
    publication_for_penalty,
    request_to_dict,
)
from processors.facts import china_date
from processors.model import (
    ChangeType,
    LicenceStatus,
    LicenceType,
    LicensingDecision,
    PenaltyCategory,
    PenaltyDecision,
    PlateColour,
    Procedure,
    SubjectType,
    ViolationCode,
)
from sinks.publisher import (
    DeadLetterSink,
    DeliveryStatus,
    KafkaOutboxRelay,
    Publisher,
    PublisherMetrics,
    RetryPolicy,
    StatusRecord,
    StatusStore,
    run_publisher,
)
from streams.settings import REPO_ROOT, Settings
from tests.conftest import KafkaService
from tests.integration.kafka_helpers import create_topics, read_committed

pytestmark = pytest.mark.integration

TOKEN = "integration-publisher-token"
D = date.fromisoformat
CST_08_00 = timedelta(hours=-8)
OUTAGE_START = datetime(2025, 11, 3, 8, 0, tzinfo=UTC) + CST_08_00  # Mon 08:00 in China
COME_BACK = datetime(2025, 11, 6, 9, 0, tzinfo=UTC) + CST_08_00  # Thu 09:00: 3 working days
CLIENT_TIMEOUT_SECONDS = 0.5
HELD_SECONDS = 1.2
"""The proxy holds a "slow" request this long, past the client's timeout, then forwards it."""


# --- the website process ------------------------------------------------------------------------


@dataclass(frozen=True)
class WebsiteProcess:
    url: str
    port: int


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the website exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"the website did not become ready: {log.read_text(errors='replace')[-2000:]}")


@pytest.fixture(scope="module")
def website(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebsiteProcess]:
    """``python -m website`` on loopback with SQLite in a temporary folder."""
    if not (REPO_ROOT / "website" / "__main__.py").exists():
        pytest.fail("website/__main__.py does not exist yet")
    folder = tmp_path_factory.mktemp("website")
    port = free_port()
    env = {
        **os.environ,
        "CREDIT_WEBSITE_PORT": str(port),
        "CREDIT_WEBSITE_DB": str(folder / "website.sqlite3"),
        "CREDIT_WEBSITE_API_TOKEN": TOKEN,
        "CREDIT_BIND_HOST": "127.0.0.1",
    }
    log = folder / "website.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "website"], cwd=REPO_ROOT, env=env, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log, timeout=30.0)
        yield WebsiteProcess(url, port)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- virtual time and the fault proxy -----------------------------------------------------------


class VirtualClock:
    """Simulated time: advances by what the publisher sleeps, while real I/O goes on."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(min(seconds, 0.001))
        self._now += timedelta(seconds=seconds)

    def jump_to(self, moment: datetime) -> None:
        self._now = max(self._now, moment)


Fault = Callable[[int], str]
"""Request number (from 1) → ``forward``, ``503`` or ``hold``."""


def _forward_head(head: bytes) -> bytes:
    """The request head with ``Connection: close``, so the website ends the response with EOF."""
    lines = [
        line for line in head.split(b"\r\n") if line and not line.lower().startswith(b"connection:")
    ]
    return b"\r\n".join([*lines, b"Connection: close", b"", b""])


class FaultProxy:
    """An HTTP/1.1 proxy on loopback, one request per connection, that injects faults."""

    def __init__(self, upstream_port: int) -> None:
        self.port = free_port()
        self.upstream_port = upstream_port
        self.fault: Fault = lambda number: "forward"
        self.requests = 0
        self.outcomes: Counter[str] = Counter()
        self.refused_connections = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def close(self) -> None:
        """Stop listening: new connections are refused."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def aclose(self) -> None:
        await self.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            body = await reader.readexactly(length)
            self.requests += 1
            fault = self.fault(self.requests)
            self.outcomes[fault] += 1
            if fault == "503":
                writer.write(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                    b"Connection: close\r\n\r\n"
                )
            else:
                if fault == "hold":
                    await asyncio.sleep(HELD_SECONDS)  # the publisher has given up by now
                upstream_reader, upstream_writer = await asyncio.open_connection(
                    "127.0.0.1", self.upstream_port
                )
                upstream_writer.write(_forward_head(head) + body)
                await upstream_writer.drain()
                response = await upstream_reader.read()
                upstream_writer.close()
                writer.write(response)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


async def _outage(proxy: FaultProxy, clock: VirtualClock, until: datetime) -> None:
    """Refuse connections until the virtual clock reaches ``until``."""
    await proxy.close()
    while clock.now() < until:
        await asyncio.sleep(0.001)
    await proxy.open()


# --- decisions ----------------------------------------------------------------------------------


def _penalty(index: int, decided: date, **changes: object) -> PenaltyDecision:
    base = PenaltyDecision(
        event_id=f"pen-{index}",
        decision_number=f"东交罚〔2025〕{index:04d}号",
        revision=0,
        change_type=ChangeType.ISSUED,
        subject_name=f"东阿县运输公司{index:03d}",
        subject_type=SubjectType.LEGAL_PERSON,
        violation_code=ViolationCode.OVERLOAD_TRANSPORT,
        violation_type="违法超限运输",
        facts=f"驾驶人张{index}驾驶鲁P{index:05d}号货车超限运输，电话13812345678。",
        legal_basis="《公路安全保护条例》第六十四条",
        penalty_categories=(PenaltyCategory.FINE,),
        content="罚款2000元",
        fine_amount_yuan=Decimal(2000),
        decision_date=decided,
        authority="东阿县交通运输局",
        authority_code="11371524004353001R",
        procedure=Procedure.GENERAL,
        subject_uscc="91371524MA3C00001X",
        plate_number=f"鲁P{index:05d}",
        plate_colour=PlateColour.YELLOW,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def _licence(index: int, decided: date) -> LicensingDecision:
    return LicensingDecision(
        event_id=f"lic-{index}",
        licence_number=f"鲁交运管许可聊字{index:06d}号",
        document_number=f"东交运许〔2025〕{index}号",
        document_name="道路运输经营许可决定书",
        revision=0,
        licence_type=LicenceType.ROAD_TRANSPORT_OPERATING_LICENCE,
        status=LicenceStatus.GRANTED,
        subject_name=f"东阿县物流公司{index:03d}",
        subject_type=SubjectType.LEGAL_PERSON,
        licence_category="普通",
        certificate_name="道路运输经营许可证",
        content="道路普通货物运输",
        decision_date=decided,
        valid_from=decided,
        valid_until=decided + timedelta(days=4 * 365),
        authority="东阿县交通运输局",
        authority_code="11371524004353001R",
        subject_uscc="91371524MA3C00001X",
    )


def _published(result: object) -> PublicationRequest:
    assert isinstance(result, PublicationRequest)
    return result


def batch_before_outage() -> list[PublicationRequest]:
    """Delivered on Monday morning through a flaky website: 20 penalties, 4 licences."""
    requests = [
        _published(publication_for_penalty(_penalty(i, D("2025-10-31")))) for i in range(20)
    ]
    requests += [publication_for_licensing(_licence(i, D("2025-10-31"))) for i in range(4)]
    return requests


DECISION_DAYS = ["2025-10-23", "2025-10-24", "2025-10-27", "2025-10-28", "2025-10-29",
                 "2025-10-30", "2025-10-31", "2025-11-03"]  # fmt: skip
"""Due 11-03, 11-04, 11-05 (lost in the outage), 11-06, 11-07, 11-10, 11-11, 11-12."""


def batch_during_outage() -> list[PublicationRequest]:
    """Appended while the website is down: new penalties, withdrawals and changes."""
    requests = [
        _published(publication_for_penalty(_penalty(100 + i, D(DECISION_DAYS[i % 8]))))
        for i in range(40)
    ]
    # Revoked on Monday: withdraw within 3 days, by Thursday: reachable when the site is back.
    requests += [
        _published(
            publication_for_penalty(
                _penalty(i, D("2025-11-03"), revision=1, change_type=ChangeType.REVOKED)
            )
        )
        for i in range(5)
    ]
    # Changed on Monday: the replacing revision is due by Thursday too.
    requests += [
        _published(
            publication_for_penalty(
                _penalty(
                    i,
                    D("2025-11-03"),
                    revision=1,
                    change_type=ChangeType.MODIFIED,
                    content="罚款1000元",
                    fine_amount_yuan=Decimal(1000),
                )
            )
        )
        for i in range(5, 8)
    ]
    requests += [publication_for_licensing(_licence(100 + i, D("2025-10-30"))) for i in range(4)]
    random.Random(5).shuffle(requests)
    return requests


def final_requests(requests: list[PublicationRequest]) -> dict[str, PublicationRequest]:
    """The newest request per publication id."""
    newest: dict[str, PublicationRequest] = {}
    rank = {PublicationAction.PUBLISH: 0, PublicationAction.WITHDRAW: 1}
    for request in requests:
        current = newest.get(request.publication_id)
        if current is None or (request.revision, rank[request.action]) > (
            current.revision,
            rank[current.action],
        ):
            newest[request.publication_id] = request
    return newest


# --- running the relay --------------------------------------------------------------------------


@dataclass
class Topics:
    requests: str
    status: str
    dead_letter: str


@pytest.fixture
async def topics(kafka: KafkaService, unique_name: str) -> Topics:
    names = Topics(
        f"{unique_name}.publication-requests",
        f"{unique_name}.publication-status",
        f"{unique_name}.publication-requests.dead-letter",
    )
    await create_topics(kafka.bootstrap_servers, [names.requests, names.dead_letter], 4)
    await create_topics(kafka.bootstrap_servers, [names.status], 4, compacted=True)
    return names


async def append(bootstrap: str, topic: str, requests: list[PublicationRequest]) -> None:
    """Write requests to the outbox as the worker does: JSON keyed by publication id."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for request in requests:
            value = json.dumps(request_to_dict(request), ensure_ascii=False).encode()
            await producer.send(topic, value, key=request.publication_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


class RunningRelay:
    def __init__(
        self, bootstrap: str, topics: Topics, group: str, proxy: FaultProxy, clock: VirtualClock
    ) -> None:
        self.registry = CollectorRegistry()
        self.client = httpx.AsyncClient(timeout=CLIENT_TIMEOUT_SECONDS)
        metrics = PublisherMetrics.create(self.registry)

        def make(status: StatusStore, dead_letters: DeadLetterSink) -> Publisher:
            return Publisher(
                self.client,
                proxy.url,
                TOKEN,
                status=status,
                dead_letters=dead_letters,
                metrics=metrics,
                clock=clock,
                rng=random.Random(11),
                concurrency=4,
                retry=RetryPolicy(base_seconds=1.0, cap_seconds=1800.0),
            )

        self.relay = KafkaOutboxRelay(
            bootstrap,
            make,
            requests_topic=topics.requests,
            status_topic=topics.status,
            dead_letter_topic=topics.dead_letter,
            group_id=group,
            commit_interval_seconds=0.2,
        )
        self.task = asyncio.create_task(self.relay.run())

    def status(self, publication_id: str) -> StatusRecord | None:
        publisher = self.relay.publisher
        return publisher.status_of(publication_id) if publisher is not None else None

    def total(self, family_name: str) -> Counter[str]:
        """A counter's samples by their ``reason`` (or ``action``) label."""
        counts: Counter[str] = Counter()
        for family in self.registry.collect():
            if family.name == family_name:
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        label = sample.labels.get("reason") or sample.labels.get("action", "")
                        counts[label] += int(sample.value)
        return counts

    def skipped(self) -> int:
        return sum(self.total("credit_publications_skipped").values())

    async def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.task.done():
                self.task.result()
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.client.aclose()


@pytest.fixture
async def proxy(website: WebsiteProcess) -> AsyncIterator[FaultProxy]:
    fault_proxy = FaultProxy(website.port)
    await fault_proxy.open()
    yield fault_proxy
    await fault_proxy.aclose()


def _settled(run: RunningRelay, expected: dict[str, PublicationRequest]) -> Callable[[], bool]:
    def check() -> bool:
        for publication_id, request in expected.items():
            record = run.status(publication_id)
            if record is None or (record.revision, record.action) != (
                request.revision,
                request.action,
            ):
                return False
        return True

    return check


def website_counts(url: str) -> Counter[str]:
    """credit_website_publications_total by action, summed over kinds."""
    text = httpx.get(f"{url}/metrics", timeout=5.0).text
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name == "credit_website_publications":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[sample.labels["action"]] += int(sample.value)
    return counts


# --- the test -----------------------------------------------------------------------------------


async def test_publisher_delivers_through_faults_and_a_three_day_outage(
    kafka: KafkaService,
    topics: Topics,
    proxy: FaultProxy,
    website: WebsiteProcess,
    unique_name: str,
) -> None:
    """503s, held requests and 3 working days of refused connections: each request lands once,
    withdrawals land, reachable deadlines are met, and a restart resends nothing acknowledged."""
    bootstrap = kafka.bootstrap_servers
    clock = VirtualClock(OUTAGE_START - timedelta(minutes=30))
    before, during = batch_before_outage(), batch_during_outage()
    all_requests = before + during
    expected = final_requests(all_requests)
    counts_at_start = website_counts(website.url)

    # Monday 07:30: a flaky website, every 3rd request 503, every 5th held past the timeout.
    proxy.fault = lambda n: "503" if n % 3 == 0 else "hold" if n % 5 == 0 else "forward"
    run = RunningRelay(bootstrap, topics, f"{unique_name}-publisher", proxy, clock)
    try:
        await append(bootstrap, topics.requests, before)
        await run.wait_for(_settled(run, final_requests(before)), 120, "the first batch")
        flaky = dict(proxy.outcomes)

        # Monday 08:00 to Thursday 09:00: refused connections; the second batch arrives.
        proxy.fault = lambda n: "forward"
        clock.jump_to(OUTAGE_START)
        outage = asyncio.create_task(_outage(proxy, clock, COME_BACK))
        await asyncio.sleep(0.05)
        await append(bootstrap, topics.requests, during)
        await run.wait_for(_settled(run, expected), 300, "every request after the outage")
        await outage
        retries = dict(run.total("credit_publication_retries"))
    finally:
        await run.stop()

    # Every final state is on the website, read through its own API.
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=website.url, headers=headers, timeout=5.0) as client:
        for publication_id, request in expected.items():
            response = await client.get(f"/api/v1/publications/{publication_id}")
            assert response.status_code == 200, publication_id
            stored = response.json()
            assert stored["revision"] == request.revision
            want = "withdrawn" if request.action is PublicationAction.WITHDRAW else "published"
            assert stored["status"] == want, publication_id
            if request.action is PublicationAction.PUBLISH:
                assert stored["fields"]["CF_NR_FK" if request.kind.value == "penalty" else "XK_NR"]
                assert "13812345678" not in json.dumps(stored, ensure_ascii=False)

    # Exactly once: one creation per publication; the only replacements are the 3 changes.
    counts = website_counts(website.url) - counts_at_start
    published_ids = {
        r.publication_id for r in all_requests if r.action is PublicationAction.PUBLISH
    }
    assert counts["created"] == len(published_ids)
    assert counts["replaced"] == 3
    assert counts["withdrawn"] == 5
    assert counts["republished"] == 0

    # Deadlines: none that was still reachable on Thursday is missed.
    statuses = {
        record.key.decode(): StatusRecord.from_dict(json.loads(record.value))
        for record in await read_committed(bootstrap, topics.status, idle=1.0)
    }
    back_on = china_date(COME_BACK)
    missed_reachable, missed_in_outage = [], []
    for publication_id, request in expected.items():
        record = statuses[publication_id]
        assert record.status is DeliveryStatus.DELIVERED
        late = china_date(record.delivered_at) > request.deadline
        if late and request.deadline >= back_on:
            missed_reachable.append(publication_id)
        elif late:
            missed_in_outage.append(publication_id)
    assert missed_reachable == []
    dead_letters = await read_committed(bootstrap, topics.dead_letter, idle=0.5, timeout=5.0)
    assert dead_letters == []

    # A restart that has lost its offsets reads the outbox again: the status topic stops resends.
    requests_before_restart = proxy.requests
    rerun = RunningRelay(bootstrap, topics, f"{unique_name}-publisher-again", proxy, clock)
    try:
        await rerun.wait_for(
            lambda: rerun.skipped() >= len(all_requests), 60, "the replay to be skipped"
        )
    finally:
        await rerun.stop()
    assert proxy.requests == requests_before_restart

    figures = {
        "requests appended": len(all_requests),
        "publication ids": len(expected),
        "proxy requests": requests_before_restart,
        "retries by reason": retries,
        "flaky phase outcomes": flaky,
        "website counts": dict(counts),
        "late, due before the site came back": len(missed_in_outage),
        "late, reachable": len(missed_reachable),
        "virtual end": clock.now().isoformat(),
    }
    print(f"\n[publisher fault test] {json.dumps(figures, ensure_ascii=False)}")


async def test_run_publisher_serves_health_metrics_and_delivers(
    kafka: KafkaService, website: WebsiteProcess, unique_name: str
) -> None:
    """The process entry point: ready once relaying, /metrics, and a request reaches the site."""
    prefix = f"{unique_name}."
    bootstrap = kafka.bootstrap_servers
    await create_topics(
        bootstrap,
        [f"{prefix}publication-requests", f"{prefix}publication-requests.dead-letter"],
        4,
    )
    await create_topics(bootstrap, [f"{prefix}publication-status"], 4, compacted=True)
    port = free_port()
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        website_url=website.url,
        website_api_token=SecretStr(TOKEN),
        publisher_metrics_port=port,
        calendar_dir=REPO_ROOT / "tests" / "data" / "no-such-folder",
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run_publisher(settings, stop=stop))
    request = _published(publication_for_penalty(_penalty(900, D("2025-11-03"))))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            deadline = time.monotonic() + 60
            while True:
                assert not task.done(), task.result()
                with contextlib.suppress(httpx.HTTPError):
                    ready = await client.get(f"http://127.0.0.1:{port}/health/ready")
                    if ready.status_code == 200:
                        break
                assert time.monotonic() < deadline, "the publisher never became ready"
                await asyncio.sleep(0.1)
            live = await client.get(f"http://127.0.0.1:{port}/health/live")
            assert live.status_code == 200
            await append(bootstrap, f"{prefix}publication-requests", [request])
            url = f"{website.url}/api/v1/publications/{request.publication_id}"
            while (await client.get(url, headers=headers)).status_code != 200:
                assert time.monotonic() < deadline, "the request never reached the website"
                await asyncio.sleep(0.1)
            # The website holds the record a moment before the publisher has read its answer
            # and counted it: wait for the count.
            delivered = 'credit_publications_delivered_total{action="PUBLISH",kind="penalty"} 1.0'
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            while delivered not in text and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            assert delivered in text
            assert 'credit_publications_pending{kind="penalty"} 0.0' in text  # settled
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

"""Publication throughput and latency: the outbox relay on a real broker to the real website.

Run: ``python bench/bench_publisher.py [--backlog 5000] [--rate 50] [--seconds 30]
[--concurrency 8] [--update-benchmarks] [--json]``

Starts a single-node Kafka on loopback (or uses ``KAFKA_BOOTSTRAP_SERVERS``) and the credit
website as a subprocess (``python -m website``, SQLite in a temporary folder), creates fresh
topics, and measures

1. **throughput**: ``--backlog`` penalty publications appended to the outbox first, then the
   relay started; decisions per second from the relay's start (status topic loaded, consumer
   joining included) to the last acknowledgement, and over the delivery span alone;
2. **latency**: a healthy website and ``--rate`` appends per second for ``--seconds``; for each
   request, the time from its append (the record's timestamp) to the publication being visible
   on the website's API (a ``GET`` answering 200 with the appended revision, polled every 20 ms),
   p50/p95/p99/max. Target: p99 under 10 s.

With ``--update-benchmarks`` the "## Publication" section of BENCHMARKS.md is replaced (and
only that section). With ``--json`` it also prints one JSON line for ``bench/run_all.py`` (see
its docstring).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import CollectorRegistry

from ops.services import LocalKafka, free_port
from processors.disclosure import PublicationRequest, publication_for_penalty, request_to_dict
from processors.model import (
    ChangeType,
    PenaltyCategory,
    PenaltyDecision,
    PlateColour,
    Procedure,
    SubjectType,
    ViolationCode,
)
from sinks.publisher import (
    DeadLetterSink,
    KafkaOutboxRelay,
    Publisher,
    PublisherMetrics,
    StatusStore,
)

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
SECTION = "## Publication"
LATENCY_TARGET_SECONDS = 10.0
"""Append to visible on the website, p99."""


def decisions(count: int, prefix: str, seed: int) -> list[PublicationRequest]:
    """Publishable penalty decisions of the last two weeks, masked and ready to append."""
    rng = random.Random(seed)
    today = date(2025, 11, 3)
    requests = []
    for index in range(count):
        decision = PenaltyDecision(
            event_id=f"{prefix}-{index}",
            decision_number=f"东交罚〔2025〕{prefix}{index:06d}号",
            revision=0,
            change_type=ChangeType.ISSUED,
            subject_name=f"东阿县运输公司{index % 500:03d}",
            subject_type=SubjectType.LEGAL_PERSON,
            violation_code=ViolationCode.OVERLOAD_TRANSPORT,
            violation_type="违法超限运输",
            facts=(
                f"驾驶人张{index % 97}驾驶鲁P{index % 99999:05d}号货车超限运输，"
                f"超限率{rng.randint(5, 80)}%。"
            ),
            legal_basis="《公路安全保护条例》第六十四条",
            penalty_categories=(PenaltyCategory.FINE,),
            content=f"罚款{rng.choice([500, 2000, 5000, 20000])}元",
            fine_amount_yuan=Decimal(rng.choice([500, 2000, 5000, 20000])),
            decision_date=today - timedelta(days=rng.randint(0, 14)),
            authority="东阿县交通运输局",
            authority_code="11371524004353001R",
            procedure=Procedure.GENERAL,
            subject_uscc="91371524MA3C00001X",
            plate_number=f"鲁P{index % 99999:05d}",
            plate_colour=PlateColour.YELLOW,
        )
        result = publication_for_penalty(decision)
        assert isinstance(result, PublicationRequest)
        requests.append(result)
    return requests


# --- services -----------------------------------------------------------------------------------


@contextmanager
def kafka_broker(folder: Path) -> Iterator[str]:
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    broker = LocalKafka(folder / "kafka")
    broker.start()
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@contextmanager
def website_process(folder: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "CREDIT_WEBSITE_PORT": str(port),
        "CREDIT_WEBSITE_DB": str(folder / "website.sqlite3"),
        "CREDIT_WEBSITE_API_TOKEN": TOKEN,
        "CREDIT_BIND_HOST": "127.0.0.1",
    }
    log = (folder / "website.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "website"], cwd=REPO, env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the website did not start; see website.log")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)
        log.close()


async def create_topics(bootstrap: str, prefix: str) -> tuple[str, str, str]:
    requests, status, dead = (
        f"{prefix}.publication-requests",
        f"{prefix}.publication-status",
        f"{prefix}.publication-requests.dead-letter",
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(requests, 4, 1),
                NewTopic(dead, 4, 1),
                NewTopic(status, 4, 1, topic_configs={"cleanup.policy": "compact"}),
            ]
        )
    finally:
        await admin.close()
    return requests, status, dead


# --- the runs -----------------------------------------------------------------------------------


@dataclass
class Relay:
    relay: KafkaOutboxRelay
    task: asyncio.Task[None]
    client: httpx.AsyncClient
    registry: CollectorRegistry

    async def stop(self) -> None:
        self.task.cancel()
        with suppress(asyncio.CancelledError):
            await self.task
        await self.client.aclose()


def start_relay(
    bootstrap: str, url: str, topics: tuple[str, str, str], group: str, concurrency: int
) -> Relay:
    client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0))
    registry = CollectorRegistry()
    metrics = PublisherMetrics.create(registry)

    def make(status: StatusStore, dead_letters: DeadLetterSink) -> Publisher:
        return Publisher(
            client,
            url,
            TOKEN,
            status=status,
            dead_letters=dead_letters,
            metrics=metrics,
            concurrency=concurrency,
        )

    requests, status, dead = topics
    relay = KafkaOutboxRelay(
        bootstrap,
        make,
        requests_topic=requests,
        status_topic=status,
        dead_letter_topic=dead,
        group_id=group,
        commit_interval_seconds=0.5,
    )
    return Relay(relay, asyncio.create_task(relay.run()), client, registry)


async def append_all(bootstrap: str, topic: str, requests: list[PublicationRequest]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        for request in requests:
            value = json.dumps(request_to_dict(request), ensure_ascii=False).encode()
            await producer.send(topic, value, key=request.publication_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def throughput(
    bootstrap: str, url: str, prefix: str, backlog: int, concurrency: int
) -> dict[str, float]:
    topics = await create_topics(bootstrap, f"{prefix}-tp")
    requests = decisions(backlog, "T", seed=1)
    await append_all(bootstrap, topics[0], requests)
    started = time.perf_counter()
    relay = start_relay(bootstrap, url, topics, f"{prefix}-tp-group", concurrency)
    first_ack: float | None = None
    try:
        while True:
            if relay.task.done():
                relay.task.result()
            delivered = relay.registry.get_sample_value(
                "credit_publications_delivered_total", {"kind": "penalty", "action": "PUBLISH"}
            )
            if delivered and first_ack is None:
                first_ack = time.perf_counter()
            if delivered == len(requests):
                break
            await asyncio.sleep(0.02)
    finally:
        await relay.stop()
    publisher = relay.relay.publisher
    assert publisher is not None
    missing = [r for r in requests if publisher.status_of(r.publication_id) is None]
    assert not missing, f"{len(missing)} requests without a status"
    ended = time.perf_counter()
    return {
        "backlog": backlog,
        "seconds": ended - started,
        "rate": backlog / (ended - started),
        "delivery_rate": backlog / (ended - (first_ack or started)),
    }


async def latency(
    bootstrap: str, url: str, prefix: str, rate: float, seconds: float, concurrency: int
) -> dict[str, float]:
    topics = await create_topics(bootstrap, f"{prefix}-lat")
    count = int(rate * seconds)
    requests = decisions(count, "L", seed=2)
    relay = start_relay(bootstrap, url, topics, f"{prefix}-lat-group", concurrency)
    while not relay.relay.ready:  # noqa: ASYNC110 (polling the relay's state)
        await asyncio.sleep(0.05)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=0)
    await producer.start()
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=5.0) as client:

        async def visible(request: PublicationRequest, appended_at: float) -> None:
            path = f"/api/v1/publications/{request.publication_id}"
            while True:
                response = await client.get(path)
                if response.status_code == 200 and response.json()["revision"] == request.revision:
                    latencies.append(time.time() - appended_at)
                    return
                await asyncio.sleep(0.02)

        watchers = []
        began = time.perf_counter()
        try:
            for index, request in enumerate(requests):
                delay = began + index / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                value = json.dumps(request_to_dict(request), ensure_ascii=False).encode()
                metadata = await (
                    await producer.send(topics[0], value, key=request.publication_id.encode())
                )
                watchers.append(asyncio.create_task(visible(request, metadata.timestamp / 1000)))
            await asyncio.wait_for(asyncio.gather(*watchers), timeout=120)
        finally:
            await producer.stop()
            await relay.stop()
    ordered = sorted(latencies)

    def quantile(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "count": len(ordered),
        "rate": rate,
        "seconds": seconds,
        "p50": statistics.median(ordered),
        "p95": quantile(0.95),
        "p99": quantile(0.99),
        "max": ordered[-1],
    }


# --- report -------------------------------------------------------------------------------------


def report(args: argparse.Namespace, tp: dict[str, Any], lat: dict[str, float]) -> str:
    command = (
        f"python bench/bench_publisher.py --backlog {args.backlog} --rate {args.rate:g} "
        f"--seconds {args.seconds:g} --concurrency {args.concurrency} --rounds {args.rounds}"
    )
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    today = datetime.now(UTC).date().isoformat()
    return f"""{SECTION}

Reproduce from the repository root: `{command}`

- Date: {today}; machine: {platform.system()} {platform.release()} ({platform.machine()}),
  os.cpu_count()={os.cpu_count()}; CPython {platform.python_version()}; load average {load} at
  the end.
- Setup: single-node Apache Kafka on loopback (the test harness's `LocalKafka`), the credit
  website as a subprocess (`python -m website`, SQLite in a temporary folder), the publisher
  (`sinks.publisher.KafkaOutboxRelay` + `Publisher`, concurrency {args.concurrency}) in the
  benchmark's process; the requests are masked 双公示 penalty publications of about
  1.2 KB on the outbox (0.9 KB of JSON to the website),
  built by `processors.disclosure.publication_for_penalty`.
- Throughput: {int(tp["backlog"]):,} requests appended first, then the relay started; the
  median of {args.rounds} rounds on fresh topics (each round, relay start to last
  acknowledgement: {tp["all"]} decisions/s). The machine is shared: rates vary with its load.
- Latency: a healthy website, {lat["rate"]:g} appends per second for {lat["seconds"]:g} s;
  from the record's append timestamp to a `GET /api/v1/publications/{{id}}` answering 200 with
  the appended revision (polled every 20 ms, so figures include up to 20 ms of polling).

| measure | value |
|---|---:|
| throughput, relay start to last acknowledgement | **{tp["rate"]:,.0f} decisions/s** \
({tp["seconds"]:.1f} s) |
| throughput, first to last acknowledgement | {tp["delivery_rate"]:,.0f} decisions/s |
| append → visible, p50 | {lat["p50"] * 1000:,.0f} ms |
| append → visible, p95 | {lat["p95"] * 1000:,.0f} ms |
| append → visible, p99 | **{lat["p99"] * 1000:,.0f} ms** (target: under 10 s) |
| append → visible, max | {lat["max"] * 1000:,.0f} ms ({int(lat["count"]):,} requests) |
"""


def json_summary(tp: dict[str, Any], lat: dict[str, float]) -> dict[str, Any]:
    """The machine-readable result. There is no baseline: nothing simpler delivers to a website."""
    p99 = lat["p99"]
    return {
        "benchmark": "publisher",
        "results": [
            {
                "name": "throughput, relay start to last acknowledgement",
                "value": tp["rate"],
                "unit": "decisions/s",
                "baseline": None,
                "ratio": None,
                "target": None,
                "met": None,
            },
            {
                "name": "append → visible on the website, p99",
                "value": p99 * 1000,
                "unit": "ms",
                "baseline": None,
                "ratio": None,
                "target": f"< {LATENCY_TARGET_SECONDS:g} s",
                "met": p99 < LATENCY_TARGET_SECONDS,
            },
        ],
    }


def update_benchmarks(section: str) -> None:
    path = REPO / "BENCHMARKS.md"
    text = path.read_text(encoding="utf-8")
    start = text.find(f"\n{SECTION}\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[: start + 1] + section + ("\n" + text[end + 1 :] if end >= 0 else "")
    path.write_text(text, encoding="utf-8")


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-publisher-") as name:
        folder = Path(name)
        with kafka_broker(folder) as bootstrap, website_process(folder) as url:
            prefix = f"bench-{int(time.time())}"
            rounds = []
            for number in range(args.rounds):
                result = await throughput(
                    bootstrap, url, f"{prefix}-{number}", args.backlog, args.concurrency
                )
                print(f"throughput round {number + 1}: {result}")
                rounds.append(result)
            tp: dict[str, Any] = {
                key: statistics.median(r[key] for r in rounds)
                for key in ("seconds", "rate", "delivery_rate")
            }
            tp["backlog"] = args.backlog
            tp["all"] = ", ".join(f"{r['rate']:,.0f}" for r in rounds)
            lat = await latency(bootstrap, url, prefix, args.rate, args.seconds, args.concurrency)
            print(f"latency: {lat}")
    section = report(args, tp, lat)
    print(section)
    if args.update_benchmarks:
        update_benchmarks(section)
    if args.json:
        print(json.dumps(json_summary(tp, lat)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds (median)")
    parser.add_argument("--update-benchmarks", action="store_true")
    parser.add_argument("--json", action="store_true", help="also print one JSON result line")
    asyncio.run(main(parser.parse_args()))

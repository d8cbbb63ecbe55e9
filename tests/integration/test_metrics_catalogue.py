"""Every process's /metrics against the catalogue of docs/metrics.md (issue 8).

Starts the five processes that serve /metrics through their real entry points, as deployed
(``python -m streams.cli worker|serving-store|api|publisher``, ``python -m website``), on the
harness's Kafka and Redis, gives each some traffic, scrapes each /metrics, and checks that

- every catalogue row of the process is served, with its type, and with its label names on each
  series it has (the metrics in ``SERIES_EXPECTED`` must have series after this traffic);
- every ``credit_*`` metric served is in the catalogue, for that process;
- every metric served follows the naming rules of docs/metrics.md.

Every process runs on topics of its own (``CREDIT_TOPIC_PREFIX``); the test adds a snapshot, a
trigger and a bad record to the serving store's topics itself. The serving store and the API share
Redis database 15, which the test empties before and after.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from redis.asyncio import Redis

from api.auth import hash_key
from ops.services import free_port
from processors.lists import ListAction, ListName
from sinks.serving_store import ServingStoreLayout
from streams.settings import REPO_ROOT
from streams.topics import CREDIT_SNAPSHOTS_TOPIC, LIST_TRIGGERS_TOPIC, prefixed
from tests.conftest import KafkaService, RedisService
from tests.integration.kafka_helpers import produce
from tests.integration.pipeline_support import send_events, simulated_events, stop_worker
from tests.integration.serving_helpers import (
    T0,
    TransactionalProducer,
    entry,
    plate,
    record,
    snapshot,
    trigger,
    vehicle,
)
from tests.metrics_catalogue import (
    PROCESSES,
    Family,
    catalogue_problems,
    load_catalogue,
    parse_exposition,
)

pytestmark = pytest.mark.integration

REDIS_DB = 15
TOKEN = "metrics-catalogue-website-token"
API_KEY = "metrics-catalogue-key-0123456789abcdef"
BAD_RECORDS = [b"", b"\x00", b"not avro at all", b"\x00\x00\x00\x03\xe9garbage"]
SETTLE_SECONDS = 240.0

SERIES_EXPECTED = {
    "worker": {
        "credit_events_in_total",
        "credit_events_out_total",
        "credit_dead_letters_total",
        "credit_list_triggers_total",
        "credit_batch_seconds",
        "credit_stale_events_total",
        "credit_processing_latency_seconds",
        "credit_consumer_lag_messages",
        "credit_transaction_commit_seconds",
        "credit_rebalance_seconds",
        "credit_recovery_seconds",
    },
    "serving-store": {
        "credit_serving_store_writes_total",
        "credit_serving_store_lag_seconds",
        "credit_serving_store_retries_total",
        "credit_consumer_lag_messages",
        "credit_serving_store_skipped_total",
        "credit_serving_store_reloads_total",
        "credit_serving_store_batch_seconds",
    },
    "api": {
        "credit_api_requests_total",
        "credit_api_request_seconds",
        "credit_api_identifiers_total",
        "credit_api_store_errors_total",
    },
    "publisher": {
        "credit_publications_pending",
        "credit_publications_at_risk",
        "credit_publications_overdue",
        "credit_provisional_deadlines",
        "credit_publication_delivery_seconds",
        "credit_publications_delivered_total",
    },
    "website": {
        "credit_website_publications_total",
        "credit_website_requests_total",
        "credit_website_request_duration_seconds",
    },
}
"""Metrics whose series this test's traffic creates, so their label names are checked on the
wire. The label names of the others are checked where they are declared
(tests/unit/test_metrics_declarations.py)."""


@dataclass
class Running:
    """A process of the product, started by this test."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def log_tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-3000:]


def _start(name: str, module: list[str], env: dict[str, str], port: int, folder: Path) -> Running:
    log = folder / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", *module],
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Running(name, process, port, log)


async def _scrape(client: httpx.AsyncClient, running: Running) -> dict[str, Family] | None:
    """The process's metrics, or None while it does not answer yet."""
    if running.process.poll() is not None:
        pytest.fail(
            f"the {running.name} exited ({running.process.returncode}):\n{running.log_tail()}"
        )
    try:
        response = await client.get(running.metrics_url, timeout=5.0)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    return parse_exposition(response.text)


async def _wait_until_answering(client: httpx.AsyncClient, running: Running) -> None:
    deadline = time.monotonic() + 90
    while await _scrape(client, running) is None:
        if time.monotonic() > deadline:
            pytest.fail(f"the {running.name} serves no /metrics after 90 s:\n{running.log_tail()}")
        await asyncio.sleep(0.5)


def _without_series(families: dict[str, Family] | None, process: str) -> set[str]:
    if families is None:
        return set(SERIES_EXPECTED[process])
    return {
        name for name in SERIES_EXPECTED[process] if not families.get(name, Family("", "")).samples
    }


async def _lookups(client: httpx.AsyncClient, api: Running) -> None:
    """A known vehicle, an unknown one, and one without a key."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    base = f"http://127.0.0.1:{api.port}/v1/vehicles/"
    for plate_number in (plate(1), plate(99_999)):
        await client.get(base + quote(plate_number), headers=headers, timeout=5.0)
    await client.get(base + quote(plate(1)), timeout=5.0)


async def test_every_process_serves_its_catalogue_with_prometheus_names(
    kafka: KafkaService, redis_service: RedisService, unique_name: str, tmp_path: Path
) -> None:
    """Each process serves its catalogue rows, nothing undocumented, and Prometheus names."""
    bootstrap, prefix = kafka.bootstrap_servers, f"{unique_name}."
    redis_url = redis_service.url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    redis = Redis.from_url(redis_url)
    await redis.flushdb()
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(
        json.dumps(
            {
                "keys": [
                    {
                        "id": "catalogue",
                        "agency": "metrics catalogue test",
                        "sha256": hash_key(API_KEY),
                        "scopes": ["basic"],
                        "rate_per_second": 1000,
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    ports = {name: free_port() for name in PROCESSES}
    env = {
        "CREDIT_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "CREDIT_TOPIC_PREFIX": prefix,
        "CREDIT_APP_ID": unique_name,
        "CREDIT_BIND_HOST": "127.0.0.1",
        "CREDIT_REDIS_URL": redis_url,
        "CREDIT_STORE": "memory://",
        "CREDIT_DATA_DIR": str(tmp_path / "worker"),
        "CREDIT_SESSION_TIMEOUT_SECONDS": "6",
        "CREDIT_WORKER_WEB_PORT": str(ports["worker"]),
        "CREDIT_SERVING_STORE_METRICS_PORT": str(ports["serving-store"]),
        "CREDIT_API_PORT": str(ports["api"]),
        "CREDIT_API_KEYS_FILE": str(keys_file),
        "CREDIT_PUBLISHER_METRICS_PORT": str(ports["publisher"]),
        "CREDIT_WEBSITE_PORT": str(ports["website"]),
        "CREDIT_WEBSITE_URL": f"http://127.0.0.1:{ports['website']}",
        "CREDIT_WEBSITE_DB": str(tmp_path / "website.sqlite3"),
        "CREDIT_WEBSITE_API_TOKEN": TOKEN,
    }
    commands = {
        "website": ["website"],
        "worker": ["streams.cli", "worker"],
        "publisher": ["streams.cli", "publisher"],
        "api": ["streams.cli", "api"],
        "serving-store": ["streams.cli", "serving-store"],
    }

    # Traffic for the worker (and through its outbox, the publisher and the website): enough
    # simulated events for list triggers and publications, and records that fail to decode.
    await send_events(
        bootstrap, prefix, simulated_events(seed=3, steps=400, vehicles=30), BAD_RECORDS
    )
    # The serving store's topics, with a snapshot, a trigger and a bad record of the test's own.
    snapshots = prefixed(CREDIT_SNAPSHOTS_TOPIC, prefix).name
    triggers = prefixed(LIST_TRIGGERS_TOPIC, prefix).name
    listed = entry(ListName.BLACKLIST, "overload.vehicle", T0, ["e1", "e2", "e3", "e4"])
    async with TransactionalProducer(bootstrap) as producer:
        await producer.send_all(snapshots, [record(snapshot(vehicle(1), T0, entries=[listed]))])
        await producer.send_all(triggers, [record(trigger(ListAction.ADD, listed, vehicle(1), T0))])
    await produce(bootstrap, snapshots, [(b"VEHICLE:garbage", b"not json")])

    running: dict[str, Running] = {}
    scraped: dict[str, dict[str, Family] | None] = dict.fromkeys(PROCESSES)
    try:
        async with httpx.AsyncClient() as client:
            for name in ("website", "worker", "publisher", "api"):
                running[name] = _start(name, commands[name], env, ports[name], tmp_path)
            # Asked before the serving store runs, the API answers 503 "not ready".
            await _wait_until_answering(client, running["api"])
            await _lookups(client, running["api"])
            running["serving-store"] = _start(
                "serving-store", commands["serving-store"], env, ports["serving-store"], tmp_path
            )
            deadline = time.monotonic() + SETTLE_SECONDS
            while True:
                for name, process in running.items():
                    scraped[name] = await _scrape(client, process)
                if await redis.hget(ServingStoreLayout().meta, "ready") == b"1":
                    await _lookups(client, running["api"])
                waiting = {name: _without_series(scraped[name], name) for name in PROCESSES}
                if not any(waiting.values()) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(1.0)
    finally:
        for process in running.values():
            stop_worker(process.process)
        await redis.flushdb()
        await redis.aclose()

    problems = []
    for name in PROCESSES:
        families = scraped[name]
        if families is None:
            problems.append(f"{name}: /metrics never answered:\n{running[name].log_tail()}")
            continue
        problems += catalogue_problems(name, families, load_catalogue(), SERIES_EXPECTED[name])
    print(
        "\n[metrics] "
        + "; ".join(
            f"{name}: {len(families or {})} families, "
            f"{sum(len(f.samples) for f in (families or {}).values())} samples"
            for name, families in scraped.items()
        )
    )
    assert problems == [], "\n".join(problems)

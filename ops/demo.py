"""``credit-transport demo``: the whole local product with synthetic traffic, one command.

Starts a local Apache Kafka and Redis, creates the topics, starts every process of the product
(stream worker, serving store, query API, credit website, publisher), then feeds the simulator's
events and shows one progress line (events sent, bad records, triggers). It prints the URLs and
a demo API key. Ctrl-C stops every process it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from api.auth import hash_key
from ops.services import LocalKafka, LocalRedis, ServiceError
from ops.simulator import Simulator, demo_simulation
from processors.model import InputEvent
from streams.admin import ensure_topics
from streams.cli import LOCAL_KAFKA_CONTROLLER_PORT, LOCAL_KAFKA_PORT, LOCAL_REDIS_PORT
from streams.codecs import AvroSerde
from streams.mapping import from_domain, record_name_of
from streams.settings import REPO_ROOT
from streams.topics import (
    INPUT_TOPICS,
    LIST_TRIGGERS_TOPIC,
    OVERLOAD_DETECTIONS_TOPIC,
)
from streams.upstream import record_key

RUN_DIR = REPO_ROOT / ".run"
API_PORT = 8080
WEBSITE_PORT = 8000


def _demo_key(api_key: str) -> dict[str, object]:
    """A key for the demo only, with every scope; a fresh one each run, stored as its hash."""
    return {
        "id": "demo",
        "agency": "演示 (demo)",
        "sha256": hash_key(api_key),
        "scopes": ["basic", "evidence", "audit"],
    }


def run_demo(events_per_second: float, seconds: float, seed: int) -> int:
    # One progress line, not a scroll of client logs.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    kafka = LocalKafka(RUN_DIR / "kafka", LOCAL_KAFKA_PORT, LOCAL_KAFKA_CONTROLLER_PORT)
    redis = LocalRedis(RUN_DIR / "redis", LOCAL_REDIS_PORT)
    processes: list[subprocess.Popen[bytes]] = []
    started = time.monotonic()
    try:
        print("starting Apache Kafka (KRaft) and Redis on loopback ...", flush=True)
        kafka.stop()  # a broker left over from an interrupted run
        redis.stop()
        # Each demo starts from an empty broker and empty worker state: reproducible traffic,
        # and no records left in an older format by an earlier version.
        for folder in (RUN_DIR / "kafka", RUN_DIR / "worker"):
            shutil.rmtree(folder, ignore_errors=True)
        for database_file in RUN_DIR.glob("website.sqlite3*"):
            database_file.unlink()
        kafka.start()
        redis.start()
        asyncio.run(ensure_topics(kafka.bootstrap_servers))
        api_key = secrets.token_urlsafe(24)
        keys_file = RUN_DIR / "demo-api-keys.json"
        keys_file.write_text(json.dumps({"keys": [_demo_key(api_key)]}), encoding="utf-8")
        env = {
            **os.environ,
            "CREDIT_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "CREDIT_REDIS_URL": redis.url,
            "CREDIT_STORE": os.environ.get("CREDIT_STORE", "rocksdb://"),
            "CREDIT_DATA_DIR": str(RUN_DIR / "worker"),
            "CREDIT_API_KEYS_FILE": str(keys_file),
            "CREDIT_WEBSITE_DB": str(RUN_DIR / "website.sqlite3"),
            "CREDIT_WEBSITE_URL": f"http://127.0.0.1:{WEBSITE_PORT}",
            "CREDIT_WEBSITE_PORT": str(WEBSITE_PORT),
            "CREDIT_API_PORT": str(API_PORT),
        }
        for command in ("worker", "serving-store", "api", "website", "publisher"):
            with (RUN_DIR / f"{command}.log").open("wb") as log:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "streams.cli", command],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        print(
            f"\n  credit website   http://127.0.0.1:{WEBSITE_PORT}/\n"
            f"  query API        http://127.0.0.1:{API_PORT}/openapi.json\n"
            f"                   curl -H 'Authorization: Bearer {api_key}' "
            f"http://127.0.0.1:{API_PORT}/v1/vehicles/<plate>\n"
            f"  metrics          worker :6066, serving store :9101, publisher :9102, "
            f"API :{API_PORT}, website :{WEBSITE_PORT} (each at /metrics)\n"
            f"  Kafka / Redis    {kafka.bootstrap_servers} / {redis.url}\n"
            f"  logs             .run/*.log\n"
            f"  ready after      {time.monotonic() - started:.1f} s; Ctrl-C stops everything\n",
            flush=True,
        )
        asyncio.run(feed(kafka.bootstrap_servers, events_per_second, seconds, seed))
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
    except ServiceError as exc:
        print(f"\ncould not start: {exc}", file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C would cut this short and leave the broker and Redis running: the
        # clean-up takes seconds, and is not interrupted.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        redis.stop()
        kafka.stop()
        print("stopped every process the demo started", flush=True)
    return 0


async def feed(bootstrap: str, rate: float, seconds: float, seed: int) -> None:
    serde = AvroSerde.with_local_ids()
    simulator = Simulator(demo_simulation(seed))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5)
    triggers = AIOKafkaConsumer(
        LIST_TRIGGERS_TOPIC.name,
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    await producer.start()
    await triggers.start()
    topic_of = {spec.record: spec.name for spec in INPUT_TOPICS}
    counts = {"events": 0, "bad": 0, "added": 0, "removed": 0}
    first_trigger_at: float | None = None
    started = time.monotonic()

    async def send(event: InputEvent) -> None:
        record = record_name_of(event)
        value = serde.encode(record, from_domain(event))
        # Keyed as the upstream guide says (streams.upstream.record_key): one objection's
        # filing and resolution share a partition and arrive in order.
        await producer.send(topic_of[record], value, key=record_key(event))
        counts["events"] += 1

    try:
        for certificate in simulator.certificates():
            await send(certificate)
        while seconds <= 0 or time.monotonic() - started < seconds:
            tick = time.monotonic()
            for _ in range(max(1, int(rate / 10))):
                if simulator.is_bad_record_turn():
                    await producer.send(OVERLOAD_DETECTIONS_TOPIC.name, simulator.bad_record())
                    counts["bad"] += 1
                for event in simulator.next_events():
                    await send(event)
            batch = await triggers.getmany(timeout_ms=0)
            for records in batch.values():
                for record in records:
                    action = json.loads(record.value)["action"]
                    counts["added" if action == "ADD" else "removed"] += 1
                    if first_trigger_at is None:
                        first_trigger_at = time.monotonic() - started
            first = f"{first_trigger_at:.1f} s" if first_trigger_at is not None else "-"
            print(
                f"\r  sent {counts['events']:>7} events, {counts['bad']:>4} bad records | "
                f"list triggers: {counts['added']:>5} added, {counts['removed']:>4} removed | "
                f"first trigger after {first}   ",
                end="",
                flush=True,
            )
            await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
    finally:
        print()
        with contextlib.suppress(Exception):
            await triggers.stop()
        await producer.stop()

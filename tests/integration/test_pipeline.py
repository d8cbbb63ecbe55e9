"""The worker on the real broker: good and bad records in, every offset accounted for, and
exactly the list triggers that the pure rules give for the same events (issues 3 and 4)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from ops.services import free_port
from ops.simulator import Simulation, Simulator
from processors.ledger import apply, new_file
from processors.policy import parse_policy_book
from processors.routing import route
from streams.admin import ensure_topics
from streams.codecs import AvroSerde
from streams.mapping import from_domain, record_name_of
from streams.settings import REPO_ROOT
from streams.topics import (
    INPUT_TOPICS,
    LIST_TRIGGERS_TOPIC,
    OVERLOAD_DETECTIONS_TOPIC,
)
from tests.conftest import KafkaService
from tests.integration.kafka_helpers import read_committed

pytestmark = pytest.mark.integration

STEPS = 3000
BAD_RECORDS = 25


def _net_membership(triggers: Counter[tuple[str, str, str, str]]) -> dict[tuple[str, ...], int]:
    """ADDs minus REMOVEs per (list, rule, subject): the list outcome, whatever the order."""
    net: Counter[tuple[str, ...]] = Counter()
    for (action, *entry), count in triggers.items():
        net[tuple(entry)] += count if action == "ADD" else -count
    return {entry: n for entry, n in net.items() if n}


def _expected_triggers(events: list[object]) -> Counter[tuple[str, str, str, str]]:
    """What the pure rules raise for the events, applied in one process without Kafka."""
    book = parse_policy_book((REPO_ROOT / "config" / "policy.yaml").read_text(encoding="utf-8"))
    files: dict[object, object] = {}
    queue = [pair for event in events for pair in route(event)]  # type: ignore[arg-type]
    triggers: Counter[tuple[str, str, str, str]] = Counter()
    now = datetime.now(UTC)
    while queue:
        subject, fact = queue.pop(0)
        outcome = apply(files.get(subject) or new_file(subject), fact, book, now)  # type: ignore[arg-type]
        files[subject] = outcome.file
        queue.extend(outcome.forwards)
        for trigger in outcome.triggers:
            triggers[
                (
                    trigger.action.value,
                    trigger.list_name.value,
                    trigger.rule_id,
                    str(trigger.subject),
                )
            ] += 1
    return triggers


async def test_worker_accounts_for_every_record_and_raises_the_expected_triggers(
    kafka: KafkaService, unique_name: str, tmp_path: Path
) -> None:
    """Bad records are dead-lettered, good ones judged: triggers equal the pure reference."""
    bootstrap = kafka.bootstrap_servers
    await ensure_topics(bootstrap)
    simulator = Simulator(Simulation(seed=11, vehicles=150, carriers=15))
    events: list[object] = list(simulator.certificates())
    for _ in range(STEPS):
        events.extend(simulator.next_events())
    serde = AvroSerde.with_local_ids()
    topic_of = {spec.record: spec.name for spec in INPUT_TOPICS}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        for event in events:
            record = record_name_of(event)  # type: ignore[arg-type]
            await producer.send(topic_of[record], serde.encode(record, from_domain(event)))  # type: ignore[arg-type]
        for i in range(BAD_RECORDS):
            await producer.send(OVERLOAD_DETECTIONS_TOPIC.name, bytes([i % 7]) * (i % 5))
        await producer.flush()
    finally:
        await producer.stop()

    env = {
        **os.environ,
        "CREDIT_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "CREDIT_APP_ID": unique_name,
        "CREDIT_STORE": "memory://",
        "CREDIT_DATA_DIR": str(tmp_path / "worker"),
        "CREDIT_WORKER_WEB_PORT": str(free_port()),
    }
    with (tmp_path / "worker.log").open("ab") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    expected = _expected_triggers(events)
    started = time.monotonic()
    try:
        records = await read_committed(
            bootstrap, LIST_TRIGGERS_TOPIC.name, expect=sum(expected.values()), idle=5.0
        )
        dead = await read_committed(
            bootstrap, OVERLOAD_DETECTIONS_TOPIC.dead_letter.name, expect=BAD_RECORDS, idle=2.0
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
    produced: Counter[tuple[str, str, str, str]] = Counter()
    for record in records:
        trigger = json.loads(record.value)
        produced[
            (trigger["action"], trigger["list_name"], trigger["rule_id"], trigger["subject"])
        ] += 1
    dead_reasons = Counter(serde.decode(r.value).value["reason_code"] for r in dead)
    print(
        f"\n[pipeline] events={len(events)} bad={BAD_RECORDS} dead_lettered={len(dead)} "
        f"expected_triggers={sum(expected.values())} produced={sum(produced.values())} "
        f"in {time.monotonic() - started:.1f}s reasons={dict(dead_reasons)}"
    )
    assert len(dead) == BAD_RECORDS
    # Topics are read in parallel, so the worker sees another arrival order than the reference:
    # the trigger sequence may differ, the final list membership may not (issue 4, item 3).
    assert _net_membership(expected)
    assert _net_membership(produced) == _net_membership(expected)
    await asyncio.sleep(0)

"""Running the real worker in tests: isolated topics, simulator traffic, worker processes, and
the reference outcome of the pure rules for the same events."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from ops.services import free_port
from ops.simulator import Simulation, Simulator
from processors.ledger import apply, new_file
from processors.model import InputEvent, SubjectRef
from processors.policy import parse_policy_book
from processors.routing import route
from streams.admin import ensure_topics
from streams.codecs import AvroSerde
from streams.mapping import from_domain, record_name_of
from streams.settings import REPO_ROOT
from streams.topics import INPUT_TOPICS, OVERLOAD_DETECTIONS_TOPIC, prefixed

Entry = tuple[str, str, str]
"""(list, rule, subject)."""


def simulated_events(seed: int, steps: int, vehicles: int = 150) -> list[InputEvent]:
    """Certificates first, then ``steps`` simulated steps of detections and penalties."""
    simulator = Simulator(Simulation(seed=seed, vehicles=vehicles, carriers=vehicles // 10))
    events: list[InputEvent] = list(simulator.certificates())
    for _ in range(steps):
        events.extend(simulator.next_events())
    return events


async def send_events(
    bootstrap: str,
    prefix: str,
    events: Sequence[InputEvent],
    bad_records: Sequence[bytes] = (),
) -> None:
    """Create the prefixed topics and send the events (and raw bad records) as upstream would."""
    await ensure_topics(bootstrap, prefix=prefix)
    serde = AvroSerde.with_local_ids()
    topic_of = {spec.record: prefixed(spec, prefix).name for spec in INPUT_TOPICS}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        for event in events:
            record = record_name_of(event)
            await producer.send(topic_of[record], serde.encode(record, from_domain(event)))
        for raw in bad_records:
            await producer.send(prefixed(OVERLOAD_DETECTIONS_TOPIC, prefix).name, raw)
        await producer.flush()
    finally:
        await producer.stop()


def start_worker(
    bootstrap: str, app_id: str, prefix: str, folder: Path, name: str = "worker"
) -> subprocess.Popen[bytes]:
    """A real worker process (memory store) with its own web port, data folder and log."""
    env = {
        **os.environ,
        "CREDIT_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "CREDIT_APP_ID": app_id,
        "CREDIT_TOPIC_PREFIX": prefix,
        "CREDIT_STORE": "memory://",
        "CREDIT_DATA_DIR": str(folder / name),
        "CREDIT_WORKER_WEB_PORT": str(free_port()),
        # Short sessions so that a killed worker's partitions move within seconds.
        "CREDIT_SESSION_TIMEOUT_SECONDS": "6",
    }
    with (folder / f"{name}.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def start_publisher(
    bootstrap: str, app_id: str, prefix: str, folder: Path, website_url: str, token: str
) -> subprocess.Popen[bytes]:
    """A real publisher process delivering the outbox of ``prefix`` to the website."""
    env = {
        **os.environ,
        "CREDIT_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "CREDIT_TOPIC_PREFIX": prefix,
        "CREDIT_APP_ID": app_id,
        "CREDIT_WEBSITE_URL": website_url,
        "CREDIT_WEBSITE_API_TOKEN": token,
        "CREDIT_PUBLISHER_METRICS_PORT": str(free_port()),
        "CREDIT_BIND_HOST": "127.0.0.1",
    }
    with (folder / "publisher.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "publisher"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM and wait; SIGKILL if it does not stop."""
    if worker.poll() is not None:
        return
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def reference_triggers(events: Sequence[InputEvent]) -> list[tuple[str, Entry]]:
    """The triggers the pure rules raise for the events, applied in one process without Kafka."""
    book = parse_policy_book((REPO_ROOT / "config" / "policy.yaml").read_text(encoding="utf-8"))
    files: dict[SubjectRef, object] = {}
    queue = [pair for event in events for pair in route(event)]
    triggers: list[tuple[str, Entry]] = []
    now = datetime.now(UTC)
    while queue:
        subject, fact = queue.pop(0)
        file = files.get(subject) or new_file(subject)
        outcome = apply(file, fact, book, now)  # type: ignore[arg-type]
        files[subject] = outcome.file
        queue.extend(outcome.forwards)
        triggers.extend(
            (t.action.value, (t.list_name.value, t.rule_id, str(t.subject)))
            for t in outcome.triggers
        )
    return triggers


def produced_triggers(records: Sequence[ConsumerRecord[bytes, bytes]]) -> list[tuple[str, Entry]]:
    """Triggers read from the list-triggers topic, in partition order."""
    triggers = []
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        value = json.loads(record.value)
        entry = (value["list_name"], value["rule_id"], value["subject"])
        triggers.append((value["action"], entry))
    return triggers


def net_membership(triggers: Sequence[tuple[str, Entry]]) -> dict[Entry, int]:
    """ADDs minus REMOVEs per entry: the list outcome, whatever the arrival order."""
    net: Counter[Entry] = Counter()
    for action, entry in triggers:
        net[entry] += 1 if action == "ADD" else -1
    return {entry: n for entry, n in net.items() if n}


def repeated_actions(triggers: Sequence[tuple[str, Entry]]) -> list[Entry]:
    """Entries whose trigger sequence repeats an action (ADD after ADD, REMOVE after REMOVE).

    A subject's triggers share its partition, so their order is the order they were raised; a
    duplicated trigger (an output of a batch that was processed twice) shows up as a repeat.
    """
    last: dict[Entry, str] = {}
    repeats: list[Entry] = []
    by_entry: defaultdict[Entry, list[str]] = defaultdict(list)
    for action, entry in triggers:
        by_entry[entry].append(action)
        if last.get(entry, "REMOVE") == action:
            repeats.append(entry)
        last[entry] = action
    return repeats

"""Running the real worker in tests: isolated topics, simulator traffic, worker processes, and
the reference outcome of the pure rules for the same events."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
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
from streams.topics import CREDIT_FACTS_TOPIC, INPUT_TOPICS, OVERLOAD_DETECTIONS_TOPIC, prefixed
from tests.integration.kafka_helpers import consumption_left, read_committed

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
    bootstrap: str,
    app_id: str,
    prefix: str,
    folder: Path,
    name: str = "worker",
    *,
    store: str = "memory://",
    settings: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """A real worker process (memory store unless told) with its own web port, data folder
    (``folder / name``) and log; ``settings`` are more ``CREDIT_*`` variables."""
    env = {
        **os.environ,
        "CREDIT_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "CREDIT_APP_ID": app_id,
        "CREDIT_TOPIC_PREFIX": prefix,
        "CREDIT_STORE": store,
        "CREDIT_DATA_DIR": str(folder / name),
        "CREDIT_WORKER_WEB_PORT": str(free_port()),
        # Short sessions so that a killed worker's partitions move within seconds.
        "CREDIT_SESSION_TIMEOUT_SECONDS": "6",
        **(settings or {}),
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


async def until_converged(
    bootstrap: str, topic: str, expected: list[tuple[str, Entry]], timeout: float
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read the committed triggers again and again until their outcome is the reference one.

    Triggers are sparse: the last ones may come well after a quiet spell, so "no new trigger
    for a while" does not mean the worker stopped (an earlier version of these tests took it
    for a stall).
    """
    deadline = time.monotonic() + timeout
    while True:
        records = await read_committed(bootstrap, topic, idle=1.0, timeout=10)
        if net_membership(produced_triggers(records)) == net_membership(expected):
            return records
        if time.monotonic() > deadline:
            return records
        await asyncio.sleep(2.0)


async def outcome_report(
    bootstrap: str,
    app_id: str,
    prefix: str,
    produced: list[tuple[str, Entry]],
    expected: list[tuple[str, Entry]],
    liveness_restarts: int,
    folder: Path,
) -> str:
    """What a failed run needs to be understood from CI's output alone: the entries whose net
    outcome differs with the actions raised for them, and the input still uncommitted (a stall)
    or none (outputs lost)."""
    got, want = net_membership(produced), net_membership(expected)
    differing = sorted(entry for entry in {*got, *want} if got.get(entry) != want.get(entry))
    actions = {
        entry: [action for action, raised in produced if raised == entry] for entry in differing
    }
    topics = {prefixed(spec, prefix).name: spec.partitions for spec in INPUT_TOPICS}
    topics[prefixed(CREDIT_FACTS_TOPIC, prefix).name] = CREDIT_FACTS_TOPIC.partitions
    left = await consumption_left(bootstrap, app_id, topics)
    return (
        f"liveness_restarts={liveness_restarts}; differing entries and the actions produced for "
        f"them: {actions}; input left after the committed offsets (committed, end, records): "
        f"{left}; the workers' errors: {worker_errors(folder)}"
    )


def worker_errors(folder: Path, most: int = 12) -> list[str]:
    """The last error and warning lines of the workers' logs in ``folder`` (logs are masked)."""
    lines = []
    for log_file in sorted(folder.glob("*.log")):
        for line in log_file.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if not isinstance(entry, dict) or entry.get("level") not in {"WARNING", "ERROR"}:
                continue
            message = str(entry.get("message", ""))
            if "GroupCoordinatorNotAvailable" in message or "Invalid state transition" in message:
                continue  # expected while a group forms and after each rebalance
            lines.append(f"{log_file.stem} {entry.get('time')} {message[:240]}")
    return lines[-most:]

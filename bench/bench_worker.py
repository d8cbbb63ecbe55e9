"""Sustained throughput and end-to-end latency of one exactly-once stream worker on a real broker.

In one run, on a local Apache Kafka started for the purpose (free ports, data in a temp folder):

1. creates the product's topics and pre-loads N input events (seeded simulator traffic: operating
   certificates, overload detections, the penalties that follow some of them, and ~1 % bad
   records), Avro with Confluent framing, keyed as the product expects, idempotent producer;
2. **baseline**: a plain aiokafka consumer (no group, ``read_committed``) reads the same records
   and decodes each with ``fastavro.schemaless_reader`` (Confluent header stripped); once before
   and once after the first worker run;
3. **worker**: ``python -m streams.cli worker`` as a subprocess, a fresh app id and fresh topics
   for each run: memory store, RocksDB store, and the memory store with bigger batches and rarer
   commits (settings only). The rate counts from the group's first committed input offset until
   its committed offsets pass the last record of the three input topics (first hop) and then of
   ``credit-facts`` (second hop, every forwarded fact): *input events fully judged per second*.
   Also the worker's CPU (and how long its main thread waited for a CPU), the broker's CPU, and
   the worker's own batch metrics;
4. **latency**: the first worker, once it has judged the backlog, gets new detections (and their
   penalties) paced at each of ``--latency-rates`` for ``--latency-seconds``; for each detection,
   the time from ``send()`` until a ``read_committed`` consumer reads the vehicle's next snapshot
   on ``credit-snapshots`` (p50/p90/p99/max), and from an ADD trigger's latest evidence event to
   the trigger on ``list-triggers``. Then once more at the lowest rate on a worker that commits
   every ``--fast-commit`` seconds, and at the highest rate on ``--scale-out`` workers of one
   group (the product's way past one worker) committing every ``--scale-out-commit`` seconds;
5. **profile**: two more memory-store runs of ``--profile-events``: one sampled by py-spy (wall
   clock, idle included, per thread) and one under cProfile (stopped with SIGINT, which writes
   the profile); the top functions by cumulative and by own time, time by component.

Prints every figure and writes the section "## Stream worker" of BENCHMARKS.md (replacing an
earlier one, keeping every other byte of the file); with ``--json``, also one JSON line for
``bench/run_all.py`` (see its docstring).

Run from the repository root (about 20 minutes on a 2-core machine: the worker is slow)::

    python bench/bench_worker.py [--events 50000] [--latency-seconds 20] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import io
import json
import logging
import math
import os
import pickle
import platform
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiokafka
import fastavro
import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from ops.services import KAFKA_VERSION, LocalKafka, free_port
from ops.simulator import Simulation, Simulator
from processors.model import LicensingDecision, OverloadDetection, PenaltyDecision
from streams.admin import ensure_topics
from streams.codecs import CONFLUENT_HEADER_LENGTH, AvroSerde
from streams.mapping import from_domain, record_name_of
from streams.settings import Settings
from streams.topics import (
    CREDIT_FACTS_TOPIC,
    CREDIT_SNAPSHOTS_TOPIC,
    INPUT_TOPICS,
    LIST_TRIGGERS_TOPIC,
    OVERLOAD_DETECTIONS_TOPIC,
)
from streams.upstream import record_key

REPOSITORY = Path(__file__).resolve().parent.parent
DEFAULTS = Settings()
DEFAULT_COMMIT_SECONDS = DEFAULTS.commit_interval_seconds
BENCHMARKS_FILE = REPOSITORY / "BENCHMARKS.md"
SECTION_TITLE = "## Stream worker"
COMMAND = "python bench/bench_worker.py"
TARGET_EVENTS_PER_SECOND = 20_000
TARGET_P99_SECONDS = 1.0
TARGET_RATE = 1_000.0
"""Events per second at which the issue sets the p99 target."""
POLL_SECONDS = 0.1
"""How often the group's committed offsets are read while a worker runs."""
TOP_FUNCTIONS = 25
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

log = logging.getLogger("bench_worker")


# ------------------------------------------------------------------------------------------------
# Workload
# ------------------------------------------------------------------------------------------------


@dataclass
class Workload:
    """Encoded input records, in the order they are sent, and what they are."""

    records: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)
    """(topic, key, value)."""
    kinds: Counter[str] = field(default_factory=Counter)


def vehicle_subject(plate: str, colour: Any) -> str:
    """The credit-facts / credit-snapshots key of a vehicle's file."""
    return f"VEHICLE:{plate}|{colour.value}"


def encode_event(serde: AvroSerde, event: Any) -> tuple[str, bytes, bytes]:
    """(topic, key, value) as the product's upstreams send it (docs/upstream-guide.md)."""
    record = record_name_of(event)
    value = serde.encode(record, from_domain(event))
    return TOPIC_OF_RECORD[record], record_key(event), value


TOPIC_OF_RECORD = {spec.record: spec.name for spec in INPUT_TOPICS}


def kind_of(event: Any) -> str:
    if isinstance(event, OverloadDetection):
        return "overload detections"
    if isinstance(event, PenaltyDecision):
        return "penalty decisions"
    if isinstance(event, LicensingDecision):
        return "licensing decisions (operating certificates)"
    return type(event).__name__


def build_workload(events: int, seed: int) -> Workload:
    """Simulator traffic: one certificate per vehicle, then detections, penalties, bad records.

    The simulated clock is spread from the simulator's start to shortly before now, so that the
    events fill about a year, as a year's traffic of a county would.
    """
    start = Simulation().start
    span = (datetime.now(UTC) - timedelta(hours=1) - start).total_seconds()
    step = timedelta(seconds=max(1.0, span / events))
    simulator = Simulator(Simulation(seed=seed, step=step))
    serde = AvroSerde.with_local_ids()
    workload = Workload()

    def add(event: Any) -> None:
        workload.records.append(encode_event(serde, event))
        workload.kinds[kind_of(event)] += 1

    for certificate in simulator.certificates():
        add(certificate)
    while len(workload.records) < events:
        if simulator.is_bad_record_turn():
            workload.records.append((OVERLOAD_DETECTIONS_TOPIC.name, None, simulator.bad_record()))
            workload.kinds["bad records (dead-lettered)"] += 1
        for event in simulator.next_events():
            add(event)
    while len(workload.records) > events:  # the last step may add a penalty too many
        topic, _, _ = workload.records.pop()
        workload.kinds["penalty decisions"] -= 1
        assert topic == TOPIC_OF_RECORD["PenaltyDecision"]
    return workload


# ------------------------------------------------------------------------------------------------
# Broker helpers
# ------------------------------------------------------------------------------------------------


def input_partitions() -> list[TopicPartition]:
    return [TopicPartition(spec.name, p) for spec in INPUT_TOPICS for p in range(spec.partitions)]


def facts_partitions() -> list[TopicPartition]:
    return [
        TopicPartition(CREDIT_FACTS_TOPIC.name, p) for p in range(CREDIT_FACTS_TOPIC.partitions)
    ]


async def started_consumer(bootstrap: str, **config: Any) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        **config,
    )
    await consumer.start()
    await asyncio.sleep(0)  # aiokafka 0.14: stop() before its no-group task ran raises
    return consumer


async def end_offsets(bootstrap: str, partitions: Sequence[TopicPartition]) -> dict[Any, int]:
    """Last stable offsets (what a read_committed reader can reach)."""
    consumer = await started_consumer(bootstrap)
    try:
        return dict(await consumer.end_offsets(list(partitions)))
    finally:
        await consumer.stop()


async def produce(
    bootstrap: str, records: Iterable[tuple[str, bytes | None, bytes]]
) -> tuple[int, float]:
    """Send with an idempotent producer; returns (records, seconds) once all are acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    sent = 0
    try:
        futures: list[asyncio.Future[Any]] = []
        for topic, key, value in records:
            futures.append(await producer.send(topic, value, key=key))
            sent += 1
            if len(futures) >= 5_000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent, time.perf_counter() - started


async def reset_topics(bootstrap: str) -> None:
    """Delete every topic (the product's and faust's changelogs) and create the product's anew."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-worker")
    await admin.start()
    try:
        existing = [name for name in await admin.list_topics() if not name.startswith("__")]
        if existing:
            await admin.delete_topics(existing, timeout_ms=30_000)
        deadline = time.monotonic() + 60
        while set(existing) & set(await admin.list_topics()):
            if time.monotonic() > deadline:
                raise RuntimeError("topics were not deleted within 60 s")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    await asyncio.sleep(1.0)  # let the deletion settle on the single node before re-creating
    await ensure_topics(bootstrap, wait_seconds=60)


# ------------------------------------------------------------------------------------------------
# Baseline: plain aiokafka consume + fastavro decode
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BaselineRun:
    records: int
    seconds: float
    decode_errors: int

    @property
    def rate(self) -> float:
        return self.records / self.seconds


async def baseline(bootstrap: str, ends: dict[Any, int], limit_seconds: float) -> BaselineRun:
    """Read every record below ``ends`` and decode it with fastavro; records/s."""
    serde = AvroSerde.with_local_ids()
    schema_of_topic = {
        spec.name: serde.store.current(spec.record or "").for_reading for spec in INPUT_TOPICS
    }
    reader = fastavro.schemaless_reader
    consumer = await started_consumer(bootstrap, max_partition_fetch_bytes=4 * 1024 * 1024)
    records = errors = 0
    try:
        consumer.assign(list(ends))
        await consumer.seek_to_beginning(*ends)
        remaining = {tp for tp, end in ends.items() if end > 0}
        deadline = time.monotonic() + limit_seconds
        gc.collect()
        started = time.perf_counter()
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"baseline: {remaining} not read in {limit_seconds} s")
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for tp, part in batch.items():
                end = ends[tp]
                schema = schema_of_topic[tp.topic]
                for record in part:
                    if record.offset >= end:
                        break
                    records += 1
                    value = record.value or b""
                    try:
                        if value[:1] != b"\x00":
                            raise ValueError("no Confluent magic byte")
                        reader(io.BytesIO(value[CONFLUENT_HEADER_LENGTH:]), schema)
                    except Exception:  # noqa: BLE001 - garbage records fail in any way
                        errors += 1
                if part and part[-1].offset >= end - 1:
                    remaining.discard(tp)
        seconds = time.perf_counter() - started
    finally:
        await consumer.stop()
    return BaselineRun(records, seconds, errors)


# ------------------------------------------------------------------------------------------------
# The worker
# ------------------------------------------------------------------------------------------------


def run_and_wait_seconds(pid: int) -> tuple[float, float]:
    """A process's main thread: seconds on a CPU, and seconds runnable but waiting for one."""
    try:
        on_cpu, waiting, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
    except (OSError, ValueError):
        return math.nan, math.nan
    return int(on_cpu) / 1e9, int(waiting) / 1e9


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class Worker:
    """A worker subprocess and what it needs."""

    label: str
    app_id: str
    store: str
    web_port: int
    process: subprocess.Popen[bytes]
    log_file: Path
    profile_file: Path | None = None
    spawned_at: float = 0.0
    stop_problem: str = ""
    """Set when the worker had to be killed: how long it was given, and the errors it logged."""

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def metrics(self) -> dict[str, float]:
        """The worker's own samples (``credit_*``), by sample name with labels."""
        url = f"http://127.0.0.1:{self.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:  # loopback, our own worker
            text = response.read().decode()
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("credit_") and "_created" not in line:
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int | None:
        if self.process.poll() is None:
            size = self.log_file.stat().st_size if self.log_file.exists() else 0
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with self.log_file.open("rb") as handle:
                    handle.seek(size)
                    after = handle.read().decode(errors="replace").splitlines()
                errors = sorted({line.strip() for line in after if ERROR_LINE.match(line)})
                errors += [
                    "at " + line.strip().replace(f'"{REPOSITORY}/', '"')
                    for line in after
                    if line.strip().startswith('File "') and f"{REPOSITORY}/" in line
                ]
                self.stop_problem = (
                    f"did not exit within {timeout:.0f} s of {signal.Signals(sig).name} "
                    f"and was killed; after the signal it logged: {'; '.join(errors) or 'no error'}"
                )
                log.warning("worker %s %s", self.label, self.stop_problem)
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


ERROR_LINE = re.compile(r"^\s*(\w+\.)*\w*(Error|Exception|IllegalOperation)\b")


def start_worker(
    label: str,
    bootstrap: str,
    store: str,
    folder: Path,
    *,
    profile: bool = False,
    extra_env: dict[str, str] | None = None,
    app_id: str | None = None,
) -> Worker:
    """A worker process; give ``app_id`` to join another worker's group."""
    app_id = app_id or f"bench-worker-{label}-{uuid.uuid4().hex[:8]}"
    web_port = free_port()
    data_dir = folder / f"data-{label}"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "CREDIT_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "CREDIT_APP_ID": app_id,
        "CREDIT_STORE": store,
        "CREDIT_DATA_DIR": str(data_dir),
        "CREDIT_WORKER_WEB_PORT": str(web_port),
        **(extra_env or {}),
    }
    profile_file = folder / f"worker-{label}.prof" if profile else None
    command = [sys.executable]
    if profile_file is not None:
        command += ["-m", "cProfile", "-o", str(profile_file)]
    command += ["-m", "streams.cli", "worker"]
    log_file = folder / f"worker-{label}.log"
    with log_file.open("ab") as handle:
        process = subprocess.Popen(
            command,
            cwd=REPOSITORY,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Worker(
        label, app_id, store, web_port, process, log_file, profile_file, time.perf_counter()
    )


@dataclass
class Progress:
    """When the worker's committed offsets reached which point, and the CPU it had used."""

    first_commit_at: float = math.nan
    committed_at_first: int = 0
    inputs_done_at: float = math.nan
    facts_done_at: float = math.nan
    facts_records: int = 0
    """Data records on credit-facts (from the first offset) when everything was judged."""
    worker_cpu: dict[str, float] = field(default_factory=dict)
    broker_cpu: dict[str, float] = field(default_factory=dict)
    worker_sched: dict[str, tuple[float, float]] = field(default_factory=dict)
    """The worker's main thread at each mark: (seconds on a CPU, seconds waiting for one)."""
    polls: int = 0


class FactsTail:
    """Follows credit-facts with a read_committed consumer: the last data record per partition.

    Records on credit-facts are transactional, so each partition holds commit markers between
    and after them (several at the end: one per producer that wrote there). A partition is fully
    consumed by the group when its committed offset is past the last *data* record, which only a
    reader that has reached the last stable offset can tell.
    """

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer
        self.last_data: dict[Any, int] = dict.fromkeys(facts_partitions(), -1)
        self.records = 0
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, bootstrap: str) -> FactsTail:
        consumer = await started_consumer(bootstrap, max_partition_fetch_bytes=4 * 1024 * 1024)
        consumer.assign(facts_partitions())
        await consumer.seek_to_beginning(*facts_partitions())
        tail = cls(consumer)
        tail._task = asyncio.create_task(tail._follow())
        return tail

    async def _follow(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=100, max_records=20_000)
            for tp, part in batch.items():
                if part:
                    self.last_data[tp] = part[-1].offset
                    self.records += len(part)

    async def consumed(self, committed: dict[Any, int]) -> bool:
        """Has the group committed past every data record visible now?"""
        if self._task is not None and self._task.done():
            self._task.result()  # re-raise what stopped the reader
        lso = await self.consumer.end_offsets(facts_partitions())
        for tp, end in lso.items():
            if await self.consumer.position(tp) < end:
                return False  # the reader has not seen everything visible yet
        return all(committed.get(tp, 0) >= last + 1 for tp, last in self.last_data.items())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.consumer.stop()


async def watch(
    bootstrap: str,
    worker: Worker,
    input_ends: dict[Any, int],
    broker_pid: int,
    limit_seconds: float,
    on_first_commit: Callable[[], object] | None = None,
) -> Progress:
    """Poll the group's committed offsets until the inputs and then credit-facts are consumed.

    Inputs are plain (idempotent) records: the committed offset must reach their end. For
    credit-facts see :class:`FactsTail`. The group's offsets are read before the facts' last
    stable offsets, so a fact made visible in between counts as not yet consumed.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-worker-watch")
    await admin.start()
    tail = await FactsTail.start(bootstrap)
    progress = Progress()
    deadline = time.monotonic() + limit_seconds
    pid = worker.process.pid

    def cpu_mark(name: str) -> None:
        progress.worker_cpu[name] = cpu_seconds(pid)
        progress.broker_cpu[name] = cpu_seconds(broker_pid)
        progress.worker_sched[name] = run_and_wait_seconds(pid)

    try:
        while True:
            if worker.process.poll() is not None:
                raise RuntimeError(
                    f"worker {worker.label} exited with {worker.process.returncode}:\n"
                    + worker.log_tail()
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"worker {worker.label} did not finish in {limit_seconds:.0f} s:\n"
                    + worker.log_tail()
                )
            try:
                committed = await admin.list_consumer_group_offsets(worker.app_id)
            except KafkaError:  # coordinator loading while the group forms
                await asyncio.sleep(POLL_SECONDS)
                continue
            now = time.perf_counter()
            progress.polls += 1
            offsets = {tp: meta.offset for tp, meta in committed.items() if meta.offset >= 0}
            done_inputs = sum(min(offsets.get(tp, 0), end) for tp, end in input_ends.items())
            if math.isnan(progress.first_commit_at) and done_inputs > 0:
                progress.first_commit_at = now
                progress.committed_at_first = done_inputs
                cpu_mark("first")
                if on_first_commit is not None:
                    on_first_commit()
            if done_inputs >= sum(input_ends.values()):
                if math.isnan(progress.inputs_done_at):
                    progress.inputs_done_at = now
                    cpu_mark("inputs")
                if await tail.consumed(offsets):
                    progress.facts_done_at = now
                    progress.facts_records = tail.records
                    cpu_mark("facts")
                    return progress
            await asyncio.sleep(POLL_SECONDS)
    finally:
        await tail.stop()
        await admin.close()


async def settled(bootstrap: str, worker: Worker, seconds: float = 2.0) -> bool:
    """After ``seconds``, have credit-facts and the group's offsets stayed where they were?"""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-worker-settle")
    await admin.start()
    try:
        before = await admin.list_consumer_group_offsets(worker.app_id)
        facts_before = await end_offsets(bootstrap, facts_partitions())
        await asyncio.sleep(seconds)
        after = await admin.list_consumer_group_offsets(worker.app_id)
        facts_after = await end_offsets(bootstrap, facts_partitions())
    finally:
        await admin.close()
    same_offsets = {tp: m.offset for tp, m in before.items()} == {
        tp: m.offset for tp, m in after.items()
    }
    return same_offsets and facts_before == facts_after


@dataclass
class WorkerRun:
    """The throughput of one worker run."""

    label: str
    store: str
    settings: str
    inputs: int
    progress: Progress
    startup_seconds: float
    settled: bool
    counters: dict[str, float]
    slow_commits: list[float]
    """Runtimes of the commits faust logged as longer than the commit interval."""

    @property
    def window(self) -> float:
        return self.progress.facts_done_at - self.progress.first_commit_at

    @property
    def judged_rate(self) -> float:
        """Input events fully judged (both hops) per second."""
        return ratio(self.inputs - self.progress.committed_at_first, self.window)

    @property
    def first_hop_rate(self) -> float:
        p = self.progress
        return ratio(self.inputs - p.committed_at_first, p.inputs_done_at - p.first_commit_at)

    @property
    def facts_rate(self) -> float:
        """credit-facts records per second over the same window (approximate: the few facts
        consumed before the first input commit are not subtracted)."""
        return ratio(self.progress.facts_records, self.window)

    def cpu_share(self, which: str = "worker") -> float:
        """Cores the process used on average between the first commit and the end."""
        marks = self.progress.worker_cpu if which == "worker" else self.progress.broker_cpu
        return ratio(marks["facts"] - marks["first"], self.window)

    def sched_share(self) -> tuple[float, float]:
        """The worker's main thread: share of the window on a CPU, and waiting for a CPU."""
        (run0, wait0), (run1, wait1) = (
            self.progress.worker_sched["first"],
            self.progress.worker_sched["facts"],
        )
        return ratio(run1 - run0, self.window), ratio(wait1 - wait0, self.window)

    @property
    def events_per_cpu_second(self) -> float:
        marks = self.progress.worker_cpu
        return ratio(
            self.inputs - self.progress.committed_at_first, marks["facts"] - marks["first"]
        )

    def counter(self, prefix: str) -> float:
        return sum(value for name, value in self.counters.items() if name.startswith(prefix))

    def batches(self) -> list[tuple[str, float, float, float]]:
        """Per agent: (agent, batches, events per batch, mean seconds per batch)."""
        inputs = {
            "validate_and_route": sum(
                self.counters.get(f'credit_events_in_total{{topic="{spec.name}"}}', 0.0)
                for spec in INPUT_TOPICS
            ),
            "judge_credit_files": self.counters.get(
                f'credit_events_in_total{{topic="{CREDIT_FACTS_TOPIC.name}"}}', 0.0
            ),
        }
        rows = []
        for agent, events in inputs.items():
            count = self.counters.get(f'credit_batch_seconds_count{{agent="{agent}"}}', 0.0)
            total = self.counters.get(f'credit_batch_seconds_sum{{agent="{agent}"}}', 0.0)
            if count:
                rows.append((agent, count, events / count, total / count))
        return rows


async def measure_worker(
    bootstrap: str,
    worker: Worker,
    input_ends: dict[Any, int],
    broker_pid: int,
    limit_seconds: float,
    settings: str = "defaults",
    on_first_commit: Callable[[], object] | None = None,
) -> WorkerRun:
    progress = await watch(
        bootstrap, worker, input_ends, broker_pid, limit_seconds, on_first_commit
    )
    quiet = await settled(bootstrap, worker)
    try:
        counters = await asyncio.to_thread(worker.metrics)
    except OSError as exc:
        log.warning("could not read the worker's metrics: %s", exc)
        counters = {}
    log_text = worker.log_file.read_text(errors="replace")
    return WorkerRun(
        worker.label,
        worker.store,
        settings,
        sum(input_ends.values()),
        progress,
        progress.first_commit_at - worker.spawned_at,
        quiet,
        counters,
        [float(value) for value in SLOW_COMMIT.findall(log_text)],
    )


SLOW_COMMIT = re.compile(r"Timer commit is overlapping \(interval=[\d.]+ runtime=([\d.]+)\)")


def print_run(run: WorkerRun, base: float) -> None:
    p = run.progress
    on_cpu, waiting = run.sched_share()
    print(
        f"[{run.label}] store={run.store} settings={run.settings}: startup "
        f"{run.startup_seconds:.1f} s; inputs {run.inputs:,} ({p.committed_at_first:,} committed "
        f"at the first poll); first hop {run.first_hop_rate:,.0f}/s; fully judged "
        f"{run.judged_rate:,.0f}/s over {run.window:.1f} s (ratio to baseline "
        f"{run.judged_rate / base:.4f}); credit-facts {p.facts_records:,} records, "
        f"{run.facts_rate:,.0f}/s; worker {run.cpu_share():.2f} cores (main thread on a CPU "
        f"{on_cpu:.0%}, waiting for a CPU {waiting:.0%}), broker {run.cpu_share('broker'):.2f} "
        f"cores; {run.events_per_cpu_second:,.0f} events per worker CPU-second; "
        f"settled={run.settled}; {len(run.slow_commits)} commits took longer than the commit "
        f"interval (longest {max(run.slow_commits, default=0):.2f} s)",
        flush=True,
    )
    for agent, batches, per_batch, seconds in run.batches():
        print(
            f"    {agent}: {batches:,.0f} batches, {per_batch:,.1f} events per batch, "
            f"{seconds * 1000:,.1f} ms per batch"
        )
    for name, value in sorted(run.counters.items()):
        if name.startswith(("credit_events", "credit_list_triggers", "credit_dead_letters")):
            print(f"    {name} = {value:,.0f}")


# ------------------------------------------------------------------------------------------------
# Latency at a paced rate
# ------------------------------------------------------------------------------------------------


@dataclass
class LatencyRun:
    setting: str
    """The worker's settings, in words."""
    rate: float
    seconds: float
    sent_events: int
    detections: int
    latencies: list[float]
    """Every detection matched to the first snapshot of its vehicle read after its send."""
    clean_latencies: list[float]
    """Only detections sent when no earlier event of the vehicle was still unanswered."""
    unmatched: int
    trigger_latencies: dict[str, list[float]]
    """From the send of an ADD trigger's latest evidence event to the trigger, by subject kind."""
    vehicles: int
    drain_seconds: float
    """How long after the last send the last match came."""
    worker_cpu_share: float
    sched: tuple[float, float]
    """The worker's main thread during the phase: share on a CPU, share waiting for one."""


def ratio(part: float, whole: float) -> float:
    """part / whole, NaN when whole is not positive (a phase too short to measure)."""
    return part / whole if whole > 0 else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def wait_group_ready(group: list[Worker], limit_seconds: float, settle: float = 5.0) -> None:
    """Until every worker of ``group`` answers ready, then ``settle`` seconds more."""
    deadline = time.monotonic() + limit_seconds
    waiting = list(group)
    while waiting:
        if time.monotonic() > deadline:
            raise TimeoutError(f"workers not ready: {[w.label for w in waiting]}")
        ready = []
        for worker in waiting:
            url = f"http://127.0.0.1:{worker.web_port}/health/ready"
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # loopback, our worker
                    if response.status == 200:
                        ready.append(worker)
            except OSError:
                pass
        waiting = [w for w in waiting if w not in ready]
        time.sleep(0.5)
    time.sleep(settle)


async def wait_caught_up(bootstrap: str, worker: Worker, limit_seconds: float) -> None:
    ends = await end_offsets(bootstrap, input_partitions())
    await watch(bootstrap, worker, ends, os.getpid(), limit_seconds)


async def latency_traffic(
    bootstrap: str, worker: Worker, vehicles: int, seed: int, limit_seconds: float
) -> Simulator:
    """New vehicles with their certificates, judged, for the paced phases to send detections of.

    Many vehicles, so that one vehicle's detections are seconds apart and each is matched to the
    snapshot it caused, not to one caused by its predecessor.
    """
    simulator = Simulator(
        Simulation(
            seed=seed + 1,
            vehicles=vehicles,
            carriers=max(40, vehicles // 25),
            start=datetime.now(UTC) - timedelta(days=2),
            step=timedelta(seconds=2),
        )
    )
    serde = AvroSerde.with_local_ids()
    await produce(bootstrap, (encode_event(serde, c) for c in simulator.certificates()))
    await wait_caught_up(bootstrap, worker, limit_seconds)
    return simulator


async def latency_phase(
    bootstrap: str,
    worker: Worker,
    simulator: Simulator,
    rate: float,
    seconds: float,
    limit_seconds: float,
    setting: str = f"commit every {DEFAULT_COMMIT_SECONDS:g} s",
) -> LatencyRun:
    """Pace new traffic into the running worker and time each detection to its snapshot."""
    await wait_caught_up(bootstrap, worker, limit_seconds)
    serde = AvroSerde.with_local_ids()
    watched = [
        TopicPartition(topic.name, p)
        for topic in (CREDIT_SNAPSHOTS_TOPIC, LIST_TRIGGERS_TOPIC)
        for p in range(topic.partitions)
    ]
    reader = await started_consumer(bootstrap)
    reader.assign(watched)
    await reader.seek_to_end(*watched)
    for tp in watched:
        await reader.position(tp)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5)
    await producer.start()

    pending: dict[str, list[tuple[float, bool | None]]] = defaultdict(list)
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    clean: list[float] = []
    triggers: dict[str, list[float]] = defaultdict(list)
    counts = Counter[str]()
    marks: dict[str, float] = {}
    pacing_done = asyncio.Event()

    async def pace() -> None:
        started = time.perf_counter()
        try:
            while (elapsed := time.perf_counter() - started) < seconds:
                target = int(rate * elapsed) + 1
                while counts["events"] < target:
                    for event in simulator.next_events():
                        topic, key, value = encode_event(serde, event)
                        subject = vehicle_subject(event.plate_number or "", event.plate_colour)
                        t_send = time.perf_counter()
                        if isinstance(event, OverloadDetection):
                            pending[subject].append((t_send, not pending[subject]))
                            counts["detections"] += 1
                        else:
                            pending[subject].append((t_send, None))
                        sent_at[event.event_id] = t_send
                        await producer.send(topic, value, key=key)
                        counts["events"] += 1
                await asyncio.sleep(0.005)
            marks["paced"] = time.perf_counter() - started
            marks["last_send"] = time.perf_counter()
            await producer.flush()
        finally:
            pacing_done.set()

    async def read() -> None:
        deadline: float | None = None
        while True:
            if pacing_done.is_set():
                deadline = deadline or time.perf_counter() + limit_seconds
                if not any(pending.values()) or time.perf_counter() > deadline:
                    return
            batch = await reader.getmany(timeout_ms=20, max_records=5_000)
            t_read = time.perf_counter()
            for tp, part in batch.items():
                for record in part:
                    key = (record.key or b"").decode()
                    if tp.topic == CREDIT_SNAPSHOTS_TOPIC.name:
                        answered = pending.pop(key, ())
                        for t_send, is_clean in answered:
                            if is_clean is None:
                                continue
                            latencies.append(t_read - t_send)
                            if is_clean:
                                clean.append(t_read - t_send)
                        if answered:
                            marks["last_match"] = t_read
                        continue
                    trigger = json.loads(record.value or b"{}")
                    if trigger.get("action") != "ADD":
                        continue
                    evidence = trigger.get("evidence_event_ids", ())
                    times = [sent_at[e] for e in evidence if e in sent_at]
                    if times:
                        triggers[key.split(":", 1)[0]].append(t_read - max(times))

    gc.collect()
    gc.freeze()
    gc.disable()  # the client's own pauses would show up as latency
    pid = worker.process.pid
    cpu_before, sched_before = cpu_seconds(pid), run_and_wait_seconds(pid)
    wall_before = time.perf_counter()
    try:
        await asyncio.gather(pace(), read())
    finally:
        gc.enable()
        gc.unfreeze()
        wall = time.perf_counter() - wall_before
        cpu_share = (cpu_seconds(pid) - cpu_before) / wall
        sched_after = run_and_wait_seconds(pid)
        await producer.stop()
        await reader.stop()
    unmatched = sum(1 for entries in pending.values() for _, c in entries if c is not None)
    return LatencyRun(
        setting,
        rate,
        marks.get("paced", math.nan),
        counts["events"],
        counts["detections"],
        latencies,
        clean,
        unmatched,
        dict(triggers),
        len(simulator.vehicles),
        marks.get("last_match", math.nan) - marks.get("last_send", math.nan),
        cpu_share,
        ((sched_after[0] - sched_before[0]) / wall, (sched_after[1] - sched_before[1]) / wall),
    )


def print_latency(run: LatencyRun) -> None:
    def line(name: str, values: Sequence[float]) -> str:
        return (
            f"  {name}: n={len(values):,} p50 {ms(percentile(values, 50))} "
            f"p90 {ms(percentile(values, 90))} p99 {ms(percentile(values, 99))} "
            f"max {ms(max(values, default=math.nan))}"
        )

    print(
        f"[latency {run.rate:,.0f}/s, {run.setting}] {run.sent_events:,} events "
        f"({run.detections:,} detections) in {run.seconds:.1f} s = "
        f"{ratio(run.sent_events, run.seconds):,.0f}/s; "
        f"unmatched {run.unmatched}; last match {run.drain_seconds:.1f} s after the last send; "
        f"worker {run.worker_cpu_share:.2f} cores (main thread on a CPU {run.sched[0]:.0%}, "
        f"waiting for one {run.sched[1]:.0%})",
        flush=True,
    )
    print(line("every detection -> snapshot", run.latencies))
    print(line("clean detections -> snapshot", run.clean_latencies))
    for kind, values in sorted(run.trigger_latencies.items()):
        print(line(f"ADD trigger on {kind}", values))


# ------------------------------------------------------------------------------------------------
# Profiles
# ------------------------------------------------------------------------------------------------

IDLE = "waiting in epoll (idle, or for the broker)"
SOCKET = "socket send/recv system calls"
COMPONENT_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (IDLE, ("select.epoll", "EpollSelector.select", "selectors.py")),
    (SOCKET, ("_socket.socket", "_SelectorSocketTransport.write", "_read_ready__data_received")),
    ("JSON (json module, _json)", ("json/", "_json")),
    ("credit-file dict codec (processors/file_codec.py)", ("processors/file_codec.py",)),
    ("fact dict codec (processors/fact_codec.py)", ("processors/fact_codec.py",)),
    ("pure rules (processors/, other modules)", ("processors/",)),
    ("Avro (fastavro)", ("fastavro",)),
    ("our shell (streams/)", ("streams/",)),
    ("faust", ("faust/",)),
    ("mode (faust's service runtime)", ("mode/",)),
    ("aiokafka (protocol, producer, consumer)", ("aiokafka/",)),
    ("asyncio (tasks, futures, loop)", ("asyncio/", "_asyncio", "contextvars", "contextlib")),
    ("logging", ("logging/",)),
    ("prometheus_client", ("prometheus_client",)),
    (
        "dataclasses, datetime, enum, typing, abc",
        ("dataclasses", "datetime", "enum", "typing", "abc"),
    ),
)
OTHER = "other (interpreter, builtins, other libraries)"


def short_path(filename: str) -> str:
    path = filename.replace("\\", "/")
    for marker in ("site-packages/", f"{REPOSITORY}/", "/lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return path


def component_of(filename: str, function: str) -> str:
    where = f"{short_path(filename)}:{function}"
    for label, needles in COMPONENT_RULES:
        if any(needle in where for needle in needles):
            return label
    return OTHER


@dataclass
class CProfileSummary:
    total_seconds: float
    by_component: list[tuple[str, float]]
    cumulative_text: str
    own_text: str
    selected: list[tuple[str, int, float, float]]
    """(function, calls, own seconds, cumulative seconds)."""
    counts: dict[str, int]
    """Calls of a few machinery functions (see COUNTED)."""


COUNTED = {
    "event-loop iterations": ("asyncio/base_events.py", "_run_once"),
    "callbacks run": ("asyncio/events.py", "_run"),
    "tasks created": ("asyncio/base_events.py", "create_task"),
    "futures created": ("asyncio/base_events.py", "create_future"),
    "socket sends": ("~", "<method 'send' of '_socket.socket' objects>"),
}
"""Machinery whose call counts show the per-record overhead (primitive calls only)."""


SELECTED_FUNCTIONS = (
    ("streams/app.py", "validate_and_route"),
    ("streams/app.py", "judge_credit_files"),
    ("streams/ingest.py", "ingest"),
    ("streams/codecs.py", "decode"),
    ("processors/validation.py", "validate"),
    ("processors/ledger.py", "apply"),
    ("streams/app.py", "_load"),
    ("processors/file_codec.py", "file_from_dict"),
    ("processors/file_codec.py", "file_to_dict"),
    ("processors/snapshot.py", "snapshot"),
    ("streams/app.py", "_json"),
    ("json/__init__.py", "loads"),
    ("processors/fact_codec.py", "fact_from_dict"),
    ("processors/fact_codec.py", "fact_to_dict"),
    ("streams/app.py", "send"),
    ("streams/eos.py", "write_table"),
    ("faust/topics.py", "send"),
    ("aiokafka/producer/producer.py", "send"),
    ("streams/eos.py", "force_commit"),
)


def summarise_cprofile(path: Path) -> CProfileSummary:
    stats = pstats.Stats(str(path))
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]]
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in raw.values())
    components: defaultdict[str, float] = defaultdict(float)
    for (filename, _, function), (_, _, tt, _, _) in raw.items():
        components[component_of(filename, function)] += tt
    selected = []
    for suffix, name in SELECTED_FUNCTIONS:
        calls = 0
        own = cumulative = 0.0
        for (filename, _, function), (_, nc, tt, ct, _) in raw.items():
            if short_path(filename).endswith(suffix) and function == name:
                calls += nc
                own += tt
                cumulative += ct
        if calls:
            selected.append((f"{suffix}:{name}", calls, own, cumulative))
    counts = {
        label: sum(
            cc
            for (filename, _, function), (cc, _, _, _, _) in raw.items()
            if function == name and short_path(filename).endswith(suffix)
        )
        for label, (suffix, name) in COUNTED.items()
    }

    def top(order: str) -> str:
        buffer = io.StringIO()
        ordered = pstats.Stats(str(path), stream=buffer).sort_stats(order)
        ordered.print_stats(TOP_FUNCTIONS)
        text = buffer.getvalue()
        text = text[text.find("   ncalls") :] if "   ncalls" in text else text
        stdlib = f"{sys.base_prefix}/lib/python{sys.version_info[0]}.{sys.version_info[1]}/"
        for prefix in (f"{REPOSITORY}/", f"{stdlib}site-packages/", f"{sys.prefix}/", stdlib):
            text = text.replace(prefix, "")
        return text

    by_component = sorted(components.items(), key=lambda item: item[1], reverse=True)
    return CProfileSummary(total, by_component, top("cumulative"), top("tottime"), selected, counts)


@dataclass
class SpySummary:
    """Wall-clock samples of the worker's threads (py-spy --idle)."""

    threads: dict[str, int]
    """Samples per thread."""
    main_samples: int
    by_component: list[tuple[str, int]]
    """Main thread: samples by the component of the innermost frame."""
    own: list[tuple[str, int]]
    """Main thread: innermost frames."""
    inclusive: list[tuple[str, int]]
    """Main thread: frames anywhere on the stack."""
    seconds: float
    sched: tuple[float, float]
    other_idle: int
    """Samples of the other threads that sat in epoll."""


FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def parse_frame(frame: str) -> tuple[str, str]:
    match = FRAME.match(frame)
    if match is None:
        return frame, ""
    return match["function"], match["file"]


def summarise_spy(path: Path, seconds: float, sched: tuple[float, float]) -> SpySummary:
    threads: Counter[str] = Counter()
    components: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    other_idle = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0].split(": ", 1)[-1]
        threads[thread] += count
        function, filename = parse_frame(frames[-1])
        if thread != "MainThread":
            other_idle += count if component_of(filename, function) == IDLE else 0
            continue
        components[component_of(filename, function)] += count
        own[f"{function} ({filename})"] += count
        for frame in {f"{f} ({p})" for f, p in map(parse_frame, frames[1:])}:
            inclusive[frame] += count
    return SpySummary(
        dict(threads),
        threads.get("MainThread", 0),
        components.most_common(),
        own.most_common(TOP_FUNCTIONS),
        inclusive.most_common(TOP_FUNCTIONS + 15),
        seconds,
        sched,
        other_idle,
    )


def print_spy(spy: SpySummary) -> None:
    total = max(spy.main_samples, 1)
    print(f"\n--- py-spy (wall clock, --idle), {spy.seconds:.0f} s; samples by thread ---")
    for thread, count in spy.threads.items():
        print(f"  {count:>7,}  {thread}")
    print("--- main thread: samples by component of the innermost frame ---")
    for label, count in spy.by_component:
        print(f"  {count / total:6.1%}  {label}")
    print(f"--- main thread: top {TOP_FUNCTIONS} innermost frames ---")
    for frame, count in spy.own:
        print(f"  {count / total:6.1%}  {frame}")
    print("--- main thread: frames anywhere on the stack ---")
    for frame, count in spy.inclusive:
        print(f"  {count / total:6.1%}  {frame}")


def print_cprofile(summary: CProfileSummary) -> None:
    print(f"\n--- cProfile: top {TOP_FUNCTIONS} by cumulative time ---\n{summary.cumulative_text}")
    print(f"--- cProfile: top {TOP_FUNCTIONS} by own time ---\n{summary.own_text}")
    print("--- cProfile: own time by component ---")
    for label, seconds in summary.by_component:
        print(f"  {seconds:8.2f} s {seconds / summary.total_seconds:6.1%}  {label}")
    print("--- cProfile: machinery calls ---")
    for label, count in summary.counts.items():
        print(f"  {count:>10,}  {label}")
    print("--- cProfile: selected functions (calls, own s, cumulative s) ---")
    for name, calls, own, cumulative in summary.selected:
        print(f"  {name:50s} {calls:>10,} {own:8.2f} {cumulative:8.2f}")


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{platform.system()} {platform.release()} ({platform.machine()}), {cpu}, "
        f"os.cpu_count()={os.cpu_count()}; CPython {platform.python_version()}, "
        f"faust-streaming {faust.__version__}, aiokafka {aiokafka.__version__}, "
        f"fastavro {fastavro.__version__}; Apache Kafka {KAFKA_VERSION} (KRaft, one node, "
        "same machine)"
    )


def write_section(section: str) -> None:
    """Replace the section in BENCHMARKS.md, or append it; every other byte stays as it was."""
    text = BENCHMARKS_FILE.read_text(encoding="utf-8") if BENCHMARKS_FILE.exists() else ""
    if not text:
        text = "# Benchmarks\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip("\n") == SECTION_TITLE), None)
    if start is None:
        separator = "\n" if text.endswith("\n") else "\n\n"
        text = text + separator + section
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        after = "".join(lines[end:])
        text = "".join(lines[:start]) + section + ("\n" + after if after else "")
    BENCHMARKS_FILE.write_text(text, encoding="utf-8")


def ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:,.0f} ms"


@dataclass
class Results:
    args: argparse.Namespace
    load: str
    workload: Workload
    baselines: list[BaselineRun] = field(default_factory=list)
    runs: list[WorkerRun] = field(default_factory=list)
    latencies: list[LatencyRun] = field(default_factory=list)
    spy_run: WorkerRun | None = None
    spy: SpySummary | None = None
    profiled: WorkerRun | None = None
    cprofile: CProfileSummary | None = None
    seconds: float = 0.0
    stop_problems: list[tuple[str, str]] = field(default_factory=list)
    """(worker, what went wrong when it was stopped)."""

    @property
    def base(self) -> float:
        return statistics.median(b.rate for b in self.baselines)


def worker_row(run: WorkerRun, base: float) -> str:
    on_cpu, waiting = run.sched_share()
    return (
        f"| worker, {run.store} store, {run.settings}: input events fully judged | "
        f"**{run.judged_rate:,.0f}** | {run.judged_rate / base:.4f} | "
        f"first hop alone {run.first_hop_rate:,.0f}/s; {run.progress.facts_records:,} "
        f"credit-facts records at {run.facts_rate:,.0f}/s; worker {run.cpu_share():.2f} "
        f"cores (main thread on a CPU {on_cpu:.0%} of the time, waiting for one "
        f"{waiting:.0%}); broker {run.cpu_share('broker'):.2f} cores; "
        f"**{run.events_per_cpu_second:,.0f} events per worker CPU-second** |"
    )


def render(results: Results) -> str:
    args, base, main = results.args, results.base, results.runs[0]
    kinds = ", ".join(f"{count:,} {kind}" for kind, count in results.workload.kinds.most_common())
    rows = [
        "| baseline: aiokafka `getmany` (no group, read_committed) + "
        f"`fastavro.schemaless_reader` | {base:,.0f} | 1 | passes: "
        + ", ".join(f"{b.rate:,.0f}" for b in results.baselines)
        + f" records/s (median); {results.baselines[0].decode_errors} bad records fail to "
        "decode |"
    ]
    rows += [worker_row(run, base) for run in results.runs]
    for extra, what in ((results.spy_run, "under py-spy"), (results.profiled, "under cProfile")):
        if extra is not None:
            rows.append(
                f"| worker, memory store, {what} ({extra.inputs:,} events) | "
                f"{extra.judged_rate:,.0f} | {extra.judged_rate / base:.4f} | sampling or "
                "profiling overhead included |"
            )
    verdict = "meets" if main.judged_rate >= TARGET_EVENTS_PER_SECOND else "falls far short of"
    counters = main.counters
    facts_in = counters.get(f'credit_events_in_total{{topic="{CREDIT_FACTS_TOPIC.name}"}}', 0.0)
    snapshots = counters.get(
        f'credit_events_out_total{{topic="{CREDIT_SNAPSHOTS_TOPIC.name}"}}', 0.0
    )
    batch_rows = "\n".join(
        f"| {run.store}, {run.settings} | `{agent}` | {batches:,.0f} | {per_batch:,.1f} | "
        f"{seconds * 1000:,.1f} |"
        for run in results.runs
        for agent, batches, per_batch, seconds in run.batches()
    )
    capacity = main.events_per_cpu_second
    out = [
        f"""{SECTION_TITLE}

Reproduce from the repository root: `{COMMAND} --events {args.events}` ({results.seconds / 60:.0f}
minutes; it starts its own broker on free ports and removes everything it made).

- Date: {datetime.now(UTC):%Y-%m-%d}; machine: {machine_description()}. Broker, worker and
  measuring client share the machine; load average {results.load} when the run started (other
  sessions' tests ran on it at the same time, so the worker often waited for a CPU: see
  "waiting for one" below; events per worker CPU-second is the figure least disturbed by that).
- Workload: {len(results.workload.records):,} input records of seeded simulator traffic
  (seed {args.seed}): {kinds}. Avro with Confluent framing, keyed as docs/upstream-guide.md says
  (plate|colour, decision or licence number), sent with an idempotent producer before the worker
  starts; 4 partitions per topic.
- Worker: `python -m streams.cli worker` as a subprocess (exactly-once), a fresh app id and fresh
  topics for each run. A rate counts from the group's first committed input offset (start-up
  before it took {main.startup_seconds:.1f} s) until its committed offsets pass the last record
  of the three input topics and then of `credit-facts`, i.e. until every input event and every
  fact forwarded from it is judged and committed.

| path | events/s | ratio to baseline | notes |
|---|---:|---:|---|
"""
        + "\n".join(rows)
        + f"""

**Throughput target** (at least {TARGET_EVENTS_PER_SECOND:,} events/s per worker): the worker
{verdict} it: {main.judged_rate:,.0f} events/s, {main.judged_rate / TARGET_EVENTS_PER_SECOND:.1%}
of the target and {main.judged_rate / base:.2%} of the plain consume+decode baseline. Even with a
whole core to itself it would do about {capacity:,.0f} events/s ({1e6 / capacity:,.0f} µs of
worker CPU per input event). Per input event the worker read {facts_in / main.inputs:.2f}
`credit-facts` records (the event's fact plus the violations forwarded to driver, carrier and
loading source) and wrote {snapshots / main.inputs:.2f} snapshots. Committed offsets and
`credit-facts` stayed put for 2 s after each run: {all(r.settled for r in results.runs)}.

In the default run faust logged {len(main.slow_commits)} commits that took longer than the
commit interval ("Timer commit is overlapping", longest {max(main.slow_commits, default=0):.2f} s);
a commit holds the batch lock, so no batch runs meanwhile. Batches as the worker's
`credit_batch_seconds` histogram saw them (time from a batch's first event to its last ack,
lock waits included):

| run | agent | batches | events per batch | ms per batch |
|---|---|---:|---:|---:|
{batch_rows}
"""
    ]
    if results.latencies:
        rows = []
        for lat in results.latencies:
            every, clean = lat.latencies, lat.clean_latencies
            rows.append(
                f"| {lat.rate:,.0f}/s, {lat.setting}: every detection | {len(every):,} | "
                f"{ms(percentile(every, 50))} | {ms(percentile(every, 90))} | "
                f"{ms(percentile(every, 99))} | {ms(max(every, default=math.nan))} | "
                f"sent {lat.sent_events:,} events in {lat.seconds:.0f} s; "
                f"{'first worker' if ' workers,' in lat.setting else 'worker'} "
                f"{lat.worker_cpu_share:.2f} cores, waiting for a CPU {lat.sched[1]:.0%}; last "
                f"snapshot {lat.drain_seconds:.1f} s after the last send; {lat.unmatched} "
                "unmatched |"
            )
            rows.append(
                f"| {lat.rate:,.0f}/s, {lat.setting}: clean detections | {len(clean):,} | "
                f"{ms(percentile(clean, 50))} | {ms(percentile(clean, 90))} | "
                f"{ms(percentile(clean, 99))} | {ms(max(clean, default=math.nan))} | |"
            )
            for kind, values in sorted(lat.trigger_latencies.items()):
                rows.append(
                    f"| {lat.rate:,.0f}/s, {lat.setting}: ADD trigger on a {kind.lower()} file | "
                    f"{len(values):,} | {ms(percentile(values, 50))} | "
                    f"{ms(percentile(values, 90))} | {ms(percentile(values, 99))} | "
                    f"{ms(max(values))} | from its latest evidence event's send |"
                )
        first = results.latencies[0]
        # Judged at the rate when it was run, else at the highest rate run.
        defaults = [lat for lat in results.latencies if lat.setting == first.setting]
        judged = next(
            (lat for lat in defaults if lat.rate == TARGET_RATE),
            max(defaults, key=lambda lat: lat.rate),
        )
        p99 = percentile(judged.latencies, 99)
        ok = "meets" if p99 < TARGET_P99_SECONDS else "misses"
        ok = f"one worker with the defaults {ok} it ({ms(p99)})"
        scaled = [
            lat
            for lat in results.latencies
            if " workers," in lat.setting and lat.rate >= judged.rate
        ]
        for lat in scaled:
            scaled_p99 = percentile(lat.latencies, 99)
            verdict = "meets" if scaled_p99 < TARGET_P99_SECONDS else "misses"
            ok += f"; {lat.setting} {verdict} it ({ms(scaled_p99)})"
        out.append(
            f"""
**Latency**: the memory-store worker of the first run, after it had judged the backlog, gets
new detections (and the penalties that follow some) of {first.vehicles:,} new vehicles, paced
at each rate for {args.latency_seconds:g} s. For each detection: from the producer's `send()`
(then up to 5 ms linger and the append) to the moment a `read_committed` consumer reads the
first snapshot of that vehicle on `credit-snapshots` after the send. "Clean" detections were sent
while no earlier event of the same vehicle was unanswered, so the snapshot is certainly the one
they caused.

| rate and events | count | p50 | p90 | p99 | max | notes |
|---|---:|---:|---:|---:|---:|---|
"""
            + "\n".join(rows)
            + f"""

**Latency target** (p99 under {TARGET_P99_SECONDS:.0f} s at {judged.rate:,.0f} events/s):
{ok}. Where a worker cannot keep up with the rate, the
latency is the backlog's queueing time and grows for as long as the rate lasts; below its
capacity the floor is a batch window (up to 50 ms) per hop plus the transaction commit, which runs
every commit interval and, when it overlaps a batch, waits for it. More workers in the group
(the product's way past one worker: partitions are shared) add capacity, and a shorter commit
interval lowers the floor; "first worker" in the notes is one of them.
"""
        )
    if results.spy is not None and results.cprofile is not None and results.profiled:
        spy, prof = results.spy, results.cprofile
        spy_total = max(spy.main_samples, 1)
        spy_rows = "\n".join(
            f"| {label} | {count / spy_total:.1%} |"
            for label, count in spy.by_component
            if count / spy_total >= 0.005
        )
        prof_rows = "\n".join(
            f"| {label} | {seconds:.1f} | {seconds / prof.total_seconds:.1%} |"
            for label, seconds in prof.by_component
            if seconds / prof.total_seconds >= 0.005
        )
        selected_rows = "\n".join(
            f"| `{name}` | {calls:,} | {own:.2f} | {cumulative:.2f} |"
            for name, calls, own, cumulative in prof.selected
        )
        out.append(
            f"""
**Where the time goes.** Two more memory-store runs of {results.profiled.inputs:,} events each.
(1) py-spy sampled the worker's threads by wall clock (`--idle`, 100 Hz) from the first commit
to the end ({spy.seconds:.0f} s); faust's aiokafka consumer runs in a thread of its own that
was idle in epoll {spy_idle_share(spy):.0%} of its samples; the main thread (agents, producers,
tables, commits) was on a CPU {spy.sched[0]:.0%} of the time and waiting for one
{spy.sched[1]:.0%}. Main thread, by the component of the innermost frame:

| component (py-spy, main thread, wall clock) | share of samples |
|---|---:|
{spy_rows}

(2) cProfile (`python -m cProfile -m streams.cli worker`, stopped with SIGINT) over the whole
process life, main thread only; own time by component ({prof.total_seconds:.1f} s in all, idle
waits included; cProfile's per-call overhead inflates the many small Python functions):

| component (cProfile, own time) | seconds | share |
|---|---:|---:|
{prof_rows}

Selected functions (cProfile; a coroutine's "calls" are its resumptions, and its cumulative
time counts only its own slices, not what it awaits; fastavro's C reader is inside
`streams/codecs.py:decode`):

| function | calls | own s | cumulative s |
|---|---:|---:|---:|
{selected_rows}
"""
        )
    for label, problem in results.stop_problems:
        out.append(
            f"\n**Shutdown:** the `{label}` worker {problem}. The other workers exited within "
            "seconds of their signal.\n"
        )
    out.append("\n" + tried_and_summary(results) + "\n" + SUGGESTIONS)
    return "".join(out)


def spy_idle_share(spy: SpySummary) -> float:
    others = {t: n for t, n in spy.threads.items() if t != "MainThread"}
    return spy.other_idle / max(sum(others.values()), 1) if others else math.nan


MACHINERY = {
    "asyncio (tasks, futures, loop)",
    "faust",
    "mode (faust's service runtime)",
    "aiokafka (protocol, producer, consumer)",
    SOCKET,
}
PRODUCT = {
    "pure rules (processors/, other modules)",
    "credit-file dict codec (processors/file_codec.py)",
    "fact dict codec (processors/fact_codec.py)",
    "JSON (json module, _json)",
    "Avro (fastavro)",
    "our shell (streams/)",
}


def find_run(results: Results, settings_start: str) -> WorkerRun | None:
    return next((r for r in results.runs if r.settings.startswith(settings_start)), None)


def tried_and_summary(results: Results) -> str:
    """What the settings-only variants gave, and the profile in two sentences."""
    lines = [
        "**What was tried with settings** (the code changes are listed after the profile):",
        "",
    ]
    default = results.runs[0]
    big = find_run(results, "batches ≤ 5,000")
    if big is not None:
        lines.append(
            f"- Bigger batches and rarer commits ({big.settings}): "
            f"{big.events_per_cpu_second:,.0f} events per worker CPU-second against "
            f"{default.events_per_cpu_second:,.0f} with the defaults "
            f"(×{ratio(big.events_per_cpu_second, default.events_per_cpu_second):.2f}); "
            f"{big.judged_rate:,.0f} against {default.judged_rate:,.0f} events/s of wall "
            "clock, which also reflects how much CPU the other processes left the worker "
            f"(waiting for a CPU {big.sched_share()[1]:.0%} against "
            f"{default.sched_share()[1]:.0%}). Latency was not measured with these settings."
        )
    rocks = next((r for r in results.runs if r.store.startswith("rocksdb")), None)
    if rocks is not None:
        gain = ratio(rocks.events_per_cpu_second, default.events_per_cpu_second)
        lines.append(
            f"- RocksDB instead of the memory store: {rocks.events_per_cpu_second:,.0f} events "
            f"per worker CPU-second (×{gain:.2f}), "
            f"{rocks.judged_rate:,.0f} events/s of wall clock (waiting for a CPU "
            f"{rocks.sched_share()[1]:.0%}). The store is not what limits the worker."
        )
    default_setting = f"commit every {DEFAULT_COMMIT_SECONDS:g} s"
    fast = [lat for lat in results.latencies if lat.setting != default_setting]
    for lat in fast:
        same = next(
            (o for o in results.latencies if o.rate == lat.rate and o.setting == default_setting),
            None,
        )
        versus = (
            f" against {ms(percentile(same.latencies, 50))} / "
            f"{ms(percentile(same.latencies, 99))} with the default {DEFAULT_COMMIT_SECONDS:g} s"
            if same is not None
            else ""
        )
        lines.append(
            f"- {lat.setting.capitalize()} at {lat.rate:,.0f} events/s: p50 / p99 "
            f"{ms(percentile(lat.latencies, 50))} / {ms(percentile(lat.latencies, 99))}{versus}."
        )
    prof = results.cprofile
    if prof is not None and results.profiled is not None:
        shares = dict(prof.by_component)
        busy = prof.total_seconds - shares.get(IDLE, 0.0)
        machinery = sum(shares.get(label, 0.0) for label in MACHINERY)
        product = sum(shares.get(label, 0.0) for label in PRODUCT)
        inputs = results.profiled.inputs
        produced = results.profiled.counter(
            "credit_events_out_total"
        ) + results.profiled.counters.get(
            f'credit_events_out_total{{topic="{CREDIT_SNAPSHOTS_TOPIC.name}"}}', 0.0
        )  # every snapshot comes with one changelog record of the same file
        per_event = ", ".join(
            f"{count / inputs:,.1f} {label}" for label, count in prof.counts.items()
        )
        micros = 1e6 / default.events_per_cpu_second
        budget = 1e6 / TARGET_EVENTS_PER_SECOND
        lines += [
            "",
            f"**In short:** of the main thread's busy time under cProfile, {machinery / busy:.0%} "
            "is the transport machinery (asyncio callbacks, tasks and futures, faust's send path, "
            f"mode, aiokafka's protocol and producers, socket calls) and {product / busy:.0%} the "
            "product's own work (rules, dict codecs, JSON, Avro, the agents' code); the rest is "
            "the interpreter, builtins, dataclasses, datetime and start-up imports. Per input "
            f"event the worker produced {produced / inputs:.2f} records (facts, snapshots, "
            f"changelog, triggers, dead letters) and ran: {per_event}. At {micros:,.0f} µs of "
            f"worker CPU per event, the machinery's share alone (about "
            f"{micros * machinery / busy:,.0f} µs) is {micros * machinery / busy / budget:.0f} "
            f"times the {budget:.0f} µs per event that {TARGET_EVENTS_PER_SECOND:,} events/s "
            "on one core allow; the product's own code (about "
            f"{micros * product / busy:,.0f} µs) is {micros * product / busy / budget:.0f} times "
            "it. faust alone, on this kind of machine, peaked at 15,000 records/s stateless and "
            "about 5,000 with a table write per record (ANCHORS.md §D); this worker takes its "
            "records past most of faust's per-record path, and the rules' cost per fact is now "
            "the largest share: the target stays out of reach (what is left to try is listed "
            "below).",
        ]
    return "\n".join(lines) + "\n"


SUGGESTIONS = """Code changes made from the profiles (sessions 2 and 3; each measured with a
shorter run of this script on this shared machine, so single figures are noisy):

- Session 2: **bulk sends straight to the transactional producers** (`BatchOutput`), **decoded
  credit files kept between batches**, **orjson**, **transactions committed concurrently**:
  from 413 to about 750 input events/s fully judged.
- Session 3, in order (20,000-event runs; input events fully judged per second):
  1. **Batches stop waiting for the broker.** A batch hands its records to its transaction as
     one record batch per destination partition (aiokafka `send_batch`, closed so it leaves at
     once); the commit awaits and checks the deliveries before it sends the offsets. Batches are
     handed over once no event came for 5 ms (`streams/batching.py`) instead of always after
     the 50 ms window; the broker may hold an empty fetch 50 ms, not faust's fixed 1.5 s.
  2. **The vehicle judged in the first hop** (`CREDIT_JUDGE_IN_PLACE`; off in session 3, when
     the handover test stalled and repeated triggers in 5 of 20 runs with it on: exactly-once
     gaps 8 and 9, fixed in session 4, README). `credit-facts` is partitioned by the subject's
     key, which is the key upstream gives a detection (`plate|colour`), so a detection arrives
     on the partition number of its vehicle's file; faust gives partition *n* of co-partitioned
     topics to one worker, so
     `validate_and_route` can judge it there, in the same transaction. Then only forwards and
     facts keyed otherwise cross `credit-facts`: 0.2 records per input event instead of 1.17.
  3. **Commits get past every transaction marker at once.** faust counted the record after a
     gap into the gap, so on `credit-facts` (written in transactions) each commit got past one
     commit marker only, and the committed offsets fell seconds behind what was handled: the
     worker looked half as fast as it was, and a crash or a handover replayed more (about
     424/s before, 1,023/s after, with items 1 and 2 in).
  4. **Each credit file analysed once, each instant formatted once, each section entry encoded
     once** (identity memos, bounded; evicted with `OrderedDict.popitem`, since
     `next(iter(dict))` after many front deletions walks dead slots): 1,023/s -> 1,844/s.
  5. The default commit interval went from 0.5 s to 0.25 s: at 1,000 events/s one worker's p99
     (with item 2 on) fell from 810 ms to 684 ms (detection to snapshot) and from 1,193 ms to
     700 ms (driver trigger), with no loss of throughput. The tables above are with item 2 off.

- Session 4, in order (10,000-event runs of this script with judging in the first hop off,
  events per worker CPU-second, the figure least disturbed by the other work on the machine):
  1. **Batches taken from the channel's queue** (`streams/batching.py`): the agents no longer
     iterate faust's stream event by event (generator step, sensors, processor, context
     variable, `sleep(0)` per event): 974 -> 1,583.
  2. **Records delivered by a plain await** (`streams/delivery.py`): faust's fetch loop wrapped
     each record's delivery in `wait_first` (two tasks and an `asyncio.wait` per record); it is
     needed only when the delivery could block, which is checked first: 1,583 -> 2,064.
  3. Per-record trifles (a faust setting read per record, a Prometheus mutex per record sent,
     `to_json`'s field lookup per value, `chinese_calendar` validating each date, aiokafka's
     pure-Python murmur2 per snapshot key): a few per cent each. With judging in the first hop
     on, about 2,800 events per worker CPU-second.
  4. **Sends and commits in the background.** aiokafka takes a partition's next record batch
     only once the one before has left, so a flush waited broker round trips under the batch
     lock; sends now run in order behind the lock. The commit then held the lock while the
     broker answered; a timer commit now takes its offsets and deliveries under the lock and
     ends in a task, and records sent meanwhile go into the next transaction. With judging in
     the first hop (`CREDIT_JUDGE_IN_PLACE=true python bench/bench_worker.py --events 10000
     --latency-seconds 0 --skip-rocksdb --skip-variant --skip-profile --no-write`): about 2,800
     -> 3,900. The first fault-test runs with them had one handover that never reached the
     reference outcome (no trigger repeated); in those runs faust's stop also crashed the
     stopping worker's agents (take_ready let StopAsyncIteration out). With that fixed, 6 of 6
     runs of the fault tests (crash and handover, judging in the first hop) passed with no
     liveness restart and no repeat.
  5. Judging in the first hop on by default (item 2 of session 3): the handover test converged
     without a repeat in 15 of 15 runs with it on once gaps 8 and 9 were fixed, and in every
     run of the fault tests since.

What is left, highest expected gain first:

1. **The rules' cost per fact.** Applying a fact re-derives the file's whole analysis
   (components of linked weighings and decisions, then every list rule), so a fact costs in
   proportion to the file's size; carrier files, which receive every vehicle's violations, are
   the largest. The property tests pin the outcome (any order, same result); an incremental
   analysis that keeps components between facts would keep that and cut the largest share of
   the worker's CPU.
2. **The credit file's dict codec and the snapshot** (file_to_dict, about 100 µs for a file not
   seen before, and a snapshot per changed file per batch): a binary encoding of the file, and a
   snapshot written only when it changed, would cut most of it.
3. **faust's per-record path that is left**: the conductor's callback and the event built for
   each record (about 5% of the CPU). Handing a whole fetch to the agent would need a conductor
   of our own.
4. **Write state and snapshots once per commit, not once per batch**, for files changed by more
   than one batch in an interval (hot vehicles, carriers).
5. **Fewer transactional producers** (one per worker with KIP-447 fencing, if the client
   supported it).
"""


# ------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------


def start_spy(worker: Worker, folder: Path) -> tuple[subprocess.Popen[bytes], Path, float]:
    output = folder / f"spy-{worker.label}.txt"
    command = [
        "py-spy", "record", "--idle", "--threads", "--rate", "100", "--format", "raw",
        "--output", str(output), "--pid", str(worker.process.pid),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    return process, output, time.perf_counter()


async def run_benchmark(args: argparse.Namespace, folder: Path) -> Results:
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    started = time.monotonic()
    print(f"building {args.events:,} events (seed {args.seed}) ...", flush=True)
    workload = build_workload(args.events, args.seed)
    print("  " + ", ".join(f"{n:,} {kind}" for kind, n in workload.kinds.most_common()))
    results = Results(args, load, workload)
    kafka = LocalKafka(folder / "kafka")
    workers: list[Worker] = []
    try:
        print("starting Apache Kafka ...", flush=True)
        await asyncio.to_thread(kafka.start)
        broker_pid = int(kafka.pid_file.read_text().strip())
        bootstrap = kafka.bootstrap_servers
        print(f"  ready at {bootstrap} in {kafka.startup_seconds:.1f} s", flush=True)
        await ensure_topics(bootstrap, wait_seconds=60)

        async def fresh_inputs(records: list[tuple[str, bytes | None, bytes]]) -> dict[Any, int]:
            if results.baselines:  # not the first time: start from empty topics
                await reset_topics(bootstrap)
            sent, seconds = await produce(bootstrap, records)
            ends = await end_offsets(bootstrap, input_partitions())
            assert sum(ends.values()) == sent == len(records), (ends, sent)
            print(f"  pre-loaded {sent:,} records in {seconds:.1f} s", flush=True)
            return ends

        async def run_baseline() -> None:
            run = await baseline(bootstrap, input_ends, args.timeout)
            results.baselines.append(run)
            print(
                f"[baseline {len(results.baselines)}] {run.records:,} records in "
                f"{run.seconds:.2f} s: {run.rate:,.0f}/s ({run.decode_errors} decode errors)",
                flush=True,
            )

        input_ends = await fresh_inputs(workload.records)
        await run_baseline()

        variants: list[tuple[str, str, dict[str, str]]] = [("memory", "memory://", {})]
        if not args.skip_rocksdb:
            variants.append(("rocksdb", "rocksdb://", {}))
        if not args.skip_variant:
            variants.append(("memory-big-batches", "memory://", BIG_BATCHES))
        for index, (label, store, env) in enumerate(variants):
            if index:
                input_ends = await fresh_inputs(workload.records)
            worker = start_worker(label, bootstrap, store, folder, extra_env=env)
            workers.append(worker)
            settings = describe_settings(env)
            run = await measure_worker(
                bootstrap, worker, input_ends, broker_pid, args.timeout, settings
            )
            results.runs.append(run)
            print_run(run, results.base)
            if index == 0:
                if args.latency_seconds > 0:
                    rates = [float(rate) for rate in args.latency_rates.split(",") if rate]
                    vehicles = max(400, int(max(rates) * 5))
                    simulator = await latency_traffic(
                        bootstrap, worker, vehicles, args.seed, args.timeout
                    )
                    for rate in rates:
                        print(
                            f"latency: pacing {rate:,.0f} events/s for "
                            f"{args.latency_seconds:g} s ...",
                            flush=True,
                        )
                        latency = await latency_phase(
                            bootstrap, worker, simulator, rate, args.latency_seconds, args.timeout
                        )
                        results.latencies.append(latency)
                        print_latency(latency)
                await asyncio.to_thread(worker.stop)
                # The same records again, with the worker gone: the baseline's drift.
                await run_baseline()
            else:
                await asyncio.to_thread(worker.stop)

        if args.latency_seconds > 0 and args.fast_commit > 0:
            # Tried: commit more often, for the latency floor (settings only).
            await fresh_inputs([])
            interval = f"{args.fast_commit:g}"
            worker = start_worker(
                "fast-commit",
                bootstrap,
                "memory://",
                folder,
                extra_env={"CREDIT_COMMIT_INTERVAL_SECONDS": interval},
            )
            workers.append(worker)
            rate = min(float(rate) for rate in args.latency_rates.split(",") if rate)
            simulator = await latency_traffic(
                bootstrap, worker, max(400, int(rate * 5)), args.seed + 1, args.timeout
            )
            print(f"latency: pacing {rate:,.0f} events/s, commit every {interval} s ...")
            latency = await latency_phase(
                bootstrap,
                worker,
                simulator,
                rate,
                args.latency_seconds,
                args.timeout,
                f"commit every {interval} s",
            )
            results.latencies.append(latency)
            print_latency(latency)
            await asyncio.to_thread(worker.stop)

        if args.latency_seconds > 0 and args.scale_out > 1:
            # More workers in one group share the partitions: the latency at the highest rate.
            await fresh_inputs([])
            interval = f"{args.scale_out_commit:g}"
            env = {"CREDIT_COMMIT_INTERVAL_SECONDS": interval}
            first = start_worker("scale-1", bootstrap, "memory://", folder, extra_env=env)
            group = [first] + [
                start_worker(
                    f"scale-{k}", bootstrap, "memory://", folder, extra_env=env, app_id=first.app_id
                )
                for k in range(2, args.scale_out + 1)
            ]
            workers.extend(group)
            # Pace only once the group has settled: a member joining late would rebalance the
            # partitions mid-phase and measure the rebalance, not the steady state.
            await asyncio.to_thread(wait_group_ready, group, args.timeout)
            rate = max(float(rate) for rate in args.latency_rates.split(",") if rate)
            simulator = await latency_traffic(
                bootstrap, first, max(400, int(rate * 5)), args.seed + 2, args.timeout
            )
            setting = f"{args.scale_out} workers, commit every {interval} s"
            print(f"latency: pacing {rate:,.0f} events/s, {setting} ...", flush=True)
            latency = await latency_phase(
                bootstrap, first, simulator, rate, args.latency_seconds, args.timeout, setting
            )
            results.latencies.append(latency)
            print_latency(latency)
            for worker in group:
                await asyncio.to_thread(worker.stop)

        if not args.skip_profile:
            records = workload.records[: args.profile_events]
            input_ends = await fresh_inputs(records)
            worker = start_worker("spied", bootstrap, "memory://", folder)
            workers.append(worker)
            spy: list[tuple[subprocess.Popen[bytes], Path, float]] = []
            spy_run = await measure_worker(
                bootstrap,
                worker,
                input_ends,
                broker_pid,
                args.timeout,
                on_first_commit=lambda: spy.append(start_spy(worker, folder)),
            )
            process, output, spy_started = spy[0]
            spy_seconds = time.perf_counter() - spy_started
            process.send_signal(signal.SIGINT)
            await asyncio.to_thread(process.wait, 60)
            await asyncio.to_thread(worker.stop)
            results.spy_run = spy_run
            print_run(spy_run, results.base)
            if output.exists() and output.stat().st_size:
                results.spy = summarise_spy(output, spy_seconds, spy_run.sched_share())
                print_spy(results.spy)
            else:
                print(f"py-spy wrote nothing (exit code {process.returncode})")

            input_ends = await fresh_inputs(records)
            worker = start_worker("profiled", bootstrap, "memory://", folder, profile=True)
            workers.append(worker)
            results.profiled = await measure_worker(
                bootstrap, worker, input_ends, broker_pid, args.timeout * 3
            )
            print_run(results.profiled, results.base)
            code = await asyncio.to_thread(worker.stop, signal.SIGINT, 120)
            assert worker.profile_file is not None
            if not worker.profile_file.exists() or worker.profile_file.stat().st_size == 0:
                raise RuntimeError(
                    f"the profile was not written (exit code {code}):\n" + worker.log_tail()
                )
            print(f"\nprofile written by the worker on SIGINT (exit code {code})")
            results.cprofile = summarise_cprofile(worker.profile_file)
            print_cprofile(results.cprofile)
    finally:
        for worker in workers:
            await asyncio.to_thread(worker.stop, signal.SIGTERM, 30)
        results.stop_problems = [(w.label, w.stop_problem) for w in workers if w.stop_problem]
        await asyncio.to_thread(kafka.stop)
    results.seconds = time.monotonic() - started
    print(f"\nbenchmark took {results.seconds:.0f} s", flush=True)
    return results


BIG_BATCHES = {
    "CREDIT_BATCH_MAX_EVENTS": "5000",
    "CREDIT_BATCH_WITHIN_SECONDS": "0.2",
    "CREDIT_COMMIT_INTERVAL_SECONDS": "2.0",
}
"""Tried: bigger batches and rarer commits (settings only, no code change)."""


def describe_settings(env: dict[str, str]) -> str:
    if not env:
        return (
            f"default settings (batches ≤ {DEFAULTS.batch_max_events:,} events / "
            f"{DEFAULTS.batch_within_seconds * 1000:.0f} ms, commit every "
            f"{DEFAULT_COMMIT_SECONDS:g} s)"
        )
    return (
        f"batches ≤ {int(env['CREDIT_BATCH_MAX_EVENTS']):,} events / "
        f"{float(env['CREDIT_BATCH_WITHIN_SECONDS']) * 1000:.0f} ms, commit every "
        f"{float(env['CREDIT_COMMIT_INTERVAL_SECONDS']):g} s"
    )


def json_summary(results: Results) -> dict[str, Any]:
    """The machine-readable result: the first (default) worker run against the baseline."""
    base, main = results.base, results.runs[0]
    rows: list[dict[str, Any]] = [
        {
            "name": f"input events fully judged ({main.store} store, default settings)",
            "value": main.judged_rate,
            "unit": "events/s",
            "baseline": {"name": "aiokafka getmany + fastavro", "value": base, "unit": "records/s"},
            "ratio": main.judged_rate / base,
            "target": f"≥ {TARGET_EVENTS_PER_SECOND:,} events/s",
            "met": main.judged_rate >= TARGET_EVENTS_PER_SECOND,
        }
    ]
    if results.latencies:
        first = results.latencies[0]
        p99 = percentile(first.latencies, 99)
        rows.append(
            {
                "name": f"send → snapshot p99 at {first.rate:,.0f} events/s",
                "value": p99 * 1000,
                "unit": "ms",
                "baseline": None,
                "ratio": None,
                "target": f"< {TARGET_P99_SECONDS * 1000:,.0f} ms",
                "met": p99 < TARGET_P99_SECONDS,
            }
        )
    return {"benchmark": "worker", "results": rows}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="pre-loaded input events")
    parser.add_argument("--seed", type=int, default=7, help="simulator seed")
    parser.add_argument(
        "--latency-rates", default="1000,250", help="paced events/s, comma separated"
    )
    parser.add_argument("--latency-seconds", type=float, default=20.0, help="0 skips latency")
    parser.add_argument(
        "--profile-events", type=int, default=10_000, help="events in each profiled run"
    )
    parser.add_argument(
        "--fast-commit",
        type=float,
        default=0.1,
        help="commit interval of an extra latency run at the lowest rate (0 skips it)",
    )
    parser.add_argument(
        "--scale-out",
        type=int,
        default=2,
        help="workers of one group in an extra latency run at the highest rate (< 2 skips it)",
    )
    parser.add_argument(
        "--scale-out-commit", type=float, default=0.2, help="their commit interval, seconds"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per phase")
    parser.add_argument("--skip-rocksdb", action="store_true")
    parser.add_argument("--skip-variant", action="store_true", help="no big-batch run")
    parser.add_argument("--skip-profile", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (logs)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--json", action="store_true", help="also print one JSON result line")
    parser.add_argument("--save", type=Path, help="also pickle the measurements to this file")
    parser.add_argument(
        "--render-from", type=Path, help="write the section from a --save file; run nothing"
    )
    args = parser.parse_args(argv)
    if args.render_from is not None:
        results = pickle.loads(args.render_from.read_bytes())
        section = render(results)
        print(section)
        if not args.no_write:
            write_section(section)
            print(f"written to {BENCHMARKS_FILE}")
        if args.json:
            print(json.dumps(json_summary(results)))
        return
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    folder = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    try:
        results = asyncio.run(run_benchmark(args, folder))
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    if args.save is not None:
        args.save.write_bytes(pickle.dumps(results))
    section = render(results)
    print("\n" + section)
    if not args.no_write:
        write_section(section)
        print(f"written to {BENCHMARKS_FILE}")
    if args.json:
        print(json.dumps(json_summary(results)))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()

"""The faust stream worker: thin agents around the pure rules, exactly-once on Kafka.

Data flow (topic names in streams/topics.py):

    overload-detections ┐                      ┌→ credit-facts (keyed by subject)
    penalty-decisions   ├─ validate_and_route ─┼→ publication-requests (双公示 outbox)
    licensing-decisions ┘                      └→ <input>.dead-letter
    credit-facts ── judge_credit_files ─┬→ credit-facts (forwarded to carrier, driver, ...)
         (tables subject_to_file,       ├→ list-triggers, enforcement-alerts
          subject_due)                  ├→ audit-records, publication-requests (lifecycle)
                                        └→ credit-snapshots (compacted)

The leader also ticks the lifecycle's clock on every credit-facts partition (streams/clock.py).

Both agents handle events in batches (``take_ready``, streams/batching.py): a batch reads each
credit file once, applies every fact to it in memory, and writes each changed file once, so the
per-event cost is the pure rule, not a table write (ANCHORS.md §D: ~125 µs per faust table write).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import faust
import orjson
from aiokafka import AIOKafkaProducer
from faust.exceptions import NotReady
from prometheus_client import CollectorRegistry

from processors.disclosure import NotPublished, request_to_dict
from processors.fact_codec import fact_from_dict, fact_to_dict, parse_subject, to_json
from processors.facts import Fact, ReviewFact
from processors.file_codec import file_from_dict, file_to_dict
from processors.ledger import CreditFile, Outcome, apply, new_file
from processors.lifecycle import next_due
from processors.policy import PolicyBook, parse_policy_book
from processors.snapshot import snapshot
from sinks.publisher import load_calendar
from streams.batching import take_ready
from streams.clock import CLOCK_KEY, due_keys, parse_tick, send_ticks, subject_partition
from streams.codecs import AvroSerde, WireFormat
from streams.eos import (
    BatchOutput,
    ExactlyOnceApp,
    exactly_once_batch,
    sending_for,
    source_partitions,
    write_table,
)
from streams.ingest import DeadLetter, SourceRecord, dead_letter_value, disclosure_for, ingest
from streams.logs import logging_config
from streams.metrics import WorkerMetrics
from streams.settings import Settings
from streams.state import ExactlyOnceTable
from streams.topics import (
    AUDIT_RECORDS_TOPIC,
    CREDIT_FACTS_TOPIC,
    CREDIT_SNAPSHOTS_TOPIC,
    ENFORCEMENT_ALERTS_TOPIC,
    INPUT_TOPICS,
    LIST_TRIGGERS_TOPIC,
    PUBLICATION_REQUESTS_TOPIC,
    TopicSpec,
    prefixed,
)

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, registry: CollectorRegistry | None = None
) -> tuple[ExactlyOnceApp, WorkerMetrics]:
    """Build the worker app and wire its agents."""
    app = ExactlyOnceApp(
        settings.app_id,
        broker=[f"kafka://{server}" for server in settings.kafka_bootstrap_servers.split(",")],
        store=settings.store,
        # Newly assigned table partitions start empty: nothing uncommitted survives in them.
        Table=ExactlyOnceTable,
        processing_guarantee="exactly_once",
        datadir=str(settings.data_dir),
        topic_partitions=CREDIT_FACTS_TOPIC.partitions,
        topic_replication_factor=1,
        # No standby table replicas: faust 0.15 leaves a transactional producer running for a
        # partition that turns standby, where the new owner fences it (see streams/eos.py).
        # A partition that moves restores its table from the changelog instead.
        table_standby_replicas=0,
        # Topics are created explicitly (create-topics); faust declares only its changelogs.
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=settings.commit_interval_seconds,
        # Commit from the timer only: see streams/eos.py (the fetcher's count-based commit
        # would wait on the batch lock inside the fetch loop).
        broker_commit_every=1_000_000_000,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=max(settings.session_timeout_seconds / 10, 0.5),
        producer_linger=0.005,
        # A batch's records for one partition go as one record batch (streams/eos.py); at the
        # default 16 KiB they were split, and each part waited for the one before to be sent.
        producer_max_batch_size=512 * 1024,
        web_port=settings.worker_web_port,
        web_host=settings.bind_host,
        web_bind=settings.bind_host,
        # Table contents are personal data: never serve them over the worker's web server.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
    )
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms
    registry = registry or CollectorRegistry()
    metrics = WorkerMetrics.create(registry)
    add_operator_pages(app, registry)
    policy_book = parse_policy_book(settings.policy_file.read_text(encoding="utf-8"))
    serde = AvroSerde.with_local_ids(wire_format=WireFormat(settings.wire_format))
    wire_agents(app, settings, metrics, policy_book, serde)
    app.sensors.add(_TimingSensor(metrics))
    app.commit_observers.append(metrics.commit_seconds.observe)

    _time_recoveries(app, metrics)
    return app, metrics


def wire_agents(
    app: ExactlyOnceApp,
    settings: Settings,
    metrics: WorkerMetrics,
    policy_book: PolicyBook,
    serde: AvroSerde,
) -> None:
    """Declare the topics, the table and the agents on ``app``."""
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    inputs = [prefixed(spec, settings.topic_prefix) for spec in INPUT_TOPICS]
    facts_spec = prefixed(CREDIT_FACTS_TOPIC, settings.topic_prefix)

    def topic(spec: TopicSpec) -> Any:
        return app.topic(prefixed(spec, settings.topic_prefix).name, **raw)

    input_topic = app.topic(*(spec.name for spec in inputs), **raw)
    record_for_topic = {spec.name: spec.record or "" for spec in inputs}
    dead_letter_topics = {spec.name: app.topic(spec.dead_letter.name, **raw) for spec in inputs}
    facts_topic = app.topic(facts_spec.name, **raw)
    facts_dead_letter_topic = app.topic(facts_spec.dead_letter.name, **raw)
    triggers_topic = topic(LIST_TRIGGERS_TOPIC)
    alerts_topic = topic(ENFORCEMENT_ALERTS_TOPIC)
    snapshots_topic = topic(CREDIT_SNAPSHOTS_TOPIC)
    publications_topic = topic(PUBLICATION_REQUESTS_TOPIC)
    audit_topic = topic(AUDIT_RECORDS_TOPIC)
    calendar = load_calendar(settings.calendar_dir)
    subject_to_file = app.Table(
        "subject_to_file",
        default=None,
        partitions=CREDIT_FACTS_TOPIC.partitions,
    )  # keys: the subject as text ("KIND:key"); values: file_to_dict; both JSON
    subject_due = app.Table(
        "subject_due",
        default=None,
        partitions=CREDIT_FACTS_TOPIC.partitions,
    )  # keys: the subject as text; values: when its lifecycle next falls due (ISO), if ever
    partitions = CREDIT_FACTS_TOPIC.partitions

    if settings.clock_interval_seconds > 0:
        ticker = _Ticker(settings.kafka_bootstrap_servers)
        app.on_before_shutdown.connect(ticker.stop)

        async def tick_the_clock() -> None:
            await ticker.tick(facts_spec.name, range(partitions), datetime.now(UTC))

        app.timer(settings.clock_interval_seconds, on_leader=True)(tick_the_clock)

    sent_since_count: dict[str, int] = {}  # records sent per topic, counted once per batch

    def send(
        topic: Any, key: bytes, value: bytes, output: BatchOutput, partition: int | None = None
    ) -> None:
        name = topic.get_topic_name()
        output.record(name, key, value, partition)
        sent_since_count[name] = sent_since_count.get(name, 0) + 1

    def count_sent() -> None:
        for name, count in sent_since_count.items():
            metrics.events_out.labels(name).inc(count)
        sent_since_count.clear()

    def send_fact(subject: str, fact: Fact, output: BatchOutput) -> None:
        # Partitioned by the subject's key (streams/clock.py), not by the record key.
        send(
            facts_topic,
            subject.encode(),
            _json(fact_to_dict(fact)),
            output,
            subject_partition(subject, partitions),
        )

    def judged_in_place(source_topic: str) -> bool:
        """Whether this worker owns the credit files of the partitions of ``source_topic``.

        faust assigns partition *n* of co-partitioned topics (same partition count, same
        subscribers) to one worker, so a fact for a subject whose file is on partition *n* of
        ``credit-facts`` can be judged where input partition *n* is read, in its transaction.
        """
        if not settings.judge_in_place:
            return False
        groups = app.assignor
        try:
            return groups.group_for_topic(source_topic) == groups.group_for_topic(facts_spec.name)
        except KeyError:  # no assignment yet (or the agents run without a broker)
            return False

    @app.agent(input_topic, name="validate_and_route")
    async def validate_and_route(stream: Any) -> None:
        async for events in take_ready(
            stream,
            settings.batch_max_events,
            settings.batch_within_seconds,
            settings.batch_linger_seconds,
        ):
            started = time.perf_counter()
            now = datetime.now(UTC)
            async with exactly_once_batch(app, events) as pending:
                for tp, partition_events in source_partitions(events).items():
                    in_place = judged_in_place(tp.topic)
                    judgement = _Judgement(tp.partition, pending, now)
                    metrics.events_in.labels(tp.topic).inc(len(partition_events))
                    with sending_for(tp):
                        for event in partition_events:
                            message = event.message
                            record = _source(event)
                            outcome = ingest(serde, record, record_for_topic[message.topic], now)
                            if isinstance(outcome, DeadLetter):
                                dead_letter(record, outcome, dead_letter_topics, now, pending)
                                continue
                            publication = disclosure_for(outcome.event, calendar, policy_book)
                            if isinstance(publication, NotPublished):
                                metrics.not_published.labels(publication.reason_code).inc()
                            elif publication is not None:
                                # The outbox: the request commits with the decision it comes from.
                                send(
                                    publications_topic,
                                    publication.publication_id.encode(),
                                    _json(request_to_dict(publication)),
                                    pending,
                                )
                            for subject, fact in outcome.facts:
                                subject_text = str(subject)
                                if not (
                                    in_place
                                    and subject_partition(subject_text, partitions) == tp.partition
                                ):
                                    send_fact(subject_text, fact, pending)
                                    continue
                                try:
                                    await judgement.apply(subject_text.encode(), fact)
                                except Exception as exc:
                                    log.exception("fact for %s dead-lettered", subject_text[:12])
                                    letter = _process_dead_letter(exc)
                                    dead_letter(record, letter, dead_letter_topics, now, pending)
                        await judgement.keep()
            metrics.batch_seconds.labels("validate_and_route").observe(
                time.perf_counter() - started
            )
            _observe_batch(app, metrics, "validate", events)
            count_sent()

    def dead_letter(
        record: SourceRecord,
        letter: DeadLetter,
        topics: dict[str, Any],
        now: datetime,
        pending: BatchOutput,
    ) -> None:
        metrics.dead_letters.labels(record.topic, letter.reason_code).inc()
        value = serde.encode("DeadLetter", dead_letter_value(record, letter, now))
        send(topics[record.topic], record.key or b"", value, pending)

    decoded = _DecodedFiles(settings.decoded_files_kept)

    async def emit(key: bytes, outcome: Outcome, pending: BatchOutput) -> None:
        """Send what applying one fact produced."""
        if outcome.stale:
            metrics.stale_events.inc()
        for trigger in outcome.triggers:
            metrics.list_triggers.labels(
                trigger.list_name.value, trigger.rule_id, trigger.action.value
            ).inc()
            send(triggers_topic, key, _json(to_json(trigger)), pending)
        for alert in outcome.alerts:
            metrics.enforcement_alerts.labels(alert.kind.value).inc()
            send(alerts_topic, key, _json(to_json(alert)), pending)
        for subject, forwarded in outcome.forwards:
            send_fact(str(subject), forwarded, pending)
        for record in outcome.audit:
            metrics.lifecycle_transitions.labels(
                record.record.split(":", 1)[0], record.to_state
            ).inc()
            send(audit_topic, key, _json(to_json(record)), pending)
        for request in outcome.publications:
            send(
                publications_topic,
                request.publication_id.encode(),
                _json(request_to_dict(request)),
                pending,
            )

    class _Judgement:
        """The credit files of one table partition that one batch changes.

        Each file is read once, gets every fact of the batch in memory, and is written once.
        """

        def __init__(self, partition: int, pending: BatchOutput, now: datetime) -> None:
            self.partition = partition
            self.pending = pending
            self.now = now
            self.files: dict[bytes, CreditFile] = {}
            self.loaded: dict[bytes, CreditFile] = {}

        def file(self, key: bytes) -> CreditFile:
            file = self.files.get(key)
            if file is None:
                file = decoded.get(key, app.consumer_generation_id) or _load(subject_to_file, key)
                self.loaded[key] = file
            return file

        async def apply(self, key: bytes, fact: Fact, now: datetime | None = None) -> None:
            outcome = apply(self.file(key), fact, policy_book, now or self.now, calendar)
            self.files[key] = outcome.file
            await emit(key, outcome, self.pending)

        async def keep(self) -> None:
            """Write each changed file, its due instant and its snapshot."""
            partition, pending, now = self.partition, self.pending, self.now
            for key, file in self.files.items():
                write_table(subject_to_file, partition, key.decode(), file_to_dict(file), pending)
                decoded.put(key, file, app.consumer_generation_id)
                note_due(key, self.loaded.get(key), file, partition, pending)
                view = snapshot(file, policy_book, now)
                send(snapshots_topic, key, _json(to_json(view)), pending)

    def note_due(
        key: bytes,
        before: CreditFile | None,
        after: CreditFile,
        partition: int,
        pending: BatchOutput,
    ) -> None:
        """Keep ``subject_due`` in step: the clock finds the files to wake through it."""
        due = next_due(after.lifecycle)
        if before is not None and next_due(before.lifecycle) == due:
            return
        text = None if due is None else due.isoformat()
        if subject_due.get(key.decode()) != text:
            write_table(subject_due, partition, key.decode(), text, pending)

    async def tick(event: faust.EventT[Any], judgement: _Judgement) -> None:
        """Wake every file of the partition whose lifecycle is due at the tick's time."""
        try:
            at = parse_tick(event.message.value)
        except ValueError as exc:
            now = datetime.now(UTC)
            letter = _process_dead_letter(exc)
            metrics.dead_letters.labels(facts_spec.name, letter.reason_code).inc()
            value = dead_letter_value(_source(event), letter, now)
            send(
                facts_dead_letter_topic,
                CLOCK_KEY,
                serde.encode("DeadLetter", value),
                judgement.pending,
            )
            return
        metrics.clock_ticks.inc()
        dues = list(subject_due.items())
        for subject in due_keys(dues, judgement.partition, partitions, at):
            await judgement.apply(subject.encode(), ReviewFact(f"clock:{at.isoformat()}", at), at)

    @app.agent(facts_topic, name="judge_credit_files")
    async def judge_credit_files(stream: Any) -> None:
        async for events in take_ready(
            stream,
            settings.batch_max_events,
            settings.batch_within_seconds,
            settings.batch_linger_seconds,
        ):
            started = time.perf_counter()
            now = datetime.now(UTC)
            async with exactly_once_batch(app, events) as pending:
                for tp, partition_events in source_partitions(events).items():
                    judgement = _Judgement(tp.partition, pending, now)
                    metrics.events_in.labels(facts_spec.name).inc(len(partition_events))
                    with sending_for(tp):
                        for event in partition_events:
                            key: bytes = event.message.key or b""
                            if key == CLOCK_KEY:
                                await tick(event, judgement)
                                continue
                            try:
                                fact: Fact = fact_from_dict(
                                    orjson.loads(event.message.value or b"null")
                                )
                                await judgement.apply(key, fact)
                            except Exception as exc:
                                log.exception("fact for %s dead-lettered", key.decode()[:12])
                                letter = _process_dead_letter(exc)
                                metrics.dead_letters.labels(
                                    facts_spec.name, letter.reason_code
                                ).inc()
                                value = dead_letter_value(_source(event), letter, now)
                                send(
                                    facts_dead_letter_topic,
                                    key,
                                    serde.encode("DeadLetter", value),
                                    pending,
                                )
                        await judgement.keep()
            metrics.batch_seconds.labels("judge_credit_files").observe(
                time.perf_counter() - started
            )
            _observe_batch(app, metrics, "judge", events)
            count_sent()


def _observe_batch(
    app: ExactlyOnceApp, metrics: WorkerMetrics, stage: str, events: list[Any]
) -> None:
    """Latency from each record's timestamp, and the lag left behind the batch per partition."""
    now = time.time()
    for event in events:
        metrics.processing_latency.labels(stage).observe(max(0.0, now - event.message.timestamp))
    for tp, partition_events in source_partitions(events).items():
        try:
            highwater = app.consumer.highwater(tp)
        except NotReady:  # no consumer thread (tests of the agents alone): no lag to tell
            return
        if highwater is not None:
            last = partition_events[-1].message.offset
            metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                max(0, highwater - last - 1)
            )


class _TimingSensor(faust.Sensor):
    """Rebalance durations for Prometheus (faust calls sensors around it)."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        super().__init__()
        self._metrics = metrics

    def on_rebalance_start(self, app: Any) -> dict[str, float]:
        return {"started": time.perf_counter()}

    def on_rebalance_end(self, app: Any, state: dict[str, float]) -> None:
        started = (state or {}).get("started")
        if started is not None:
            self._metrics.rebalance_seconds.set(time.perf_counter() - started)


def _time_recoveries(app: ExactlyOnceApp, metrics: WorkerMetrics) -> None:
    async def recovered(*args: Any, **kwargs: Any) -> None:
        recovery = getattr(app.tables, "recovery", None)
        started = getattr(recovery, "_recovery_started_at", None)
        if isinstance(started, float):
            metrics.recovery_seconds.set(time.monotonic() - started)

    app.on_rebalance_complete.connect(recovered)


def add_operator_pages(app: ExactlyOnceApp, registry: CollectorRegistry) -> None:
    """/metrics for Prometheus, /health/live and /health/ready for orchestrators."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health/live")
    async def live(web: Any, request: Any) -> Any:
        return web.json({"status": "live"})

    @app.page("/health/ready")
    async def ready(web: Any, request: Any) -> Any:
        is_ready = bool(app.rebalancing is False and app.consumer_generation_id is not None)
        return web.json(
            {"status": "ready" if is_ready else "starting"}, status=200 if is_ready else 503
        )


def _source(event: faust.EventT[Any]) -> SourceRecord:
    message = event.message
    return SourceRecord(
        message.topic,
        message.partition,
        message.offset,
        message.key,
        message.value,
        tuple(_headers(message.headers)),
    )


def _headers(headers: Any) -> list[tuple[str, bytes | None]]:
    if not headers:
        return []
    items = headers.items() if isinstance(headers, dict) else headers
    return [(str(key), value) for key, value in items]


def _process_dead_letter(exc: Exception) -> DeadLetter:
    # The message names the error type only: values may hold personal data.
    return DeadLetter("PROCESSING_FAILED", f"{type(exc).__name__} while applying a fact", "PROCESS")


def _load(table: Any, key: bytes) -> CreditFile:
    # Table keys are the subject as text: the table's changelog encodes keys as JSON, and a
    # restarted worker restores them from there.
    subject = key.decode()
    stored = table.get(subject)
    if stored is None:
        return new_file(parse_subject(subject))
    return file_from_dict(stored)


def _json(value: Any) -> bytes:
    return orjson.dumps(value)  # JSON-safe values only: the same text as json.dumps, faster


class _DecodedFiles:
    """Credit files as objects, as the worker last wrote them: skips decoding the table's dict.

    Valid only for the consumer generation it was filled in: a rebalance may hand a partition
    to another worker and back, so a new generation starts empty. Bounded: the oldest entries
    go first.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._files: OrderedDict[bytes, CreditFile] = OrderedDict()
        self._generation: object = None

    def get(self, key: bytes, generation: object) -> CreditFile | None:
        if generation != self._generation:
            self._files.clear()
            self._generation = generation
            return None
        return self._files.get(key)

    def put(self, key: bytes, file: CreditFile, generation: object) -> None:
        if generation != self._generation:
            self._files.clear()
            self._generation = generation
        files = self._files
        files.pop(key, None)
        files[key] = file
        if len(files) > self._limit:
            files.popitem(last=False)


def run_worker(settings: Settings) -> None:
    """Run a worker until it is stopped (SIGTERM or Ctrl-C)."""
    app, _ = create_app(settings)
    log.info("starting worker with settings %s", settings.as_dict())
    # faust replaces the root logger's handlers when it starts: hand it the masked JSON ones.
    worker = faust.Worker(app, loglevel="info", quiet=True, logging_config=logging_config("worker"))
    worker.execute_from_commandline()


class _Ticker:
    """The leader's clock: a plain idempotent producer, started on the first tick."""

    def __init__(self, bootstrap_servers: str) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._producer: AIOKafkaProducer | None = None

    async def tick(self, topic: str, partitions: Iterable[int], at: datetime) -> None:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap_servers, enable_idempotence=True
            )
            await producer.start()
            self._producer = producer
        try:
            await send_ticks(self._producer, topic, partitions, at)
        except Exception:
            # The next tick tries again: a late tick only delays what falls due.
            log.warning("clock tick at %s not sent", at.isoformat(), exc_info=True)

    async def stop(self, *args: Any, **kwargs: Any) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

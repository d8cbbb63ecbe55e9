"""Prometheus metrics of the stream worker, in one place, on an injected registry.

Names follow Prometheus conventions (base units, ``_total`` counters, ``_seconds``); the
catalogue is the one the alerts (ops/prometheus/alerts.yml) and the dashboard use.
"""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class WorkerMetrics(NamedTuple):
    """What a stream worker exports."""

    events_in: Counter
    events_out: Counter
    dead_letters: Counter
    processing_latency: Histogram
    list_triggers: Counter
    enforcement_alerts: Counter
    batch_seconds: Histogram
    stale_events: Counter
    consumer_lag: Gauge
    not_published: Counter
    lifecycle_transitions: Counter
    clock_ticks: Counter
    commit_seconds: Histogram
    rebalance_seconds: Gauge
    recovery_seconds: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> WorkerMetrics:
        """Register every worker metric on ``registry``."""
        return cls(
            events_in=Counter(
                "credit_events_in",
                "Records read, by topic.",
                ["topic"],
                registry=registry,
            ),
            events_out=Counter(
                "credit_events_out",
                "Records written, by topic.",
                ["topic"],
                registry=registry,
            ),
            dead_letters=Counter(
                "credit_dead_letters",
                "Records sent to a dead-letter topic, by source topic and reason code.",
                ["topic", "reason"],
                registry=registry,
            ),
            processing_latency=Histogram(
                "credit_processing_latency_seconds",
                "From a record's timestamp (its append, or the upstream's event time) to its "
                "outputs being handed to the transaction, by stage (validate, judge).",
                ["stage"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            list_triggers=Counter(
                "credit_list_triggers",
                "List triggers raised, by list, rule and action.",
                ["list", "rule", "action"],
                registry=registry,
            ),
            enforcement_alerts=Counter(
                "credit_enforcement_alerts",
                "Alerts for enforcement (e.g. imminent blacklisting), by kind.",
                ["kind"],
                registry=registry,
            ),
            batch_seconds=Histogram(
                "credit_batch_seconds",
                "Time to handle one batch, sends and acks included, by agent.",
                ["agent"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            stale_events=Counter(
                "credit_stale_events",
                "Facts older than every window: recorded, not judged.",
                registry=registry,
            ),
            consumer_lag=Gauge(
                "credit_consumer_lag_messages",
                "Records not yet read, by topic and partition.",
                ["topic", "partition"],
                registry=registry,
            ),
            not_published=Counter(
                "credit_decisions_not_published",
                "Decisions that 双公示 does not publish, by reason (warning only, minor, ...).",
                ["reason"],
                registry=registry,
            ),
            lifecycle_transitions=Counter(
                "credit_lifecycle_transitions",
                "State changes of list entries, objections, repairs and decisions, by record kind "
                "(entry, objection, repair, decision) and new state; objections that turn OVERDUE "
                "passed their response deadline.",
                ["record", "to_state"],
                registry=registry,
            ),
            clock_ticks=Counter(
                "credit_clock_ticks",
                "Lifecycle clock ticks handled (streams/clock.py).",
                registry=registry,
            ),
            commit_seconds=Histogram(
                "credit_transaction_commit_seconds",
                "Time to commit the consumed offsets and the transactions they close.",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            rebalance_seconds=Gauge(
                "credit_rebalance_seconds",
                "Duration of the last consumer-group rebalance this worker took part in.",
                registry=registry,
            ),
            recovery_seconds=Gauge(
                "credit_recovery_seconds",
                "Duration of the last table recovery (changelog replay) after an assignment.",
                registry=registry,
            ),
        )

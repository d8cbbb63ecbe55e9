"""Prometheus metrics of the query API, on an injected registry.

The series every request touches (requests, their durations, subjects looked up) are
:class:`LocalCounter` and :class:`LocalHistogram`: the same ``labels(...)``, ``inc`` and
``observe`` as ``prometheus_client``'s, and the same exposition (names, help, labels, buckets,
``_created``), but their children are plain numbers, read when ``/metrics`` is scraped.
``prometheus_client`` takes a lock and walks the buckets in Python on every call, about 2.5 µs a
request in all, which the API's profile showed; the API updates its metrics from one event-loop
thread only, so it needs no lock.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

__all__ = ["REQUEST_BUCKETS", "ApiMetrics", "LocalCounter", "LocalHistogram"]

REQUEST_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Request durations: the target is a p99 under 5 ms."""


class _Family(Collector):
    """A metric with labels whose children live in this process; one thread updates them."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        registry.register(self)

    def _label_values(self, values: tuple[str, ...], named: dict[str, str]) -> tuple[str, ...]:
        if named:
            if values or set(named) != set(self.labelnames):
                raise ValueError(f"{self.name}: expected the labels {self.labelnames}")
            values = tuple(named[label] for label in self.labelnames)
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected the labels {self.labelnames}")
        return tuple(str(value) for value in values)


class CounterChild:
    """One series of a :class:`LocalCounter`."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (not negative)."""
        if amount < 0:
            raise ValueError("a counter only goes up")
        self.value += amount


class LocalCounter(_Family):
    """A counter with labels, as ``prometheus_client.Counter`` exposes one."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry
    ) -> None:
        super().__init__(name, documentation, labelnames, registry)
        self._children: dict[tuple[str, ...], CounterChild] = {}

    def labels(self, *values: str, **named: str) -> CounterChild:
        """The series of these label values (created at 0 the first time)."""
        key = self._label_values(values, named)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = CounterChild()
        return child

    def describe(self) -> list[Metric]:
        return [CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self._children.items()):
            family.add_metric(values, child.value, created=child.created)
        yield family


class HistogramChild:
    """One series of a :class:`LocalHistogram`."""

    __slots__ = ("bounds", "counts", "created", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        """Observations per bucket (not cumulative); the last is above the highest bound."""
        self.total = 0.0
        """Sum of the observations."""
        self.created = time.time()

    def observe(self, amount: float) -> None:
        """One observation."""
        self.counts[bisect.bisect_left(self.bounds, amount)] += 1
        self.total += amount


class LocalHistogram(_Family):
    """A histogram with labels, as ``prometheus_client.Histogram`` exposes one."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
        buckets: Sequence[float],
    ) -> None:
        super().__init__(name, documentation, labelnames, registry)
        self._bounds = tuple(sorted(float(b) for b in buckets))
        # As prometheus_client writes them: 0.0005, 1.0, +Inf.
        self._le = (*(str(bound) for bound in self._bounds), "+Inf")
        self._children: dict[tuple[str, ...], HistogramChild] = {}

    def labels(self, *values: str, **named: str) -> HistogramChild:
        """The series of these label values (created empty the first time)."""
        key = self._label_values(values, named)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = HistogramChild(self._bounds)
        return child

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self._children.items()):
            cumulative: list[tuple[str, float]] = []
            seen = 0
            for le, count in zip(self._le, child.counts, strict=True):
                seen += count
                cumulative.append((le, float(seen)))
            family.add_metric(values, cumulative, child.total)
            labels = dict(zip(self.labelnames, values, strict=True))
            family.samples.append(Sample(f"{self.name}_created", labels, child.created))
        yield family


class ApiMetrics(NamedTuple):
    """What the query API exports."""

    requests: LocalCounter
    """credit_api_requests_total{route,status}."""
    request_seconds: LocalHistogram
    """credit_api_request_seconds{route}."""
    identifiers: LocalCounter
    """credit_api_identifiers_total{kind,known}: subjects looked up."""
    store_errors: Counter
    """credit_api_store_errors_total{reason}: 503 answers, Redis down or the store loading."""

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ApiMetrics:
        """Register every API metric on ``registry``."""
        return cls(
            requests=LocalCounter(
                "credit_api_requests",
                "Requests answered, by route template and HTTP status.",
                ["route", "status"],
                registry,
            ),
            request_seconds=LocalHistogram(
                "credit_api_request_seconds",
                "Time to answer a request, by route template.",
                ["route"],
                registry,
                REQUEST_BUCKETS,
            ),
            identifiers=LocalCounter(
                "credit_api_identifiers",
                "Subjects looked up, by kind and whether the store knows them.",
                ["kind", "known"],
                registry,
            ),
            store_errors=Counter(
                "credit_api_store_errors",
                "Lookups answered 503: Redis down (unavailable) or the store loading (not_ready).",
                ["reason"],
                registry=registry,
            ),
        )

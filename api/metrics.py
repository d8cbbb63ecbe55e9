"""Prometheus metrics of the query API, on an injected registry."""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Histogram

REQUEST_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Request durations: the target is a p99 under 5 ms."""


class ApiMetrics(NamedTuple):
    """What the query API exports."""

    requests: Counter
    """credit_api_requests_total{route,status}."""
    request_seconds: Histogram
    """credit_api_request_seconds{route}."""
    identifiers: Counter
    """credit_api_identifiers_total{kind,known}: subjects looked up."""
    store_errors: Counter
    """credit_api_store_errors_total{reason}: 503 answers, Redis down or the store loading."""

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ApiMetrics:
        """Register every API metric on ``registry``."""
        return cls(
            requests=Counter(
                "credit_api_requests",
                "Requests answered, by route template and HTTP status.",
                ["route", "status"],
                registry=registry,
            ),
            request_seconds=Histogram(
                "credit_api_request_seconds",
                "Time to answer a request, by route template.",
                ["route"],
                buckets=REQUEST_BUCKETS,
                registry=registry,
            ),
            identifiers=Counter(
                "credit_api_identifiers",
                "Subjects looked up, by kind and whether the store knows them.",
                ["kind", "known"],
                registry=registry,
            ),
            store_errors=Counter(
                "credit_api_store_errors",
                "Lookups answered 503: Redis down (unavailable) or the store loading (not_ready).",
                ["reason"],
                registry=registry,
            ),
        )

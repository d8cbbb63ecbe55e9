"""Prometheus metrics of the credit website, on an injected registry."""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Histogram

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class WebsiteMetrics(NamedTuple):
    """What the website exports."""

    publications: Counter
    """``credit_website_publications_total{kind,action}``: publication API outcomes."""
    requests: Counter
    """``credit_website_requests_total{route,status}``: every HTTP request."""
    request_duration: Histogram
    """``credit_website_request_duration_seconds{route}``."""

    @classmethod
    def create(cls, registry: CollectorRegistry) -> WebsiteMetrics:
        """Register every website metric on ``registry``."""
        return cls(
            publications=Counter(
                "credit_website_publications",
                "Publication API requests by kind (penalty, licensing, blacklist, redlist or "
                "unknown) and action (created, replaced, republished, withdrawn, stale, "
                "not_found, replayed, rejected).",
                ["kind", "action"],
                registry=registry,
            ),
            requests=Counter(
                "credit_website_requests",
                "HTTP requests by route template (not the raw path) and status code.",
                ["route", "status"],
                registry=registry,
            ),
            request_duration=Histogram(
                "credit_website_request_duration_seconds",
                "Time to answer an HTTP request, by route template.",
                ["route"],
                buckets=REQUEST_BUCKETS,
                registry=registry,
            ),
        )

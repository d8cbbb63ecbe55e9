"""The API's request metrics (api/metrics.py) expose what prometheus_client's would, and the
audit clock (api/app.py) formats time as before."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from api.app import _AuditClock
from api.metrics import REQUEST_BUCKETS, ApiMetrics, LocalCounter, LocalHistogram


def _without_created(exposition: bytes) -> str:
    """The exposition less its ``_created`` series (timestamps of when each series began)."""
    return "\n".join(line for line in exposition.decode().splitlines() if "_created" not in line)


def test_local_metrics_expose_what_prometheus_client_would() -> None:
    """Same names, help, types, labels, buckets, counts and sums."""
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    their_counter = Counter(
        "credit_api_requests", "Requests.", ["route", "status"], registry=theirs
    )
    their_histogram = Histogram(
        "credit_api_request_seconds", "Time.", ["route"], buckets=REQUEST_BUCKETS, registry=theirs
    )
    our_counter = LocalCounter("credit_api_requests", "Requests.", ["route", "status"], ours)
    our_histogram = LocalHistogram(
        "credit_api_request_seconds", "Time.", ["route"], ours, REQUEST_BUCKETS
    )
    observations = [0.0001, 0.0005, 0.0007, 0.002, 0.0049, 0.3, 2.5, 7.0]
    for counter, histogram in ((their_counter, their_histogram), (our_counter, our_histogram)):
        for n, seconds in enumerate(observations):
            route = "/v1/vehicles/{plate}" if n % 3 else "/v1/lookup"
            counter.labels(route, "200" if n % 4 else "503").inc()
            histogram.labels(route).observe(seconds)
        counter.labels(route="/v1/audit", status="401").inc(2)
        histogram.labels(route="/v1/audit")  # a series made, nothing observed
    assert _without_created(generate_latest(ours)) == _without_created(generate_latest(theirs))
    created = re.findall(r"^(\w+_created)\{", generate_latest(ours).decode(), re.MULTILINE)
    assert set(created) == {"credit_api_requests_created", "credit_api_request_seconds_created"}


def test_local_metrics_refuse_other_labels_and_negative_increments() -> None:
    metrics = ApiMetrics.create(CollectorRegistry())
    with pytest.raises(ValueError, match="labels"):
        metrics.requests.labels("/v1/lookup")
    with pytest.raises(ValueError, match="labels"):
        metrics.request_seconds.labels(path="/v1/lookup")
    with pytest.raises(ValueError, match="only goes up"):
        metrics.identifiers.labels("vehicle", "true").inc(-1)


def test_the_audit_clock_gives_utc_milliseconds_as_isoformat_did() -> None:
    clock = _AuditClock()
    before = datetime.now(UTC)
    at = clock()
    after = datetime.now(UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", at)
    parsed = datetime.fromisoformat(at)
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= parsed <= after

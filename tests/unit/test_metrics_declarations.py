"""docs/metrics.md against the code: each process declares exactly its rows, with their types and
label names, and every name follows the naming rules. The running processes are checked by
tests/integration/test_metrics_catalogue.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from api.metrics import ApiMetrics
from sinks.publisher import PublisherMetrics
from sinks.serving_store import ServingStoreMetrics
from streams.metrics import WorkerMetrics
from tests.metrics_catalogue import (
    PROCESSES,
    catalogue_of,
    catalogue_problems,
    load_catalogue,
    naming_problems,
    parse_exposition,
)
from website.metrics import WebsiteMetrics

DECLARATIONS: dict[str, Callable[[CollectorRegistry], Any]] = {
    "worker": WorkerMetrics.create,
    "serving-store": ServingStoreMetrics.create,
    "api": ApiMetrics.create,
    "publisher": PublisherMetrics.create,
    "website": WebsiteMetrics.create,
}
"""Where each process's metrics are declared (the process registers them on its registry)."""


def _exposed_name(metric: Any) -> tuple[str, str]:
    described = metric.describe()[0]
    suffix = "_total" if described.type == "counter" else ""
    return described.name + suffix, described.type


@pytest.mark.parametrize("process", PROCESSES)
def test_each_process_declares_exactly_its_catalogue_rows(process: str) -> None:
    """Names and types of the process's metrics class are its rows of docs/metrics.md."""
    metrics = DECLARATIONS[process](CollectorRegistry())
    declared = dict(_exposed_name(metric) for metric in metrics)
    expected = {name: e.type for name, e in catalogue_of(process, load_catalogue()).items()}
    assert declared == expected


@pytest.mark.parametrize("process", PROCESSES)
def test_each_metric_has_the_label_names_of_its_row(process: str) -> None:
    """One series per metric, made with the row's label names, is all the metric has."""
    registry = CollectorRegistry()
    catalogue = load_catalogue()
    for metric in DECLARATIONS[process](registry):
        entry = catalogue[_exposed_name(metric)[0]]
        if entry.labels:
            # prometheus_client refuses label names other than the declared ones.
            metric.labels(**dict.fromkeys(entry.labels, "x"))
    for name, family in parse_exposition(generate_latest(registry).decode()).items():
        assert family.label_sets() == {frozenset(catalogue[name].labels)}, name


def test_every_catalogue_row_follows_the_naming_rules() -> None:
    """Counters end in _total, durations in _seconds, and so on (docs/metrics.md)."""
    problems = [
        problem
        for entry in load_catalogue().values()
        for problem in naming_problems(entry.name, entry.type, frozenset(entry.labels))
    ]
    assert problems == []


def test_every_catalogue_row_names_known_processes_and_types() -> None:
    """A typo in the table is caught here rather than as a missing metric."""
    for entry in load_catalogue().values():
        assert set(entry.processes) <= set(PROCESSES), entry
        assert entry.type in {"counter", "gauge", "histogram", "summary", "info"}, entry
        assert entry.meaning, entry


@pytest.mark.parametrize(
    ("name", "kind", "labels", "problem"),
    [
        ("credit_events_in_total", "counter", {"topic"}, None),
        ("credit_consumer_lag_messages", "gauge", {"topic", "partition"}, None),
        ("process_start_time_seconds", "gauge", set(), None),
        ("process_cpu_seconds_total", "counter", set(), None),
        ("process_resident_memory_bytes", "gauge", set(), None),
        ("python_gc_objects_collected_total", "counter", {"generation"}, None),
        ("credit_events_in", "counter", set(), "a counter ends in _total"),
        ("credit_pending_total", "gauge", set(), "only a counter ends in _total"),
        ("credit_commit_latency_ms", "histogram", set(), "ends in _seconds, _bytes or _ratio"),
        ("credit_commit_latency", "gauge", set(), "a duration is in seconds"),
        ("credit_events_runtime_ms", "gauge", set(), "'ms' is not a base unit"),
        ("credit_batch_size", "gauge", set(), "a size is in bytes"),
        ("credit_cache_hit_percent", "gauge", set(), "a unit-less ratio ends in _ratio"),
        ("credit_cache_hit_ratio", "gauge", set(), None),
        ("creditEventsIn_total", "counter", set(), "not snake_case"),
        ("faust_events_total", "counter", set(), "starts with credit_"),
        ("credit_events_total", "counter", {"Topic"}, "label 'Topic'"),
        ("credit_events_total", "counter", {"__name"}, "is reserved"),
    ],
)
def test_naming_rules(name: str, kind: str, labels: set[str], problem: str | None) -> None:
    """The rules the catalogue test applies, one case each."""
    found = naming_problems(name, kind, frozenset(labels))
    if problem is None:
        assert found == []
    else:
        assert any(problem in p for p in found), found


def _website_page(extra: Callable[[CollectorRegistry], object] | None = None) -> str:
    """A /metrics page of the website's metrics, each with a series, plus ``extra``."""
    registry = CollectorRegistry()
    metrics = WebsiteMetrics.create(registry)
    metrics.publications.labels(kind="penalty", action="created").inc()
    metrics.requests.labels(route="/", status="200").inc()
    metrics.request_duration.labels(route="/").observe(0.01)
    if extra is not None:
        extra(registry)
    return generate_latest(registry).decode()


def _problems(page: str, expected: frozenset[str] = frozenset()) -> list[str]:
    return catalogue_problems("website", parse_exposition(page), load_catalogue(), expected)


def test_a_page_that_matches_the_catalogue_has_no_problems() -> None:
    """The checker the integration test uses passes the website's own metrics."""
    assert _problems(_website_page()) == []


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (
            lambda r: Counter("credit_website_logins", "Logins.", registry=r).inc(),
            "serves credit_website_logins_total, catalogued for nowhere: add it",
        ),
        (
            lambda r: Counter("credit_api_requests", "x", ["route", "status"], registry=r),
            "serves credit_api_requests_total, catalogued for api: add it",
        ),
        (
            lambda r: Histogram("credit_website_render_ms", "x", registry=r).observe(1),
            "credit_website_render_ms: a histogram ends in _seconds, _bytes or _ratio",
        ),
    ],
)
def test_the_checker_reports_what_the_catalogue_does_not_have(
    extra: Callable[[CollectorRegistry], object], problem: str
) -> None:
    """An undocumented metric, one of another process, and a badly named one are reported."""
    found = _problems(_website_page(extra))
    assert any(problem in p for p in found), found


def test_the_checker_reports_wrong_labels_types_and_missing_rows() -> None:
    """A row served with other label names, another type, or not at all is reported."""
    page = _website_page()
    relabelled = page.replace('route="/",status="200"', 'path="/",status="200"')
    assert any(
        "credit_website_requests_total has a series labelled ['path', 'status']" in p
        for p in _problems(relabelled)
    )
    retyped = page.replace(
        "# TYPE credit_website_publications_total counter",
        "# TYPE credit_website_publications_total gauge",
    )
    assert any("credit_website_publications_total is a gauge" in p for p in _problems(retyped))
    without = "\n".join(
        line for line in page.splitlines() if "credit_website_request_duration" not in line
    )
    assert "website: credit_website_request_duration_seconds is not served" in _problems(without)


def test_the_checker_reports_a_metric_without_the_series_the_traffic_should_make() -> None:
    """A declared metric with no series fails only when the test's traffic should have made one."""
    registry = CollectorRegistry()
    WebsiteMetrics.create(registry)  # declared, never used: families without series
    page = generate_latest(registry).decode()
    assert _problems(page) == []
    assert _problems(page, frozenset({"credit_website_requests_total"})) == [
        "website: credit_website_requests_total has no series after the traffic"
    ]

"""Test harness: a real Apache Kafka broker and a real Redis, started once per session.

Integration tests ask for ``kafka`` or ``redis_service``; the first request starts the service (or
uses ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` when given). A service that cannot start fails
the run with the reason: these tests never skip, in CI or anywhere else.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ops.services import LocalKafka, LocalRedis, ServiceError


@dataclass(frozen=True)
class KafkaService:
    """A broker the tests can use."""

    bootstrap_servers: str
    local: LocalKafka | None
    """The broker this harness started, or None when one was given."""


@dataclass(frozen=True)
class RedisService:
    """A Redis the tests can use."""

    url: str
    local: LocalRedis | None


def _say(config: pytest.Config, line: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)


@pytest.fixture(scope="session")
def service_run_dir() -> Iterator[Path]:
    """A folder for the session's service data, removed at the end."""
    with tempfile.TemporaryDirectory(prefix="credit-transport-test-") as folder:
        yield Path(folder)


@pytest.fixture(scope="session")
def kafka(pytestconfig: pytest.Config, service_run_dir: Path) -> Iterator[KafkaService]:
    """The real Kafka broker of this session."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        _say(pytestconfig, f"[harness] using Kafka at {given} (KAFKA_BOOTSTRAP_SERVERS)")
        yield KafkaService(given, None)
        return
    broker = LocalKafka(service_run_dir / "kafka")
    _say(pytestconfig, "[harness] starting Apache Kafka (KRaft, single node) on loopback ...")
    try:
        broker.start()
    except ServiceError as exc:
        pytest.fail(f"the Kafka broker could not start: {exc}", pytrace=False)
    _say(
        pytestconfig,
        f"[harness] Kafka ready at {broker.bootstrap_servers} in {broker.startup_seconds:.1f} s",
    )
    try:
        yield KafkaService(broker.bootstrap_servers, broker)
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def redis_service(pytestconfig: pytest.Config, service_run_dir: Path) -> Iterator[RedisService]:
    """The real Redis of this session."""
    given = os.environ.get("REDIS_URL")
    if given:
        _say(pytestconfig, f"[harness] using Redis at {given} (REDIS_URL)")
        yield RedisService(given, None)
        return
    server = LocalRedis(service_run_dir / "redis")
    _say(pytestconfig, "[harness] starting Redis on loopback ...")
    try:
        server.start()
    except ServiceError as exc:
        pytest.fail(f"Redis could not start: {exc}", pytrace=False)
    _say(pytestconfig, f"[harness] Redis ready at {server.url} in {server.startup_seconds:.2f} s")
    try:
        yield RedisService(server.url, server)
    finally:
        server.stop()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A name no other test uses, for topics, groups and app ids."""
    stem = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")[:40]
    return f"t-{stem}-{uuid.uuid4().hex[:8]}-{int(time.time())}"

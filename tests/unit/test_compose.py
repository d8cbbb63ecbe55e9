"""The production-like deployment, checked statically: no Docker engine runs here.

Covers docker-compose.yml, the Dockerfile, Prometheus (scrape config and alerts), the Grafana
provisioning and dashboard, and the planning half of streams/admin.py.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka.errors import (
    InvalidReplicationFactorError,
    NotControllerError,
    TopicAlreadyExistsError,
)

from streams.admin import describe_drift, plan_topics, topic_failures
from streams.topics import Cleanup, TopicSpec, all_topics

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
PROMETHEUS_DIR = REPO / "ops" / "prometheus"
GRAFANA_DIR = REPO / "ops" / "grafana"
DASHBOARD_FILE = GRAFANA_DIR / "dashboards" / "credit-transport.json"

CLI = "credit-transport"

EXPECTED_SUBCOMMANDS = frozenset(
    {"worker", "serving-store", "api", "publisher", "website", "create-topics", "simulate"}
)
"""Subcommands of the console script that the compose file may use (when streams.cli is absent)."""

REQUIRED_SERVICES = frozenset(
    {
        "kafka",
        "create-topics",
        "redis",
        "worker",
        "serving-store",
        "api",
        "publisher",
        "website",
        "prometheus",
        "grafana",
    }
)

LONG_RUNNING_PRODUCT_SERVICES = ("worker", "serving-store", "api", "publisher", "website")
"""Product processes that run until stopped: each has a readiness check and is scraped."""

METRIC_CATALOGUE = {
    "credit_events_in_total": "counter",
    "credit_events_out_total": "counter",
    "credit_dead_letters_total": "counter",
    "credit_processing_latency_seconds": "histogram",
    "credit_consumer_lag_messages": "gauge",
    "credit_transaction_commit_seconds": "histogram",
    "credit_list_triggers_total": "counter",
    "credit_serving_store_lag_seconds": "gauge",
    "credit_api_requests_total": "counter",
    "credit_api_request_seconds": "histogram",
    "credit_publications_pending": "gauge",
    "credit_publications_at_risk": "gauge",
    "credit_publications_overdue": "gauge",
    "credit_publication_delivery_seconds": "histogram",
    "credit_provisional_deadlines": "gauge",
    "credit_recovery_seconds": "gauge",
    "credit_rebalance_seconds": "gauge",
}
"""The metrics the product exports, by exposed name, and their types."""

PROMQL_FUNCTIONS = frozenset(
    {
        "absent",
        "avg",
        "avg_over_time",
        "clamp_min",
        "count",
        "histogram_quantile",
        "increase",
        "irate",
        "max",
        "max_over_time",
        "min",
        "rate",
        "sum",
        "topk",
    }
)
PROMQL_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset"})


# ---------------------------------------------------------------------------------------------
# helpers


@cache
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def built_from_repo(service: dict[str, Any]) -> bool:
    build = service.get("build")
    context = build.get("context") if isinstance(build, dict) else build
    return context == "."


def repo_image_services() -> list[str]:
    return [name for name, service in services().items() if built_from_repo(service)]


def kafka_clients() -> list[str]:
    return [
        name
        for name in repo_image_services()
        if "CREDIT_KAFKA_BOOTSTRAP_SERVERS" in (services()[name].get("environment") or {})
    ]


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def healthcheck_command(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return test if isinstance(test, str) else " ".join(str(part) for part in test)


def known_subcommands() -> frozenset[str]:
    """The CLI's own table when it exists, else the list above."""
    try:
        from streams.cli import SUBCOMMANDS
    except ImportError:
        return EXPECTED_SUBCOMMANDS
    return frozenset(SUBCOMMANDS)


def alert_rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text(encoding="utf-8"))
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def prometheus_jobs() -> dict[str, dict[str, Any]]:
    loaded = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    return {job["job_name"]: job for job in loaded["scrape_configs"]}


@cache
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    return loaded


def dashboard_panels(panels: list[dict[str, Any]] | None = None) -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"] if panels is None else panels:
        yield panel
        yield from dashboard_panels(panel.get("panels", []))


def dashboard_exprs() -> list[str]:
    return [
        target["expr"]
        for panel in dashboard_panels()
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def allowed_series() -> frozenset[str]:
    names = {"up"}
    for name, kind in METRIC_CATALOGUE.items():
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            names.add(name)
    return frozenset(names)


def unknown_promql_names(expr: str) -> set[str]:
    """Identifiers in ``expr`` that are neither catalogue series nor PromQL words."""
    text = re.sub(r"\$\w+", "", expr)  # Grafana variables
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", text)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    unknown = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", text):
        name = match.group()
        is_call = text[match.end() :].lstrip().startswith("(")
        if is_call and name in PROMQL_FUNCTIONS:
            continue
        if not is_call and (name in PROMQL_KEYWORDS or name in allowed_series()):
            continue
        unknown.add(name)
    return unknown


# ---------------------------------------------------------------------------------------------
# docker-compose.yml


def test_compose_file_parses() -> None:
    """docker-compose.yml is YAML with a services mapping."""
    assert isinstance(services(), dict)
    assert services()


def test_compose_declares_every_service_of_the_product() -> None:
    """Broker, topic creation, Redis, every product process, Prometheus and Grafana are declared."""
    assert set(services()) >= REQUIRED_SERVICES


def test_kafka_is_a_single_kraft_node_with_explicit_topic_creation() -> None:
    """Kafka runs apache/kafka 4.1 in KRaft combined mode, without auto-creation, RF 1 internals."""
    kafka = services()["kafka"]
    env = {key: str(value) for key, value in kafka["environment"].items()}
    assert kafka["image"].startswith("apache/kafka:4.1.")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "1"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "kafka-broker-api-versions.sh" in healthcheck_command(kafka)


def test_kafka_clients_use_the_in_network_listener() -> None:
    """Every product process that talks to Kafka uses the listener advertised to containers."""
    for name in kafka_clients():
        env = services()[name]["environment"]
        assert env["CREDIT_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092", name


def test_create_topics_runs_once_after_the_broker_is_healthy() -> None:
    """create-topics is a one-shot job from the repo image that waits for a healthy broker."""
    job = services()["create-topics"]
    assert built_from_repo(job)
    assert command_of(job)[:2] == [CLI, "create-topics"]
    assert str(job.get("restart", "no")) == "no"
    assert job["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_redis_persists_and_reports_health() -> None:
    """Redis keeps an append-only file on a volume and answers redis-cli ping as its health."""
    redis = services()["redis"]
    assert redis["image"].startswith("redis:7")
    assert "--appendonly" in command_of(redis)
    assert command_of(redis)[command_of(redis).index("--appendonly") + 1] == "yes"
    assert any(str(volume).endswith(":/data") for volume in redis["volumes"])
    assert "redis-cli ping" in healthcheck_command(redis)


def test_product_services_share_one_image_built_from_the_repo() -> None:
    """Every product process runs the one image built from ./Dockerfile."""
    product = [*LONG_RUNNING_PRODUCT_SERVICES, "create-topics"]
    assert set(product) <= set(repo_image_services())
    images = {services()[name]["image"] for name in repo_image_services()}
    assert len(images) == 1
    assert all(
        services()[name]["build"].get("dockerfile", "Dockerfile") == "Dockerfile"
        for name in repo_image_services()
    )


@pytest.mark.parametrize("name", ["worker", "serving-store", "api", "publisher", "simulate"])
def test_kafka_clients_wait_for_the_broker_and_the_topics(name: str) -> None:
    """A process that uses Kafka starts after a healthy broker and a successful create-topics."""
    assert name in kafka_clients()
    depends_on = services()[name]["depends_on"]
    assert depends_on["kafka"]["condition"] == "service_healthy"
    assert depends_on["create-topics"]["condition"] == "service_completed_successfully"


def test_every_kafka_client_is_covered_by_the_dependency_check() -> None:
    """No process uses Kafka without waiting for the broker and the topics."""
    for name in set(kafka_clients()) - {"create-topics"}:
        depends_on = services()[name].get("depends_on", {})
        assert depends_on.get("kafka", {}).get("condition") == "service_healthy", name
        assert (
            depends_on.get("create-topics", {}).get("condition") == "service_completed_successfully"
        ), name


def test_dependencies_name_declared_services_with_checkable_conditions() -> None:
    """depends_on names real services; service_healthy only on services that have a healthcheck."""
    for name, service in services().items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in services(), f"{name} depends on unknown {target}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services()[target], f"{name} waits on {target}"
            elif condition == "service_completed_successfully":
                assert str(services()[target].get("restart", "no")) == "no", target
            else:
                assert condition == "service_started", f"{name} -> {target}: {condition}"


@pytest.mark.parametrize("name", LONG_RUNNING_PRODUCT_SERVICES)
def test_product_services_check_readiness_with_python(name: str) -> None:
    """Each long-running process has a healthcheck that requests /health/ready with python."""
    service = services()[name]
    check = healthcheck_command(service)
    assert "python" in check
    assert "urllib.request.urlopen" in check
    assert re.search(r"http://(?:localhost|127\.0\.0\.1):\d+/health/ready", check)
    assert service["restart"] in {"unless-stopped", "always", "on-failure"}


@pytest.mark.parametrize("name", LONG_RUNNING_PRODUCT_SERVICES)
def test_product_services_depend_only_on_healthy_or_finished_services(name: str) -> None:
    """Start-up order is decided by health, never by a plain start."""
    for target, rule in (services()[name].get("depends_on") or {}).items():
        assert rule["condition"] in {
            "service_healthy",
            "service_completed_successfully",
        }, f"{name} -> {target}"


def test_worker_is_scalable() -> None:
    """The worker has no container_name and no host ports, so `--scale worker=N` works."""
    worker = services()["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert "deploy" not in worker or "replicas" not in worker.get("deploy", {})


def test_worker_keeps_rocksdb_state_in_a_volume_per_replica() -> None:
    """The worker uses RocksDB under CREDIT_DATA_DIR, an anonymous (per-replica) volume."""
    worker = services()["worker"]
    env = worker["environment"]
    assert env["CREDIT_STORE"] == "rocksdb://"
    data_dir = env["CREDIT_DATA_DIR"]
    # A named volume would be shared by every replica; an anonymous one is not.
    assert data_dir in [str(volume) for volume in worker["volumes"]]


def test_api_and_website_publish_their_ports() -> None:
    """The query API (8080) and the credit website (8000) are reachable from the host."""
    assert any(str(port).endswith("8080:8080") for port in services()["api"]["ports"])
    assert any(str(port).endswith("8000:8000") for port in services()["website"]["ports"])


def test_api_keys_come_from_a_mounted_secret() -> None:
    """The API reads its keys from a compose secret, not from the image or the environment."""
    api = services()["api"]
    secret = api["secrets"][0]
    secret_name = secret if isinstance(secret, str) else secret["source"]
    assert secret_name in compose()["secrets"]
    assert api["environment"]["CREDIT_API_KEYS_FILE"] == f"/run/secrets/{secret_name}"


def test_publisher_reaches_the_website_service() -> None:
    """The publisher posts to the website service inside the network, after it is healthy."""
    publisher = services()["publisher"]
    assert publisher["environment"]["CREDIT_WEBSITE_URL"] == "http://website:8000"
    assert publisher["depends_on"]["website"]["condition"] == "service_healthy"


def test_compose_uses_only_existing_subcommands() -> None:
    """Every `credit-transport <subcommand>` in the compose file exists in the CLI."""
    used = {
        command_of(service)[1]
        for service in services().values()
        if command_of(service)[:1] == [CLI] and len(command_of(service)) > 1
    }
    assert used, "no service runs the console script"
    assert used <= known_subcommands(), (
        f"missing from the CLI: {sorted(used - known_subcommands())}"
    )


def test_named_volumes_are_declared() -> None:
    """Every named volume that a service mounts is declared at the top level."""
    declared = set(compose().get("volumes") or {})
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if ":" in str(volume) and not source.startswith((".", "/", "~", "$")):
                assert source in declared, f"{name}: {volume}"


def test_mounted_ops_files_exist() -> None:
    """Every file or folder of the repository that compose mounts is present."""
    for service in services().values():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), source


# ---------------------------------------------------------------------------------------------
# Dockerfile and build context


def test_dockerfile_builds_a_slim_non_root_image_without_dev_extras() -> None:
    """The image is python:3.11-slim, installs `.` without extras and runs as a non-root user."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert "python:3.11-slim" in text
    assert re.search(r"pip install \.(\s|$)", text)
    assert "[dev]" not in text
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users
    assert users[-1] not in {"root", "0"}


def test_dockerignore_keeps_build_inputs_and_drops_secrets() -> None:
    """The build context has what `pip install .` needs and never the secrets."""
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    needed = {"pyproject.toml", "README.md", "streams", "processors", "sinks", "schemas", "config"}
    assert not needed & ignored
    assert {"secrets", ".env", ".git"} <= ignored


# ---------------------------------------------------------------------------------------------
# Prometheus


def test_prometheus_config_parses_and_loads_the_alerts() -> None:
    """prometheus.yml parses, and its rule_files include alerts.yml."""
    loaded = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    assert any(Path(rule).name == "alerts.yml" for rule in loaded["rule_files"])


@pytest.mark.parametrize("name", LONG_RUNNING_PRODUCT_SERVICES)
def test_prometheus_scrapes_every_replica_of_each_product_service(name: str) -> None:
    """Each product service is found by DNS on the port its healthcheck uses."""
    job = prometheus_jobs()[name]
    (discovery,) = job["dns_sd_configs"]
    assert discovery["names"] == [name]
    assert discovery.get("type", "SRV") == "A"
    port = re.search(r"http://[\w.]+:(\d+)/", healthcheck_command(services()[name]))
    assert port is not None
    assert discovery["port"] == int(port.group(1))


def test_every_alert_has_an_expression_a_severity_and_a_summary() -> None:
    """Each alert rule has expr, labels.severity and annotations.summary."""
    rules = alert_rules()
    assert rules
    for rule in rules:
        assert rule["alert"]
        assert rule["expr"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


@pytest.mark.parametrize(
    "needle",
    [
        "credit_publications_at_risk",
        "credit_publications_overdue",
        "credit_dead_letters_total",
        "credit_consumer_lag_messages",
        'up{job="worker"}',
        "credit_serving_store_lag_seconds",
        "credit_api_requests_total",
    ],
)
def test_alerts_watch_each_required_condition(needle: str) -> None:
    """Publications at risk and overdue, dead letters, lag, workers, store lag, API errors."""
    assert any(needle in rule["expr"] for rule in alert_rules())


def test_alerts_use_only_catalogue_metrics() -> None:
    """Every metric name in an alert expression is in the product's catalogue."""
    for rule in alert_rules():
        assert not unknown_promql_names(rule["expr"]), rule["alert"]


# ---------------------------------------------------------------------------------------------
# Grafana


def test_dashboard_parses_and_has_panels() -> None:
    """The dashboard JSON parses and has panels with queries."""
    assert dashboard()["uid"]
    assert any(panel.get("targets") for panel in dashboard_panels())


def test_dashboard_queries_use_only_catalogue_metrics() -> None:
    """Every PromQL expression of the dashboard names only catalogue metrics (or `up`)."""
    exprs = dashboard_exprs()
    assert exprs
    for expr in exprs:
        assert not unknown_promql_names(expr), expr


@pytest.mark.parametrize(
    "metric",
    [
        "credit_events_in_total",
        "credit_events_out_total",
        "credit_dead_letters_total",
        "credit_processing_latency_seconds_bucket",
        "credit_consumer_lag_messages",
        "credit_list_triggers_total",
        "credit_api_requests_total",
        "credit_api_request_seconds_bucket",
        "credit_publications_pending",
        "credit_publications_at_risk",
        "credit_publications_overdue",
        "credit_serving_store_lag_seconds",
    ],
)
def test_dashboard_shows_each_required_metric(metric: str) -> None:
    """Event rates, dead letters, latency, lag, triggers, API, publications and store lag."""
    assert any(metric in expr for expr in dashboard_exprs())


def test_dashboard_uses_the_provisioned_datasource() -> None:
    """Every panel and query names the provisioned Prometheus datasource by its uid."""
    provisioned = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "datasource.yml").read_text(
            encoding="utf-8"
        )
    )
    (datasource,) = provisioned["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    for panel in dashboard_panels():
        if panel.get("type") == "row":
            continue
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"], panel["title"]


def test_dashboard_provider_reads_the_mounted_folder() -> None:
    """Grafana's dashboard provider reads the folder compose mounts ops/grafana/dashboards on."""
    provisioned = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yml").read_text(encoding="utf-8")
    )
    (provider,) = provisioned["providers"]
    mounts = dict(str(volume).split(":")[:2] for volume in services()["grafana"]["volumes"])
    assert mounts["./ops/grafana/dashboards"] == provider["options"]["path"]
    home = services()["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD_FILE.name}"


# ---------------------------------------------------------------------------------------------
# streams/admin.py


def test_plan_creates_exactly_the_registry_topics() -> None:
    """The plan has one topic per all_topics() entry, in order, and nothing else."""
    assert [topic.name for topic in plan_topics()] == [spec.name for spec in all_topics()]


def test_plan_keeps_partitions_and_cleanup_policy_of_each_topic() -> None:
    """Each planned topic has its spec's partitions and cleanup.policy."""
    for topic, spec in zip(plan_topics(), all_topics(), strict=True):
        assert topic.num_partitions == spec.partitions
        assert topic.topic_configs == {"cleanup.policy": str(spec.cleanup)}
        assert topic.replication_factor == 1


def test_plan_covers_compacted_topics_and_dead_letters() -> None:
    """Compacted outputs stay compacted, and every input's dead-letter topic is planned."""
    planned = {topic.name: topic for topic in plan_topics()}
    compacted = {spec.name for spec in all_topics() if spec.cleanup is Cleanup.COMPACT}
    assert compacted
    for name in compacted:
        assert planned[name].topic_configs["cleanup.policy"] == "compact"
    assert any(name.endswith(".dead-letter") for name in planned)


def test_plan_uses_the_requested_replication_factor() -> None:
    """A multi-broker cluster gets the replication factor it asks for."""
    assert {topic.replication_factor for topic in plan_topics(replication_factor=3)} == {3}


def test_plan_rejects_a_replication_factor_below_one() -> None:
    """Zero copies is a configuration error, reported before the broker is asked."""
    with pytest.raises(ValueError, match="replication factor"):
        plan_topics(replication_factor=0)


@pytest.mark.parametrize(
    ("rows", "failed", "retriable"),
    [
        ([("a", 0, None)], [], []),
        # Another process created it first: idempotent, not a failure.
        ([("a", TopicAlreadyExistsError.errno, "exists")], [], []),
        ([("a", InvalidReplicationFactorError.errno, "1 broker")], ["a"], [False]),
        # The controller moved: asking again may succeed.
        ([("a", 0, None), ("b", NotControllerError.errno, None)], ["b"], [True]),
        ([("a", 0)], [], []),  # CreateTopics v0 rows carry no message
    ],
)
def test_topic_failures_accept_existing_topics_and_report_the_rest(
    rows: list[tuple[Any, ...]], failed: list[str], retriable: list[bool]
) -> None:
    """Only real refusals count as failures, each marked retriable or not."""
    failures = topic_failures(rows)
    assert [failure.topic for failure in failures] == failed
    assert [failure.retriable for failure in failures] == retriable


@pytest.mark.parametrize(
    ("partitions", "cleanup_policy", "drifted"),
    [
        (4, "compact", False),
        (None, None, False),  # not described: nothing to compare
        (2, "compact", True),
        (4, "delete", True),
    ],
)
def test_drift_names_differences_from_the_registry(
    partitions: int | None, cleanup_policy: str | None, drifted: bool
) -> None:
    """An existing topic with other partitions or cleanup policy than its spec is reported."""
    spec = TopicSpec("snapshots", "subject", None, cleanup=Cleanup.COMPACT, partitions=4)
    drift = describe_drift(spec, partitions=partitions, cleanup_policy=cleanup_policy)
    assert bool(drift) is drifted

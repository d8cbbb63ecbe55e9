"""One settings object, read from the environment (prefix ``CREDIT_``) at start-up only.

Only entry points (the CLI) call :class:`Settings`; everything else receives it as an argument.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every setting of every process of the product."""

    model_config = SettingsConfigDict(env_prefix="CREDIT_", frozen=True)

    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    """Brokers, comma separated."""
    redis_url: str = "redis://127.0.0.1:16379/0"
    """The serving store."""
    schema_registry_url: str | None = None
    """A Confluent-compatible schema registry; the checked-in schemas when unset."""
    wire_format: str = Field(default="CONFLUENT", pattern="^(CONFLUENT|SINGLE_OBJECT)$")
    """How the product encodes what it writes in Avro."""

    topic_prefix: str = ""
    """Prefix of every topic name: isolates pipelines that share a broker (tests, staging)."""
    app_id: str = "credit-transport"
    """faust application id: the consumer group and the prefix of changelog topics."""
    store: str = "rocksdb://"
    """faust table store: ``rocksdb://`` in production, ``memory://`` for tests and the demo."""
    data_dir: Path = REPO_ROOT / ".run" / "worker"
    """Where a worker keeps its table state."""
    worker_web_port: int = 6066
    """The worker's HTTP port: /metrics and /health/*."""
    bind_host: str = "127.0.0.1"
    """Address every HTTP server of the product binds; 0.0.0.0 inside containers."""
    commit_interval_seconds: float = 0.25
    """How often a worker commits its transactions; bounds end-to-end latency."""
    batch_max_events: int = 1000
    """Events handled per batch (one transaction write per changed subject per batch)."""
    batch_within_seconds: float = 0.05
    """The longest a batch waits to fill before it is handled anyway (streams/batching.py)."""
    batch_linger_seconds: float = 0.005
    """How long a batch waits for more events once the fetched ones are all in it."""
    judge_in_place: bool = True
    """Judge a detection's vehicle in the first hop when it arrives on the vehicle's partition
    (streams/app.py): one step and one transaction instead of two. It was off while handovers
    stalled and repeated triggers (more often with it on): exactly-once gaps 8 and 9, fixed
    (README). ``CREDIT_JUDGE_IN_PLACE=false`` sends every fact across ``credit-facts``."""
    fetch_max_wait_ms: int = 50
    """How long the broker may hold a fetch that finds nothing new (faust fixes it at 1.5 s)."""
    session_timeout_seconds: float = 10.0
    """Consumer session timeout: how soon a dead worker's partitions move to another."""

    policy_file: Path = REPO_ROOT / "config" / "policy.yaml"
    """The versioned credit policy."""
    decoded_files_kept: int = 50_000
    """Credit files a worker keeps decoded in memory between batches (most recent first)."""
    clock_interval_seconds: float = 60.0
    """How often the leader worker ticks the lifecycle's clock (streams/clock.py); 0 turns the
    timer off, for tests that drive the clock themselves."""
    calendar_dir: Path = REPO_ROOT / "config" / "calendar"
    """Official holiday schedules loaded by operators for years the calendar package lacks."""

    api_port: int = 8080
    api_keys_file: Path | None = None
    """JSON file of per-agency API keys and scopes."""
    api_default_rate_per_second: float = 200.0
    """Per-key request rate when the key file sets none."""
    serving_store_metrics_port: int = 9101
    """The serving-store sink's /metrics and /health/* port."""
    publisher_metrics_port: int = 9102
    """The publisher's /metrics and /health/* port."""
    publisher_at_risk_working_days: int = 2
    """A publication with this many working days left or fewer counts as at risk."""
    website_port: int = 8000
    website_url: str = "http://127.0.0.1:8000"
    website_db: Path = REPO_ROOT / ".run" / "website.sqlite3"
    website_database_url: str | None = None
    """PostgreSQL URL for the website; SQLite at ``website_db`` when unset."""
    website_api_token: SecretStr = SecretStr("local-publisher-token")
    """Bearer token the publisher presents to the website's API."""

    def as_dict(self) -> dict[str, Any]:
        """Settings for logs, with secrets masked."""
        return {
            name: ("***" if isinstance(value, SecretStr) else value)
            for name, value in self.model_dump().items()
        }

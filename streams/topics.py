"""The one place that knows the product's Kafka topics: name, key, value record, partitions.

Every process, the docker-compose topic creation and the tests take topic names from here.
Input topics are keyed by the identifier that partitions them; each has a dead-letter topic named
``<topic>.dead-letter``. Outputs that hold the latest state per key are compacted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class Cleanup(StrEnum):
    """Kafka ``cleanup.policy``."""

    DELETE = "delete"
    COMPACT = "compact"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic of the product."""

    name: str
    """Topic name on the broker."""
    key: str
    """What the record key is, in words (it decides the partition)."""
    record: str | None
    """Avro record name of the value, or None for internal JSON records."""
    cleanup: Cleanup = Cleanup.DELETE
    """Delete old segments, or keep the latest record per key."""
    partitions: int = 4
    """Partition count; co-partitioned topics must agree."""

    @property
    def dead_letter(self) -> TopicSpec:
        """The dead-letter topic for records of this topic that cannot be processed."""
        return TopicSpec(f"{self.name}.dead-letter", self.key, "DeadLetter")


OVERLOAD_DETECTIONS_TOPIC = TopicSpec(
    "overload-detections", "plate number|plate colour of the vehicle", "OverloadDetection"
)
PENALTY_DECISIONS_TOPIC = TopicSpec(
    "penalty-decisions", "decision number (CF_WSH)", "PenaltyDecision"
)
LICENSING_DECISIONS_TOPIC = TopicSpec(
    "licensing-decisions", "licence number (XK_XKBH)", "LicensingDecision"
)
# Every event of one objection (filed, then upheld or rejected) shares the key, so they arrive in
# order, as the revisions of one decision do.
OBJECTIONS_TOPIC = TopicSpec("objections", "objection id", "Objection")
CREDIT_REPAIR_APPLICATIONS_TOPIC = TopicSpec(
    "credit-repair-applications", "application id", "CreditRepairApplication"
)
INPUT_TOPICS = (
    OVERLOAD_DETECTIONS_TOPIC,
    PENALTY_DECISIONS_TOPIC,
    LICENSING_DECISIONS_TOPIC,
    OBJECTIONS_TOPIC,
    CREDIT_REPAIR_APPLICATIONS_TOPIC,
)

CREDIT_FACTS_TOPIC = TopicSpec("credit-facts", "subject (kind:key)", None)
"""Internal: facts re-keyed to the credit file they belong to (the second hop)."""

CREDIT_SNAPSHOTS_TOPIC = TopicSpec(
    "credit-snapshots", "subject (kind:key)", None, cleanup=Cleanup.COMPACT
)
LIST_TRIGGERS_TOPIC = TopicSpec("list-triggers", "subject (kind:key)", None)
ENFORCEMENT_ALERTS_TOPIC = TopicSpec("enforcement-alerts", "subject (kind:key)", None)
PUBLICATION_REQUESTS_TOPIC = TopicSpec("publication-requests", "publication id", None)
PUBLICATION_STATUS_TOPIC = TopicSpec(
    "publication-status", "publication id", None, cleanup=Cleanup.COMPACT
)
AUDIT_RECORDS_TOPIC = TopicSpec("audit-records", "subject (kind:key)", None)

OUTPUT_TOPICS = (
    CREDIT_SNAPSHOTS_TOPIC,
    LIST_TRIGGERS_TOPIC,
    ENFORCEMENT_ALERTS_TOPIC,
    PUBLICATION_REQUESTS_TOPIC,
    PUBLICATION_STATUS_TOPIC,
    AUDIT_RECORDS_TOPIC,
)


def prefixed(spec: TopicSpec, prefix: str) -> TopicSpec:
    """The topic under a name prefix: one broker can hold several isolated pipelines (tests)."""
    return replace(spec, name=prefix + spec.name) if prefix else spec


def all_topics(prefix: str = "") -> tuple[TopicSpec, ...]:
    """Every topic the product needs created before it starts (faust creates its own changelogs)."""
    # The publisher's dead letters are JSON (what the website refused and why), not DeadLetter.
    dead_letters = tuple(
        topic.dead_letter
        for topic in (*INPUT_TOPICS, CREDIT_FACTS_TOPIC, PUBLICATION_REQUESTS_TOPIC)
    )
    specs = (*INPUT_TOPICS, *dead_letters, CREDIT_FACTS_TOPIC, *OUTPUT_TOPICS)
    return tuple(prefixed(spec, prefix) for spec in specs)

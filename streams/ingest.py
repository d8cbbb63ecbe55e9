"""The first step of the pipeline: raw input record → validated domain event → routed facts,
or a dead letter with the reason. Never raises for bad input: every record ends one way or the
other (issue 3: no input record is ever dropped silently).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from processors.disclosure import (
    NotPublished,
    PublicationRequest,
    publication_for_licensing,
    publication_for_penalty,
)
from processors.facts import Fact
from processors.model import InputEvent, LicensingDecision, PenaltyDecision, SubjectRef
from processors.policy import PolicyBook
from processors.routing import route
from processors.validation import validate
from processors.workdays import WorkdayCalendar
from streams.codecs import AvroSerde
from streams.errors import SerializationError
from streams.mapping import to_domain


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """Where a record came from and what it held, as read from Kafka."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Routed:
    """A valid event and the facts it sends to credit files."""

    event: InputEvent
    facts: tuple[tuple[SubjectRef, Fact], ...]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Why a record could not be processed; the agent writes it to the dead-letter topic."""

    reason_code: str
    message: str
    stage: str
    """DECODE, VALIDATE or PROCESS."""


def ingest(
    serde: AvroSerde, record: SourceRecord, expected_record: str, now: datetime
) -> Routed | DeadLetter:
    """Decode, map, validate and route one input record; bad input becomes a dead letter."""
    try:
        decoded = serde.decode(record.value, expected_record)
        event = to_domain(decoded.record_name, decoded.value)
    except SerializationError as exc:
        return DeadLetter(exc.reason_code, str(exc), "DECODE")
    result = validate(event, now=now)
    if not result.ok:
        codes = ",".join(sorted({rejection.reason_code for rejection in result.rejections}))
        message = "; ".join(rejection.message for rejection in result.rejections)
        return DeadLetter(codes, message, "VALIDATE")
    return Routed(event, route(event))


def disclosure_for(
    event: InputEvent, calendar: WorkdayCalendar, policy_book: PolicyBook
) -> PublicationRequest | NotPublished | None:
    """The 双公示 publication a decision needs (RULES.md §1), why it is not published, or None
    for events that are not decisions."""
    if isinstance(event, PenaltyDecision):
        return publication_for_penalty(event, calendar, policy_book)
    if isinstance(event, LicensingDecision):
        return publication_for_licensing(event, calendar, policy_book)
    return None


def dead_letter_value(record: SourceRecord, letter: DeadLetter, now: datetime) -> dict[str, object]:
    """The DeadLetter Avro value: the original bytes and headers, where and why."""
    return {
        "original_key": record.key,
        "original_value": record.value,
        "original_headers": [{"key": key, "value": value} for key, value in record.headers],
        "source_topic": record.topic,
        "source_partition": record.partition,
        "source_offset": record.offset,
        "reason_code": letter.reason_code,
        "message": letter.message[:2000],
        "first_seen_time": now,
        "attempt_count": 1,
        "failed_stage": letter.stage,
    }

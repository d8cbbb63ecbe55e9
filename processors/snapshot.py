"""A credit file's state at an instant, for queries (the law-enforcement API, the website)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from types import MappingProxyType

from processors.facts import ViolationKind
from processors.ledger import CreditFile, certified_carrier, held_violations
from processors.lifecycle import EntryRecord
from processors.lists import ListEntry, ListName
from processors.model import SubjectKind, SubjectRef
from processors.policy import Grade, PolicyBook
from processors.scoring import distinct_violations, score_at

__all__ = ["CreditSnapshot", "Membership", "snapshot"]


@dataclass(frozen=True, slots=True)
class Membership:
    """A list entry with where it is in its life (:mod:`processors.lifecycle`)."""

    list_name: ListName
    """Which list."""
    rule_id: str
    """Which rule."""
    status: str
    """``proposed``, ``published``, ``listed``, ``withdrawn``, ``cancelled`` or ``removed``."""
    policy_version: str
    """Version whose rule listed the subject."""
    since: datetime
    """When the subject first qualified."""
    reason: str
    """Why, in words."""
    evidence_event_ids: tuple[str, ...]
    """The events behind it."""
    evidence_violation_ids: tuple[str, ...]
    """The violations behind it (empty once the rules no longer list it)."""
    notice_ends: date | None = None
    """Last day of the pre-publication notice (公示期)."""
    published_on: date | None = None
    """First day on the credit website."""
    public_until: date | None = None
    """Last day on the credit website."""
    disputed: bool = False
    """An objection against it is open (异议中)."""


@dataclass(frozen=True, slots=True)
class CreditSnapshot:
    """What a file says about its subject at ``as_of``."""

    subject: SubjectRef
    """Whose file."""
    as_of: datetime
    """The instant judged."""
    policy_version: str
    """Version in force at ``as_of`` (the score's and the window's)."""
    score: int
    """Credit score."""
    grade: Grade
    """Credit grade."""
    memberships: tuple[Membership, ...]
    """List entries with their status, rule ids and evidence, by list and rule: the standing
    ones, and those ended by time or objection that the back end keeps."""
    violations_in_window: Mapping[ViolationKind, int]
    """Violations the subject answers for itself in the blacklist window ending at ``as_of``."""
    window_days: int
    """That window's length."""
    carrier: SubjectRef | None
    """Vehicles: the carrier a certificate ties it to, else the last carrier named with it."""
    recent_drivers: tuple[SubjectRef, ...]
    """Vehicles: the most recent drivers, latest first."""
    stale_events: int
    """Events refused as too late."""


def snapshot(file: CreditFile, policy_book: PolicyBook, as_of: datetime) -> CreditSnapshot:
    """The file's score, grade, lists and recent parties at ``as_of``."""
    policy = policy_book.in_force_at(as_of)
    violations = held_violations(file)
    score = score_at(violations, as_of, policy_book)
    window_days = policy.overload_blacklist.window_days
    since = as_of - timedelta(days=window_days)
    counts = dict.fromkeys(ViolationKind, 0)
    for violation in distinct_violations(violations, policy.scoring.counted_roles):
        if since < violation.occurred_at <= as_of:
            counts[violation.kind] += 1
    carrier = None
    drivers: tuple[SubjectRef, ...] = ()
    if file.subject.kind is SubjectKind.VEHICLE:
        carrier = certified_carrier(file, as_of) or _latest(
            file.recent_carriers, SubjectKind.CARRIER
        )
        drivers = tuple(
            SubjectRef(SubjectKind.DRIVER, key)
            for key, _ in sorted(
                file.recent_drivers.items(), key=lambda kv: (kv[1], kv[0]), reverse=True
            )
        )
    return CreditSnapshot(
        subject=file.subject,
        as_of=as_of,
        policy_version=policy.version,
        score=score,
        grade=policy.scoring.grade_of(score),
        memberships=memberships(file),
        violations_in_window=MappingProxyType(counts),
        window_days=window_days,
        carrier=carrier,
        recent_drivers=drivers,
        stale_events=file.stale_events,
    )


def _latest(recent: Mapping[str, datetime], kind: SubjectKind) -> SubjectRef | None:
    if not recent:
        return None
    key = max(recent, key=lambda k: (recent[k], k))
    return SubjectRef(kind, key)


def memberships(file: CreditFile) -> tuple[Membership, ...]:
    """The file's entries with their lifecycle status, by list and rule."""
    disputed = {o.entry_key for o in file.objections.values() if o.status.is_open}
    result = []
    for key in sorted(set(file.entries) | set(file.entry_records)):
        entry, record = file.entries.get(key), file.entry_records.get(key)
        result.append(_membership(entry, record, key in disputed))
    return tuple(result)


def _membership(entry: ListEntry | None, record: EntryRecord | None, disputed: bool) -> Membership:
    if record is None:
        assert entry is not None
        return Membership(
            entry.list_name,
            entry.rule_id,
            "listed",
            entry.policy_version,
            entry.since,
            entry.reason,
            entry.evidence_event_ids,
            entry.evidence_violation_ids,
            disputed=disputed,
        )
    return Membership(
        record.list_name,
        record.rule_id,
        record.stage.value,
        record.policy_version,
        record.entry_since,
        record.reason,
        record.evidence_event_ids,
        entry.evidence_violation_ids if entry is not None else (),
        record.notice_ends,
        record.published_on,
        record.public_until,
        disputed,
    )

"""A credit file's state at an instant, for queries (the law-enforcement API, the website)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

from processors.facts import ViolationKind
from processors.ledger import CreditFile, certified_carrier, held_violations
from processors.lists import ListEntry
from processors.model import SubjectKind, SubjectRef
from processors.policy import Grade, PolicyBook
from processors.scoring import distinct_violations, score_at

__all__ = ["CreditSnapshot", "snapshot"]


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
    memberships: tuple[ListEntry, ...]
    """Standing list entries with rule ids and evidence, by list and rule."""
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
        memberships=tuple(entry for _, entry in sorted(file.entries.items())),
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

"""Credit score and grade of a subject at an instant.

The score starts at the policy's start score and loses points for every violation the subject
answers for itself (the policy's counted roles) in the scoring window before the instant. Each
violation costs the deduction of its violation code plus the surcharge of its heaviest penalty
category, both from the policy in force on the violation's date. Grades come from the bands of
the policy in force at the instant: the Jiangsu road-transport model (苏交规〔2024〕2号, RULES.md
§5) without its 不良行为记分 conditions, i.e. plain score floors.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from processors.facts import ViolationFact, ViolationRole
from processors.policy import Grade, PolicyBook

__all__ = ["distinct_violations", "grade_at", "score_at"]


def distinct_violations(
    violations: Iterable[ViolationFact], roles: Iterable[ViolationRole] | None = None
) -> Iterator[ViolationFact]:
    """Each violation once, however many roles the subject holds it in (first copy wins)."""
    wanted = None if roles is None else frozenset(roles)
    seen: set[str] = set()
    for violation in violations:
        if wanted is not None and violation.role not in wanted:
            continue
        if violation.violation_id in seen:
            continue
        seen.add(violation.violation_id)
        yield violation


def score_at(violations: Iterable[ViolationFact], at: datetime, book: PolicyBook) -> int:
    """The subject's score at ``at``; never below 0."""
    scoring = book.in_force_at(at).scoring
    since = at - timedelta(days=scoring.window_days)
    lost = 0
    for violation in distinct_violations(violations, scoring.counted_roles):
        if since < violation.occurred_at <= at:
            judged_by = book.judging_policy(violation.occurred_at).scoring
            lost += judged_by.deduction(violation.code, violation.penalty_categories)
    return max(0, scoring.start_score - lost)


def grade_at(violations: Iterable[ViolationFact], at: datetime, book: PolicyBook) -> Grade:
    """The subject's grade at ``at``."""
    return book.in_force_at(at).scoring.grade_of(score_at(violations, at, book))

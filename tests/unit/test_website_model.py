"""The publication API's pure rules (website/model.py) and the search pattern escaping."""

from __future__ import annotations

from datetime import UTC, date, datetime
from types import MappingProxyType
from typing import Any

import pytest

from website.model import (
    INVALID_AMOUNT,
    INVALID_DATE,
    INVALID_FIELD,
    MALFORMED_BODY,
    MISSING_FIELD,
    UNKNOWN_FIELD,
    UNKNOWN_KIND,
    UNKNOWN_REASON,
    InvalidRequestError,
    Kind,
    PublicationContent,
    PutAction,
    StoredPublication,
    WithdrawalAction,
    WithdrawalReason,
    decide_put,
    decide_withdrawal,
    is_valid_idempotency_key,
    is_valid_publication_id,
    parse_publication,
    parse_withdrawal,
    put_response,
    request_hash,
)


def penalty_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "penalty",
        "fields": {"CF_WSH": "东交罚〔2025〕0001号", "CF_NR_FK": "0.2", "CF_CFLB": "罚款"},
        "subject_name": "东阿县某运输有限公司",
        "subject_code": "91371524MA3C00000X",
        "plate": "鲁P12345",
        "decision_date": "2025-09-26",
        "publication_end": "2026-09-26",
        "revision": 3,
    }
    body.update(changes)
    return {name: value for name, value in body.items() if value is not ...}


def test_a_complete_body_parses() -> None:
    """Every field lands in the frozen content, dates as dates."""
    content = parse_publication("p1", penalty_body())
    assert content.kind is Kind.PENALTY
    assert content.decision_date == date(2025, 9, 26)
    assert content.publication_end == date(2026, 9, 26)
    assert content.fields["CF_NR_FK"] == "0.2"
    assert content.revision == 3


def test_optional_fields_may_be_left_out() -> None:
    """plate and publication_end are optional; blank plate counts as none."""
    content = parse_publication("p1", penalty_body(plate=" ", publication_end=...))
    assert content.plate is None and content.publication_end is None


@pytest.mark.parametrize(
    ("body", "reason", "field"),
    [
        ([1, 2], MALFORMED_BODY, None),
        ("text", MALFORMED_BODY, None),
        (penalty_body(kind="warning"), UNKNOWN_KIND, "kind"),
        (penalty_body(kind=...), MISSING_FIELD, "kind"),
        (penalty_body(colour="blue"), UNKNOWN_FIELD, "colour"),
        (penalty_body(publication_id="other"), INVALID_FIELD, "publication_id"),
        (penalty_body(fields=...), MISSING_FIELD, "fields"),
        (penalty_body(fields=["CF_WSH"]), INVALID_FIELD, "fields"),
        (penalty_body(fields={"CF_SY": {"nested": 1}}), INVALID_FIELD, "fields.CF_SY"),
        (penalty_body(fields={"CF_SY": True}), INVALID_FIELD, "fields.CF_SY"),
        (penalty_body(fields={"bad name": "x"}), INVALID_FIELD, "fields"),
        (penalty_body(fields={"CF_NR_FK": "2000元"}), INVALID_AMOUNT, "fields.CF_NR_FK"),
        (penalty_body(fields={"CF_NR_FK": "-0.1"}), INVALID_AMOUNT, "fields.CF_NR_FK"),
        (penalty_body(fields={"CF_NR_FK": "NaN"}), INVALID_AMOUNT, "fields.CF_NR_FK"),
        (penalty_body(subject_name=""), MISSING_FIELD, "subject_name"),
        (penalty_body(subject_name=5), INVALID_FIELD, "subject_name"),
        (penalty_body(subject_code="x" * 65), INVALID_FIELD, "subject_code"),
        (penalty_body(decision_date="20250926"), INVALID_DATE, "decision_date"),
        (penalty_body(decision_date="2025-02-30"), INVALID_DATE, "decision_date"),
        (penalty_body(publication_end="2025-09-25"), INVALID_DATE, "publication_end"),
        (penalty_body(revision=...), MISSING_FIELD, "revision"),
        (penalty_body(revision="3"), INVALID_FIELD, "revision"),
        (penalty_body(revision=True), INVALID_FIELD, "revision"),  # bool is not a revision
        (penalty_body(revision=-1), INVALID_FIELD, "revision"),
        (penalty_body(revision=2**63), INVALID_FIELD, "revision"),
    ],
)
def test_bad_bodies_are_refused_with_a_reason(body: object, reason: str, field: str | None) -> None:
    """Each malformed PUT body names its reason code and the field at fault."""
    with pytest.raises(InvalidRequestError) as refused:
        parse_publication("p1", body)
    assert (refused.value.reason, refused.value.field) == (reason, field)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"reason": "revoked", "revision": 2}, None),
        ({"reason": "objection_upheld", "revision": 0}, None),
        ({"reason": "deleted", "revision": 2}, UNKNOWN_REASON),
        ({"revision": 2}, MISSING_FIELD),
        ({"reason": "revoked"}, MISSING_FIELD),
        ({"reason": "revoked", "revision": 2, "note": "x"}, UNKNOWN_FIELD),
        (None, MALFORMED_BODY),
    ],
)
def test_withdrawal_bodies(body: object, reason: str | None) -> None:
    """A DELETE body has a known reason and a revision, nothing else."""
    if reason is None:
        withdrawal = parse_withdrawal(body)
        assert withdrawal.reason in set(WithdrawalReason)
        return
    with pytest.raises(InvalidRequestError) as refused:
        parse_withdrawal(body)
    assert refused.value.reason == reason


def stored(revision: int, *, withdrawn: bool = False) -> StoredPublication:
    content = PublicationContent(
        Kind.PENALTY, "n", "c", None, MappingProxyType({}), date(2025, 9, 26), None, revision
    )
    moment = datetime(2025, 9, 28, tzinfo=UTC)
    return StoredPublication(
        "p1",
        content,
        moment,
        moment,
        moment if withdrawn else None,
        WithdrawalReason.REVOKED if withdrawn else None,
    )


@pytest.mark.parametrize(
    ("current", "revision", "action"),
    [
        (None, 0, PutAction.CREATED),
        (stored(3), 4, PutAction.REPLACED),
        (stored(3), 3, PutAction.REPLACED),  # same version resent under a new key: replace
        (stored(3), 2, PutAction.STALE),
        (stored(3, withdrawn=True), 4, PutAction.REPUBLISHED),
        (stored(3, withdrawn=True), 3, PutAction.STALE),  # the withdrawal at 3 beats a PUT at 3
        (stored(3, withdrawn=True), 1, PutAction.STALE),
    ],
)
def test_put_decisions(current: StoredPublication | None, revision: int, action: PutAction) -> None:
    """Higher or equal revisions replace, lower ones are stale; withdrawal needs a higher one."""
    assert decide_put(current, revision) is action


@pytest.mark.parametrize(
    ("current", "revision", "action"),
    [
        (None, 1, WithdrawalAction.NOT_FOUND),
        (stored(3), 3, WithdrawalAction.WITHDRAWN),
        (stored(3), 4, WithdrawalAction.WITHDRAWN),
        (stored(3), 2, WithdrawalAction.STALE),
        (stored(3, withdrawn=True), 3, WithdrawalAction.WITHDRAWN),  # again: still withdrawn
        (stored(3, withdrawn=True), 2, WithdrawalAction.STALE),
    ],
)
def test_withdrawal_decisions(
    current: StoredPublication | None, revision: int, action: WithdrawalAction
) -> None:
    """A withdrawal needs at least the stored revision."""
    assert decide_withdrawal(current, revision) is action


def test_responses_use_201_only_for_creation() -> None:
    """201 created; 200 for everything else, stale included (never 409)."""
    assert put_response(PutAction.CREATED, "p1", stored(1), 1).status == 201
    assert put_response(PutAction.REPLACED, "p1", stored(2), 2).status == 200
    stale = put_response(PutAction.STALE, "p1", stored(3), 2)
    assert (stale.status, stale.body["status"], stale.body["received_revision"]) == (
        200,
        "stale",
        2,
    )


def test_request_hash_ignores_key_order_but_not_content_or_target() -> None:
    """The same request with keys in another order is the same request."""
    one = request_hash("PUT", "p1", {"a": 1, "b": [1, 2]})
    assert one == request_hash("PUT", "p1", {"b": [1, 2], "a": 1})
    assert one != request_hash("PUT", "p2", {"a": 1, "b": [1, 2]})
    assert one != request_hash("DELETE", "p1", {"a": 1, "b": [1, 2]})
    assert one != request_hash("PUT", "p1", {"a": 2, "b": [1, 2]})


@pytest.mark.parametrize(
    ("publication_id", "valid"),
    [
        ("pen-2025-0001", True),
        ("disclosure:penalty:东交罚1", False),
        ("a" * 128, True),
        ("a" * 129, False),
        ("-leading", False),
        ("has space", False),
        ("", False),
    ],
)
def test_publication_ids(publication_id: str, valid: bool) -> None:
    """Ids are 1 to 128 ASCII letters, digits and . _ : -."""
    assert is_valid_publication_id(publication_id) is valid


@pytest.mark.parametrize(
    ("key", "valid"), [("k-1", True), ("x" * 255, True), ("x" * 256, False), ("a b", False)]
)
def test_idempotency_keys(key: str, valid: bool) -> None:
    """Keys are 1 to 255 visible ASCII characters."""
    assert is_valid_idempotency_key(key) is valid

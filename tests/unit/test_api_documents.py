"""What the serving store keeps per snapshot and trigger (sinks/serving_store.py), from the
worker's JSON, without Redis."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from processors.fact_codec import to_json
from processors.facts import ReviewFact
from processors.snapshot import snapshot
from sinks.serving_store import SnapshotFormatError, stored_subject, stored_trigger
from tests.unit.credit_support import DEFAULT_BOOK, NOW, Pipeline, instant, vehicle, weighing


def _worker_json(value: object) -> dict[str, Any]:
    """The value as the worker writes it to its topics."""
    encoded = json.dumps(to_json(value), ensure_ascii=False, separators=(",", ":"))
    decoded: dict[str, Any] = json.loads(encoded)
    return decoded


def _listed_truck(*, published: bool = True) -> Pipeline:
    pipeline = Pipeline()
    for k in range(5):
        pipeline.feed(weighing(f"e{k}", instant(f"2029-0{k + 1}-10")))
    if published:  # a clock tick after the pre-publication notice (processors.lifecycle)
        pipeline.deliver(vehicle(), ReviewFact("tick", NOW + timedelta(days=60)))
    return pipeline


def test_a_proposed_entry_is_shown_but_not_listed() -> None:
    """During the 10 working days' notice the entry is not in force (RULES.md §2)."""
    view = snapshot(_listed_truck(published=False).file(vehicle()), DEFAULT_BOOK, NOW)
    full = json.loads(stored_subject(_worker_json(view), str(view.subject)).full)
    assert full["listed"] is False
    assert full["lists"]["blacklist"]["status"] == "proposed"
    assert full["lists"]["blacklist"]["rules"][0]["notice_ends"] is not None


def test_a_real_snapshot_becomes_documents_for_both_scopes() -> None:
    """Evidence for the evidence scope only; the vehicle's carrier and drivers are related."""
    pipeline = _listed_truck()
    view = snapshot(pipeline.file(vehicle()), DEFAULT_BOOK, NOW)
    stored = stored_subject(_worker_json(view), str(view.subject))
    assert stored.subject == str(vehicle())
    assert stored.version == int(NOW.timestamp()) * 1_000_000
    assert stored.lists == "BLACKLIST"
    assert stored.related == (str(view.carrier), *map(str, view.recent_drivers))
    full, basic = json.loads(stored.full), json.loads(stored.basic)
    rule = full["lists"]["blacklist"]["rules"][0]
    assert rule["rule_id"] == "overload.vehicle" and rule["status"] == "published"
    assert rule["evidence_event_ids"] == ["e0", "e1", "e2", "e3", "e4"]
    assert full["listed"] is True and full["lists_on"] == ["blacklist"]
    assert basic["lists"]["blacklist"]["rules"] == [
        {"rule_id": "overload.vehicle", "status": "published", "disputed": False}
    ]
    assert "evidence" not in stored.basic.decode() and "reason" not in basic
    assert basic["grade"] == full["grade"] and basic["as_of"] == NOW.isoformat()


def test_a_driver_id_number_is_masked_in_the_basic_document() -> None:
    """The driver's own answer shows the number only in the evidence scope."""
    pipeline = _listed_truck()
    driver_subject = next(s for s in pipeline.files if s.kind.value == "DRIVER")
    stored = stored_subject(
        _worker_json(snapshot(pipeline.file(driver_subject), DEFAULT_BOOK, NOW))
    )
    assert driver_subject.key not in stored.basic.decode()
    assert driver_subject.key in stored.full.decode()


def _membership(status: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "list_name": "BLACKLIST",
        "rule_id": "overload.vehicle",
        "policy_version": "v1",
        "since": "2026-01-01T00:00:00+00:00",
        "evidence_event_ids": ["e1"],
        "evidence_violation_ids": ["v1"],
        "reason": "r",
    }
    if status is not None:
        entry["status"] = status
    return entry


@pytest.mark.parametrize(
    ("statuses", "listed", "status"),
    [
        ([], False, "not_listed"),
        ([None], True, "listed"),  # no lifecycle in the snapshot: the entry stands
        (["PUBLISHED"], True, "published"),
        (["proposed"], False, "proposed"),  # in its notice period: not on the list yet
        (["withdrawn"], False, "withdrawn"),
        (["withdrawn", "published"], True, "published"),
    ],
)
def test_a_list_status_follows_its_rules_lifecycle(
    statuses: list[str | None], listed: bool, status: str
) -> None:
    """Published or standing entries list the subject; proposed and withdrawn ones do not."""
    value = {
        "subject": "CARRIER:x",
        "as_of": "2026-06-01T00:00:00+00:00",
        "memberships": [_membership(s) for s in statuses],
    }
    full = json.loads(stored_subject(value).full)
    assert (full["lists"]["blacklist"]["listed"], full["lists"]["blacklist"]["status"]) == (
        listed,
        status,
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"as_of": "2026-06-01T00:00:00+00:00"}, "subject"),
        ({"subject": "VEHICLE:x"}, "as_of"),
        ({"subject": "VEHICLE:x", "as_of": "2026-06-01T00:00:00"}, "time zone"),
        ({"subject": "VEHICLE:x", "as_of": "yesterday"}, "as_of"),
        (
            {
                "subject": "VEHICLE:x",
                "as_of": "2026-06-01T00:00:00+00:00",
                "memberships": [{"list_name": "GREYLIST"}],
            },
            "memberships\\[0\\].list_name",
        ),
    ],
)
def test_a_value_that_is_not_a_snapshot_is_refused(value: dict[str, Any], message: str) -> None:
    """The sink skips such records (and counts them) instead of storing nonsense."""
    with pytest.raises(SnapshotFormatError, match=message):
        stored_subject(value)


def test_a_trigger_is_kept_with_its_source_and_ordered_by_recorded_at() -> None:
    """The member is deterministic, so a replayed trigger adds nothing."""
    pipeline = _listed_truck()
    first = pipeline.triggers[0]
    value = _worker_json(first)
    stored = stored_trigger(value, "list-triggers/0/17")
    assert stored.subject == str(first.subject)
    assert stored.score == int(first.recorded_at.timestamp() * 1_000_000)
    member = json.loads(stored.member)
    assert member["action"] == "ADD" and member["list"] == "blacklist"
    assert member["source"] == "list-triggers/0/17"
    assert stored_trigger(value, "list-triggers/0/17") == stored
    assert datetime.fromisoformat(member["recorded_at"]).tzinfo == UTC

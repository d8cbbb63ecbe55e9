"""The life of a list entry, an objection and a credit repair (RULES.md §2-§4), path by path.

A vehicle with four overload penalties in 365 days is blacklisted (公路安全保护条例 第66条: more
than 3). Time moves by review ticks, as the stream's clock does.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.disclosure import PublicationAction, PublicationKind, WithdrawalReason
from processors.facts import ObjectionFact, RepairFact, ReviewFact, start_of_day
from processors.identifiers import mask_identifier
from processors.lifecycle import (
    OBJECTION_MARK,
    EntryStage,
    ObjectionStatus,
    RepairRejection,
    next_due,
)
from processors.lists import ListName
from processors.model import (
    ChangeType,
    ObjectionAction,
    ObjectionTarget,
    PenaltyCategory,
    SubjectKind,
    SubjectRef,
)
from processors.workdays import CHINESE_CALENDAR
from tests.unit.credit_support import (
    DRIVER_ID,
    Pipeline,
    driver,
    instant,
    penalty,
    vehicle,
)

BLACKLIST_KEY = "BLACKLIST:overload.vehicle"
AGENCY = "东阿县交通运输局"
NOW = datetime.fromisoformat("2026-11-26T02:00:00+00:00")
"""Processing time: a Thursday; 10 working days later is 2026-12-10."""
NOTICE_ENDS = date(2026, 12, 10)


def four_penalties(pipeline: Pipeline) -> Pipeline:
    days = ("2026-05-01", "2026-06-01", "2026-07-01", "2026-08-03")
    return pipeline.feed(*(penalty(f"p{n}", day) for n, day in enumerate(days, 1)))


def listed() -> Pipeline:
    return four_penalties(Pipeline(now=NOW))


def tick(pipeline: Pipeline, day: str, subject: SubjectRef | None = None) -> Pipeline:
    at = start_of_day(date.fromisoformat(day)) + timedelta(hours=1)
    return pipeline.deliver(subject or vehicle(), ReviewFact(f"tick-{day}", at))


def objection(
    action: ObjectionAction,
    objection_id: str = "O-1",
    *,
    day: str = "2026-11-27",
    target: ObjectionTarget = ObjectionTarget.LIST_ENTRY,
    decision: str | None = None,
) -> ObjectionFact:
    return ObjectionFact(
        event_id=f"{objection_id}-{action}",
        objection_id=objection_id,
        action=action,
        target=target,
        occurred_at=instant(day),
        handled_by=AGENCY,
        entry_key=BLACKLIST_KEY if target is ObjectionTarget.LIST_ENTRY else None,
        decision_number=decision,
    )


def repair(
    decision: str = "东交罚〔p1〕",
    application_id: str = "R-1",
    *,
    obligations: bool = True,
    commitment: bool = True,
    day: str = "2026-11-26",
) -> RepairFact:
    return RepairFact(
        f"{application_id}-e", application_id, decision, instant(day), obligations, commitment
    )


def stage(pipeline: Pipeline, subject: SubjectRef | None = None) -> EntryStage | None:
    subject = subject or vehicle()
    key = BLACKLIST_KEY if subject.kind is SubjectKind.VEHICLE else "BLACKLIST:overload.driver"
    record = pipeline.file(subject).entry_records.get(key)
    return record.stage if record is not None else None


def entry_publications(
    pipeline: Pipeline,
) -> list[tuple[PublicationAction, WithdrawalReason | None]]:
    vehicle_code = vehicle().key.split("|")[0]
    return [
        (p.action, p.withdrawal_reason)
        for p in pipeline.publications
        if p.kind is PublicationKind.BLACKLIST
        and p.publication_id.startswith("BL:VEHICLE")
        and (p.plate == vehicle_code or p.action is PublicationAction.WITHDRAW)
    ]


# --- entries ------------------------------------------------------------------------------------


def test_the_fourth_violation_proposes_the_entry_with_ten_working_days_of_notice() -> None:
    pipeline = listed()
    record = pipeline.file(vehicle()).entry_records[BLACKLIST_KEY]
    assert record.stage is EntryStage.PROPOSED
    assert (
        record.notice_ends
        == NOTICE_ENDS
        == CHINESE_CALENDAR.add_working_days(date(2026, 11, 26), 10).due
    )
    assert not entry_publications(pipeline), "nothing is published during the notice"
    assert [
        (a.from_state, a.to_state)
        for a in pipeline.audit
        if a.record == f"entry:{BLACKLIST_KEY}" and a.subject == vehicle()
    ] == [(None, "proposed")]


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        ("2026-12-09", EntryStage.PROPOSED),
        ("2026-12-10", EntryStage.PROPOSED),  # the notice's last day is still inside it
        ("2026-12-11", EntryStage.PUBLISHED),
    ],
)
def test_the_entry_is_published_the_day_after_the_notice_ends(
    day: str, expected: EntryStage
) -> None:
    assert stage(tick(listed(), day)) is expected


def test_publication_lasts_two_years_then_the_entry_is_withdrawn_and_kept() -> None:
    pipeline = tick(listed(), "2026-12-11")
    record = pipeline.file(vehicle()).entry_records[BLACKLIST_KEY]
    assert (record.published_on, record.public_until) == (date(2026, 12, 11), date(2028, 12, 10))
    (published,) = [
        p for p in pipeline.publications if p.kind is PublicationKind.BLACKLIST and p.plate
    ]
    assert published.action is PublicationAction.PUBLISH
    assert published.publication_end == date(2028, 12, 10)
    # The public page is in Chinese; the rule's English reason stays in the back end.
    assert (
        published.fields["reason"]
        == "货运车辆1年内违法超限运输超过3次（《公路安全保护条例》第六十六条）"
    )
    assert stage(tick(pipeline, "2028-12-10")) is EntryStage.PUBLISHED
    tick(pipeline, "2028-12-11")
    assert stage(pipeline) is EntryStage.WITHDRAWN
    assert entry_publications(pipeline)[-1] == (
        PublicationAction.WITHDRAW,
        WithdrawalReason.EXPIRED,
    )
    assert BLACKLIST_KEY in pipeline.file(vehicle()).entries, "the back end keeps the entry"
    assert stage(tick(pipeline, "2029-01-05")) is EntryStage.WITHDRAWN, "not proposed again"


def test_an_open_objection_holds_publication_and_its_rejection_publishes_at_once() -> None:
    pipeline = listed().deliver(vehicle(), objection(ObjectionAction.FILED))
    tick(pipeline, "2026-12-11")
    assert stage(pipeline) is EntryStage.PROPOSED
    pipeline.deliver(vehicle(), objection(ObjectionAction.REJECTED, day="2026-12-14"))
    assert stage(pipeline) is EntryStage.PUBLISHED
    assert pipeline.file(vehicle()).objections["O-1"].status is ObjectionStatus.REJECTED


def test_an_objection_upheld_during_the_notice_cancels_the_entry_for_good() -> None:
    pipeline = listed().deliver(vehicle(), objection(ObjectionAction.FILED))
    pipeline.deliver(vehicle(), objection(ObjectionAction.UPHELD, day="2026-12-01"))
    assert stage(pipeline) is EntryStage.CANCELLED
    assert stage(tick(pipeline, "2027-01-04")) is EntryStage.CANCELLED
    assert not entry_publications(pipeline)


def test_an_objection_upheld_after_publication_removes_the_entry_from_the_website() -> None:
    pipeline = tick(listed(), "2026-12-11").deliver(
        vehicle(), objection(ObjectionAction.FILED, day="2026-12-11")
    )
    assert stage(pipeline) is EntryStage.PUBLISHED, (
        "annotated, still published (RULES.md §4 default)"
    )
    pipeline.deliver(vehicle(), objection(ObjectionAction.UPHELD, day="2026-12-15"))
    assert stage(pipeline) is EntryStage.REMOVED
    assert entry_publications(pipeline)[-1] == (
        PublicationAction.WITHDRAW,
        WithdrawalReason.OBJECTION_UPHELD,
    )


def test_a_published_entry_shows_an_open_objection_until_it_is_answered() -> None:
    """RULES.md §4: annotate the disputed record and keep it published (存在异议的标注)."""
    pipeline = tick(listed(), "2026-12-11")
    published = len(pipeline.publications)
    pipeline.deliver(vehicle(), objection(ObjectionAction.FILED, day="2026-12-14"))
    marked = pipeline.publications[published:]
    assert [(p.action, p.fields.get("objection")) for p in marked] == [
        (PublicationAction.PUBLISH, OBJECTION_MARK)
    ]
    assert marked[0].revision > pipeline.publications[published - 1].revision
    pipeline.deliver(vehicle(), objection(ObjectionAction.REJECTED, day="2026-12-16"))
    (unmarked,) = pipeline.publications[published + 1 :]
    assert unmarked.action is PublicationAction.PUBLISH and "objection" not in unmarked.fields
    assert unmarked.fields["reason"] == marked[0].fields["reason"]
    assert stage(pipeline) is EntryStage.PUBLISHED


def test_each_version_of_an_entry_gets_a_higher_revision_at_one_lifecycle_instant() -> None:
    """A clock tick ahead of the processing time holds the lifecycle's time still; the website
    keeps one answer per (publication, revision, action), so a mark sent at the same revision as
    the publication was never shown."""
    pipeline = tick(listed(), "2027-01-20")
    pipeline.deliver(vehicle(), objection(ObjectionAction.FILED, "O-2", day="2026-12-14"))
    pipeline.deliver(vehicle(), objection(ObjectionAction.REJECTED, "O-2", day="2026-12-15"))
    versions = [
        (p.revision, "objection" in p.fields)
        for p in pipeline.publications
        if p.kind is PublicationKind.BLACKLIST and p.plate
    ]
    assert [marked for _, marked in versions] == [False, True, False]
    revisions = [revision for revision, _ in versions]
    assert revisions == sorted(set(revisions)), "strictly increasing"


def test_an_objection_during_the_notice_publishes_nothing() -> None:
    pipeline = listed().deliver(vehicle(), objection(ObjectionAction.FILED))
    assert not entry_publications(pipeline), "the entry is not public yet: nothing to mark"


def test_an_unanswered_objection_turns_overdue_after_ten_working_days() -> None:
    pipeline = listed().deliver(vehicle(), objection(ObjectionAction.FILED))
    respond_by = pipeline.file(vehicle()).objections["O-1"].respond_by
    assert respond_by == CHINESE_CALENDAR.add_working_days(date(2026, 11, 27), 10).due
    assert next_due(pipeline.file(vehicle()).lifecycle) is not None
    tick(pipeline, respond_by.isoformat())
    assert pipeline.file(vehicle()).objections["O-1"].status is ObjectionStatus.OPEN
    tick(pipeline, (respond_by + timedelta(days=1)).isoformat())
    assert pipeline.file(vehicle()).objections["O-1"].status is ObjectionStatus.OVERDUE
    assert [a.to_state for a in pipeline.audit if a.record == "objection:O-1"] == [
        "OPEN",
        "OVERDUE",
    ]


def test_a_resolution_that_arrives_before_its_filing_stands() -> None:
    pipeline = listed().deliver(vehicle(), objection(ObjectionAction.UPHELD, day="2026-12-01"))
    pipeline.deliver(vehicle(), objection(ObjectionAction.FILED))
    assert pipeline.file(vehicle()).objections["O-1"].status is ObjectionStatus.UPHELD
    assert stage(pipeline) is EntryStage.CANCELLED


@pytest.mark.parametrize("published", [False, True], ids=["during-notice", "published"])
def test_a_revoked_decision_ends_the_entry_it_supported(published: bool) -> None:
    pipeline = tick(listed(), "2026-12-11") if published else listed()
    pipeline.feed(
        penalty(
            "p2-rev", "2026-12-12", number="东交罚〔p2〕", revision=1, change=ChangeType.REVOKED
        )
    )
    assert stage(pipeline) is None, "only the audit trail keeps an entry whose grounds are gone"
    ends = [
        a.to_state
        for a in pipeline.audit
        if a.record == f"entry:{BLACKLIST_KEY}" and a.subject == vehicle()
    ]
    assert ends[-1] == ("removed" if published else "cancelled")
    expected = [
        (PublicationAction.PUBLISH, None),
        (PublicationAction.WITHDRAW, WithdrawalReason.REVOKED),
    ]
    assert entry_publications(pipeline) == (expected if published else [])


# --- repairs ------------------------------------------------------------------------------------


def test_an_approved_repair_withdraws_the_record_and_lifts_every_entry_it_supported() -> None:
    pipeline = tick(tick(listed(), "2026-12-11"), "2026-12-11", driver())
    assert stage(pipeline, driver()) is EntryStage.PUBLISHED
    pipeline.deliver(vehicle(), repair())
    file = pipeline.file(vehicle())
    assert file.repairs["R-1"].approved
    assert "东交罚〔p1〕" in file.penalties, "the back end keeps the record"
    assert stage(pipeline) is None and stage(pipeline, driver()) is None
    assert (pipeline.triggers[-1].action.value, pipeline.triggers[-1].list_name) == (
        "REMOVE",
        ListName.BLACKLIST,
    )
    withdrawals = [p for p in pipeline.publications if p.kind is PublicationKind.PENALTY]
    assert [(p.action, p.withdrawal_reason) for p in withdrawals] == [
        (PublicationAction.WITHDRAW, WithdrawalReason.REPAIRED)
    ]
    assert withdrawals[0].deadline == CHINESE_CALENDAR.add_working_days(date(2026, 12, 11), 3).due


@pytest.mark.parametrize(
    ("setup", "application", "rejection"),
    [
        ("listed", repair("东交罚〔none〕"), RepairRejection.DECISION_NOT_HELD),
        ("revoked", repair("东交罚〔p1〕"), RepairRejection.DECISION_REVOKED),
        (
            "recent",
            repair("东交罚〔p9〕"),  # 一般 tier: 3 months from 2026-09-01
            RepairRejection.MIN_PERIOD_NOT_OVER,
        ),  # 2026-08-03 + 3 months
        ("listed", repair(obligations=False), RepairRejection.OBLIGATIONS_NOT_FULFILLED),
        ("listed", repair(commitment=False), RepairRejection.NO_PUBLIC_COMMITMENT),
        (
            "old",
            repair("东交罚〔old〕"),
            RepairRejection.MIN_PERIOD_UNKNOWN,
        ),  # 2025: no periods set
        ("repaired", repair(application_id="R-2"), RepairRejection.ALREADY_REPAIRED),
    ],
)
def test_a_repair_is_rejected_with_its_reason(
    setup: str, application: RepairFact, rejection: RepairRejection
) -> None:
    pipeline = tick(
        listed(), "2026-11-27"
    )  # the clock at 2026-11-27: p4's minimum runs to 2026-11-03 + ...
    if setup == "revoked":
        pipeline.feed(
            penalty(
                "p1-rev", "2026-11-20", number="东交罚〔p1〕", revision=1, change=ChangeType.REVOKED
            )
        )
    elif setup == "old":
        pipeline.feed(penalty("old", "2025-12-01"))
    elif setup == "recent":
        pipeline.feed(penalty("p9", "2026-09-01"))  # 一般 tier: 3 months (Order 2025 No. 36)
    elif setup == "repaired":
        pipeline.deliver(vehicle(), repair())
    sent = len(pipeline.publications)
    pipeline.deliver(vehicle(), application)
    decided = pipeline.file(vehicle()).repairs[application.application_id]
    assert (decided.approved, decided.rejection) == (False, rejection)
    assert pipeline.publications[sent:] == [], "a rejection withdraws nothing"


def test_a_serious_decision_waits_twelve_months_for_repair() -> None:
    serious = penalty(
        "s", "2026-06-01", categories=(PenaltyCategory.FINE, PenaltyCategory.REVOKE_LICENCE)
    )
    pipeline = Pipeline(now=NOW).feed(serious).deliver(vehicle(), repair("东交罚〔s〕"))
    decided = pipeline.file(vehicle()).repairs["R-1"]
    assert (decided.tier, decided.rejection) == ("SERIOUS", RepairRejection.MIN_PERIOD_NOT_OVER)


def test_an_objection_upheld_against_a_decision_sets_it_aside() -> None:
    pipeline = tick(listed(), "2026-12-11")
    pipeline.deliver(
        vehicle(),
        objection(
            ObjectionAction.FILED, "O-9", target=ObjectionTarget.DECISION, decision="东交罚〔p3〕"
        ),
    )
    assert stage(pipeline) is EntryStage.PUBLISHED
    pipeline.deliver(
        vehicle(),
        objection(
            ObjectionAction.UPHELD,
            "O-9",
            day="2026-12-15",
            target=ObjectionTarget.DECISION,
            decision="东交罚〔p3〕",
        ),
    )
    assert stage(pipeline) is None
    withdrawals = [
        p.withdrawal_reason for p in pipeline.publications if p.kind is PublicationKind.PENALTY
    ]
    assert withdrawals == [WithdrawalReason.OBJECTION_UPHELD]


def test_list_publications_carry_no_personal_data() -> None:
    pipeline = tick(tick(listed(), "2026-12-11"), "2026-12-11", driver())
    (published,) = [
        p
        for p in pipeline.publications
        if p.publication_id.startswith("BL:") and p.subject_code != vehicle().key.split("|")[0]
    ]
    assert DRIVER_ID not in repr(published)
    assert published.subject_code == mask_identifier(DRIVER_ID)


def test_a_redelivered_lifecycle_event_changes_nothing() -> None:
    pipeline = (
        listed().deliver(vehicle(), objection(ObjectionAction.FILED)).deliver(vehicle(), repair())
    )
    before, audit = pipeline.file(vehicle()), len(pipeline.audit)
    pipeline.deliver(vehicle(), objection(ObjectionAction.FILED)).deliver(vehicle(), repair())
    assert pipeline.file(vehicle()) == before and len(pipeline.audit) == audit


# --- property -----------------------------------------------------------------------------------

STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.integers(0, 800)),
        st.tuples(st.just("objection"), st.sampled_from(list(ObjectionAction))),
        st.tuples(st.just("decision-objection"), st.sampled_from(list(ObjectionAction))),
        st.tuples(st.just("repair"), st.integers(1, 5)),
        st.tuples(st.just("penalty"), st.integers(5, 7)),
    ),
    max_size=12,
)


@settings(max_examples=80, deadline=None)
@given(steps=STEPS, ending=st.sampled_from(["revoke", "repair"]))
def test_no_path_leaves_a_subject_listed_once_all_its_records_are_gone(
    steps: list[tuple[str, object]], ending: str
) -> None:
    """Whatever happened on the way, revoking (or repairing) every decision unlists everybody and
    takes every published entry off the website."""
    pipeline, day = listed(), date(2026, 11, 27)
    numbers = [f"东交罚〔p{n}〕" for n in range(1, 5)]
    for n, (kind, value) in enumerate(steps):
        if kind == "tick":
            day += timedelta(days=int(value))  # type: ignore[call-overload]
            tick(pipeline, day.isoformat())
        elif kind == "objection":
            pipeline.deliver(vehicle(), objection(value, f"O-{n % 3}", day=day.isoformat()))  # type: ignore[arg-type]
        elif kind == "decision-objection":
            decision = numbers[n % len(numbers)]
            pipeline.deliver(
                vehicle(),
                objection(
                    value,
                    f"D-{n % 3}",
                    day=day.isoformat(),
                    target=ObjectionTarget.DECISION,
                    decision=decision,
                ),
            )  # type: ignore[arg-type]
        elif kind == "repair":
            pipeline.deliver(
                vehicle(), repair(numbers[int(value) % len(numbers)], f"R-{n}", day=day.isoformat())
            )  # type: ignore[call-overload]
        else:
            pipeline.feed(penalty(f"p{value}", (day - timedelta(days=1)).isoformat()))
            numbers.append(f"东交罚〔p{value}〕")
    for n, number in enumerate(sorted(set(numbers))):
        if ending == "revoke":
            pipeline.feed(
                penalty(
                    f"end-{n}",
                    day.isoformat(),
                    number=number,
                    revision=9,
                    change=ChangeType.REVOKED,
                )
            )
        else:
            pipeline.deliver(vehicle(), repair(number, f"end-{n}", day=day.isoformat()))
    tick(pipeline, (day + timedelta(days=800)).isoformat())
    for subject in (vehicle(), driver()):
        file = pipeline.file(subject)
        repaired_all = ending == "repair" and all(
            any(r.approved and r.decision_number == number for r in file.repairs.values())
            for number in file.penalties
        )
        if ending == "revoke" or repaired_all:
            assert not file.entries
            assert not [r for r in file.entry_records.values() if r.stage.is_live]
    # Every entry that went up on the website came down again.
    state: dict[str, PublicationAction] = {}
    for request in pipeline.publications:
        if request.kind is PublicationKind.BLACKLIST:
            state[request.publication_id] = request.action
    if ending == "revoke":
        assert set(state.values()) <= {PublicationAction.WITHDRAW}

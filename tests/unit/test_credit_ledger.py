"""Credit files: forwarding between files, dedup memory, pruning, snapshots, purity."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import pytest

from processors.facts import (
    FleetFact,
    ForwardedBatch,
    ViolationFact,
    ViolationKind,
    ViolationRole,
)
from processors.ledger import RECENT_EVENT_IDS_KEPT, apply, new_file
from processors.lists import DRIVER_OVERLOAD, ListAction, ListName
from processors.model import ChangeType, PenaltyCategory, SubjectKind, SubjectRef
from processors.policy import Grade
from processors.routing import route
from processors.snapshot import snapshot
from tests.unit.credit_support import (
    CARRIER_USCC,
    DEFAULT_BOOK,
    LOADING_SOURCE_USCC,
    NOW,
    PLATE,
    REPO,
    Pipeline,
    carrier,
    certificate,
    driver,
    instant,
    penalty,
    vehicle,
    weighing,
)

OTHER_DRIVER = "371524199003033333"
OTHER_CARRIER = "91371524MA3C00002X"


def test_a_vehicle_forwards_each_case_to_everyone_who_answers_for_it() -> None:
    """Driver, carrier (fleet), loading source and penalised subject each get the case once."""
    ((subject, fact),) = route(
        weighing("w", instant("2024-06-01"), loading_source_uscc=LOADING_SOURCE_USCC)
    )
    outcome = apply(new_file(subject), fact, DEFAULT_BOOK, NOW)
    roles = {
        (target.kind, forwarded.role)
        for target, forwarded in outcome.forwards
        if isinstance(forwarded, ViolationFact)
    }
    assert roles == {
        (SubjectKind.DRIVER, ViolationRole.DRIVER),
        (SubjectKind.CARRIER, ViolationRole.FLEET),
        (SubjectKind.LOADING_SOURCE, ViolationRole.LOADED),
    }


def test_forwarding_stops_after_one_hop() -> None:
    """Files other than a vehicle's never forward, so forwarding cannot cycle."""
    ((subject, fact),) = route(penalty("p", "2024-06-01", subject_uscc=CARRIER_USCC))
    outcome = apply(new_file(subject), fact, DEFAULT_BOOK, NOW)
    assert outcome.forwards
    for target, forwarded in outcome.forwards:
        assert target.kind is not SubjectKind.VEHICLE
        assert apply(new_file(target), forwarded, DEFAULT_BOOK, NOW).forwards == ()


def test_a_case_that_changes_identity_reaches_the_driver_in_one_batch() -> None:
    """A case renamed by a linking penalty reaches the driver as one batch: no flicker."""
    pipeline = Pipeline().feed(
        *[penalty(f"p{n}", f"2024-0{n}-01") for n in (1, 2, 3)],
        weighing("w2", instant("2024-05-01"), detection_id="D-2"),
    )
    assert pipeline.actions(driver()) == [(ListAction.ADD, ListName.BLACKLIST, DRIVER_OVERLOAD)]
    link = penalty("link", "2024-05-10", detections=("D-1", "D-2"))
    ((subject, fact),) = route(link)
    outcome = apply(pipeline.file(subject), fact, DEFAULT_BOOK, NOW)
    (batch,) = [f for target, f in outcome.forwards if target == driver()]
    assert isinstance(batch, ForwardedBatch)
    kinds = [
        (type(change).__name__, change.role.value)
        for change in batch.changes
        if not isinstance(change, FleetFact)
    ]
    # The new case as driver and as the penalised person; the old one, which only the
    # weighing knew, as driver.
    assert kinds == [
        ("ViolationFact", "DRIVER"),
        ("ViolationFact", "PENALISED"),
        ("RetractionFact", "DRIVER"),
    ]
    pipeline.feed(link)
    assert pipeline.actions(driver()) == [(ListAction.ADD, ListName.BLACKLIST, DRIVER_OVERLOAD)]


def test_a_revision_that_names_another_driver_moves_the_violation() -> None:
    """The first driver's file loses the case, the new driver's file gains it."""
    original = penalty("p", "2024-06-01", subject_id_number=None, subject_uscc=CARRIER_USCC)
    original = replace(original, driver_id_number=driver().key)
    moved = replace(
        original,
        event_id="p-mod",
        revision=1,
        change_type=ChangeType.MODIFIED,
        driver_id_number=OTHER_DRIVER,
    )
    pipeline = Pipeline().feed(original, moved)
    assert pipeline.file(driver()).received == {}
    (held,) = pipeline.file(SubjectRef(SubjectKind.DRIVER, OTHER_DRIVER)).received.values()
    assert held.role is ViolationRole.DRIVER


def test_a_carrier_that_loses_a_vehicle_is_told() -> None:
    """When a certificate moves to another carrier, the first carrier's fleet loses the vehicle."""
    pipeline = Pipeline().feed(
        certificate("c0", PLATE),
        certificate("c1", PLATE, carrier_uscc=OTHER_CARRIER, revision=1, number=f"cert-{PLATE}"),
    )
    for owner in (carrier(), carrier(OTHER_CARRIER)):
        (held,) = pipeline.file(owner).certificates.values()
        assert held.carrier == carrier(OTHER_CARRIER)


def test_a_redelivered_event_is_flagged_and_changes_nothing() -> None:
    """The same event id twice: the second delivery is a duplicate."""
    ((subject, fact),) = route(penalty("p", "2024-06-01"))
    first = apply(new_file(subject), fact, DEFAULT_BOOK, NOW)
    second = apply(first.file, fact, DEFAULT_BOOK, NOW)
    assert second.duplicate and second.file == first.file and second.forwards == ()


def test_the_dedup_memory_is_bounded() -> None:
    """A busy vehicle remembers only its most recent event ids (by event time)."""
    events = [
        weighing(f"w{n:04d}", instant("2024-06-01", second=n), gross_kg=40_000)
        for n in range(3 * RECENT_EVENT_IDS_KEPT)
    ]
    file = Pipeline().feed(*events).file(vehicle())
    assert len(file.recent_event_ids) == RECENT_EVENT_IDS_KEPT
    assert min(file.recent_event_ids) == f"w{2 * RECENT_EVENT_IDS_KEPT:04d}"


def test_old_facts_are_pruned_but_list_evidence_is_kept() -> None:
    """Five years on, a listed vehicle keeps the four decisions that list it and nothing else."""
    evidence = [penalty(f"p{n}", f"2021-0{n}-01") for n in (1, 2, 3, 4)]
    pipeline = Pipeline().feed(
        *evidence,
        penalty("later", "2022-06-01"),
        weighing("legal", instant("2025-06-01"), gross_kg=40_000),
    )
    file = pipeline.file(vehicle())
    assert {p.event_id for p in file.penalties.values()} == {p.event_id for p in evidence}
    assert file.first_seen == instant("2021-01-01", 0)
    assert (ListName.BLACKLIST, "overload.vehicle") in pipeline.members(vehicle())


def test_a_snapshot_gives_score_grade_lists_and_recent_parties() -> None:
    """For the law-enforcement API: a vehicle's score, grade, lists, carrier and drivers."""
    pipeline = Pipeline().feed(
        certificate("cert", PLATE, decided="2023-01-01"),
        *[penalty(f"p{n}", f"2024-0{n}-01") for n in (1, 2, 3, 4)],
        weighing("w", instant("2024-05-01"), driver_id=OTHER_DRIVER, gross_kg=40_000),
    )
    view = snapshot(pipeline.file(vehicle()), DEFAULT_BOOK, instant("2024-06-01"))
    assert (view.score, view.grade) == (60, Grade.B)
    assert [(m.list_name, m.rule_id) for m in view.memberships] == [
        (ListName.BLACKLIST, "overload.vehicle")
    ]
    assert view.violations_in_window[ViolationKind.OVERLOAD] == 4
    assert view.policy_version == "2023-05-01"
    assert view.carrier == carrier()
    assert view.recent_drivers == (SubjectRef(SubjectKind.DRIVER, OTHER_DRIVER), driver())


@pytest.mark.parametrize(
    ("events", "score", "grade"),
    [
        pytest.param([], 100, Grade.AA, id="clean"),
        pytest.param([penalty("p1", "2024-05-01")], 90, Grade.AA, id="one-overload"),
        pytest.param(
            [penalty("p1", "2024-05-01"), penalty("p2", "2024-05-02")], 80, Grade.A, id="two"
        ),
        # Deduction plus the surcharge of the heaviest category (吊销 > 罚款).
        pytest.param(
            [
                penalty(
                    "p1",
                    "2024-05-01",
                    categories=(PenaltyCategory.FINE, PenaltyCategory.REVOKE_LICENCE),
                )
            ],
            70,
            Grade.B,
            id="revoked-licence-surcharge",
        ),
        pytest.param([penalty("p1", "2023-05-31")], 100, Grade.AA, id="outside-the-window"),
        pytest.param(
            [penalty(f"p{n}", f"2024-0{1 + n % 5}-0{1 + n % 7}") for n in range(12)],
            0,
            Grade.D,
            id="never-below-zero",
        ),
    ],
)
def test_score_starts_full_and_loses_points_per_violation(
    events: list, score: int, grade: Grade
) -> None:
    """Score and grade (Jiangsu model floors, local-choice deductions) at an instant."""
    pipeline = Pipeline().feed(*events)
    view = snapshot(pipeline.file(vehicle()), DEFAULT_BOOK, instant("2024-06-01"))
    assert (view.score, view.grade) == (score, grade)


def test_a_carriers_fleet_does_not_lower_its_own_score() -> None:
    """A carrier answers for its fleet through the ratio rule, not its score (local choice)."""
    pipeline = Pipeline().feed(*[penalty(f"p{n}", f"2024-0{n}-01") for n in (1, 2, 3)])
    view = snapshot(pipeline.file(carrier()), DEFAULT_BOOK, instant("2024-06-01"))
    assert (view.score, view.grade) == (100, Grade.AA)


CREDIT_MODULES = (
    "facts",
    "policy",
    "routing",
    "ledger",
    "lists",
    "scoring",
    "snapshot",
    "file_codec",
)
FORBIDDEN = {"faust", "redis", "httpx", "aiokafka", "prometheus_client", "os", "pathlib", "io"}


@pytest.mark.parametrize("module", CREDIT_MODULES)
def test_credit_rules_do_no_io(module: str) -> None:
    """processors/ is pure: no stream, store, HTTP or file imports, and no open()."""
    tree = ast.parse(Path(REPO / "processors" / f"{module}.py").read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert not imported & FORBIDDEN
    calls = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert "open" not in calls

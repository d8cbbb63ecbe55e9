"""The seeded simulator: the same seed gives the same traffic, and the lifecycle inputs
(objections, credit repair applications) follow the rules they imitate without moving the rest."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from functools import cache

from ops.simulator import (
    BLACKLIST_VIOLATIONS_GT,
    BLACKLIST_WINDOW,
    REPAIR_AFTER,
    Simulation,
    Simulator,
    demo_simulation,
)
from processors.model import (
    InputEvent,
    Objection,
    ObjectionAction,
    OverloadDetection,
    PenaltyDecision,
    RepairApplication,
    StationType,
)
from processors.validation import validate

STEPS = 3_000
# A small fleet weighed every two hours: vehicles are listed, and penalties age, within the run.
LIFECYCLE = Simulation(
    seed=11,
    vehicles=30,
    carriers=3,
    step=timedelta(hours=2),
    objection_share=1.0,
    repair_share=0.05,
    bad_lifecycle_share=0.3,
)


@cache
def run(sim: Simulation, steps: int = STEPS) -> tuple[InputEvent, ...]:
    simulator = Simulator(sim)
    events: list[InputEvent] = []
    for _ in range(steps):
        events.extend(simulator.next_events())
    return tuple(events)


def lifecycle_events(events: tuple[InputEvent, ...]) -> list[Objection | RepairApplication]:
    return [event for event in events if isinstance(event, Objection | RepairApplication)]


def e_time(event: Objection | RepairApplication) -> datetime:
    """The event's own time: validation's ``now`` when it was sent."""
    return event.occurred_at if isinstance(event, Objection) else event.applied_at


def test_the_same_seed_gives_the_same_events() -> None:
    """Two runs of one simulation are equal event for event, lifecycle events included."""
    again = Simulator(LIFECYCLE)
    events: list[InputEvent] = []
    for _ in range(STEPS):
        events.extend(again.next_events())
    assert tuple(events) == run(LIFECYCLE)


def test_lifecycle_events_leave_the_rest_of_the_traffic_unchanged() -> None:
    """With or without objections and repairs, a seed gives the same detections and penalties."""
    plain = Simulation(seed=11, vehicles=30, carriers=3, step=timedelta(hours=2))
    assert lifecycle_events(run(plain)) == []
    others = [e for e in run(LIFECYCLE) if not isinstance(e, Objection | RepairApplication)]
    assert others == list(run(plain))


def test_the_demo_emits_objections_and_repairs_at_a_small_rate() -> None:
    """The demo's traffic holds a few lifecycle events among thousands of detections."""
    events = run(demo_simulation(7), 20_000)
    kinds = Counter(type(event).__name__ for event in events)
    assert 0 < kinds["Objection"] + kinds["RepairApplication"] < kinds["OverloadDetection"] / 100


def test_objections_are_filed_against_a_blacklisted_vehicle_then_resolved() -> None:
    """Each objection is filed after its vehicle's 4th confirmed overload in a year, then
    upheld or rejected later; only the malformed copies fail validation."""
    events = run(LIFECYCLE)
    valid = [e for e in lifecycle_events(events) if validate(e, now=e_time(e)).ok]
    malformed = [e for e in lifecycle_events(events) if not validate(e, now=e_time(e)).ok]
    assert malformed and all(e.event_id.endswith("-malformed") for e in malformed)
    objections = [e for e in valid if isinstance(e, Objection)]
    by_id: dict[str, list[Objection]] = {}
    for objection in objections:
        by_id.setdefault(objection.objection_id, []).append(objection)
    assert by_id
    for history in by_id.values():
        actions = [event.action for event in history]
        assert actions[0] is ObjectionAction.FILED
        assert actions[1:] in ([], [ObjectionAction.UPHELD], [ObjectionAction.REJECTED])
        filed = history[0]
        assert (filed.list_name, filed.rule_id) == ("BLACKLIST", "overload.vehicle")
        confirmed = [
            e.event_time
            for e in events
            if isinstance(e, OverloadDetection)
            and e.plate_number == filed.plate_number
            and e.station_type is StationType.FIXED_STATION_PRECISE
            and e.gross_weight_kg > e.legal_limit_kg
            and filed.occurred_at - BLACKLIST_WINDOW - timedelta(days=30)
            < e.event_time
            <= filed.occurred_at
        ]
        assert len(confirmed) > BLACKLIST_VIOLATIONS_GT


def test_repairs_are_applied_for_older_penalties_once() -> None:
    """A repair application names a penalty of its vehicle decided at least 3 months earlier."""
    events = run(LIFECYCLE)
    penalties = {e.decision_number: e for e in events if isinstance(e, PenaltyDecision)}
    applications = [
        e
        for e in lifecycle_events(events)
        if isinstance(e, RepairApplication) and not e.event_id.endswith("-malformed")
    ]
    assert applications
    assert len({a.decision_number for a in applications}) == len(applications)
    for application in applications:
        penalty = penalties[application.decision_number]
        assert application.plate_number == penalty.plate_number
        assert application.applied_at.date() - penalty.decision_date >= REPAIR_AFTER

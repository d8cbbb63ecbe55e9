"""Properties of the credit files: order, duplicates, retractions and bounded state.

The order guarantee is for sets of events whose times span less than the late-event horizon
(``processors.ledger``): the generated histories span less than the test book's horizon.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.facts import start_of_day
from processors.file_codec import file_to_dict
from processors.ledger import (
    RECENT_EVENT_IDS_KEPT,
    RECENT_PARTIES_KEPT,
    CreditFile,
    held_violations,
    new_file,
)
from processors.lists import ListName
from processors.model import (
    ChangeType,
    InputEvent,
    LicenceStatus,
    LicenceType,
    PenaltyCategory,
    ViolationCode,
)
from processors.policy import PolicyBook, parse_policy_book
from tests.unit.credit_support import D, Pipeline, certificate, licence, penalty, weighing
from tests.unit.test_policy import SHIPPED

# Few vehicles and drivers and many decisions, so that the thresholds are reached often.
PLATES = ("鲁P00001", "鲁P00002")
DRIVERS = ("371524198001010001", "371524198001010002")
CARRIERS = ("91371524MA3C00001X", "91371524MA3C00002X")
SOURCES = ("91371524MA3C00009Y",)
INSTIGATORS = ("91371524MA3C00007W",)
DETECTION_IDS = tuple(f"D-{n}" for n in range(8))
DECISION_NUMBERS = tuple(f"东交罚〔N{n}〕" for n in range(16))
ORIGIN_DAY = D("2023-06-01")
ORIGIN = start_of_day(ORIGIN_DAY)
SPAN_DAYS = 500  # more than one window, less than the test book's late-event horizon
CODES = (
    ViolationCode.OVERLOAD_TRANSPORT,
    ViolationCode.OVERLOAD_TRANSPORT,
    ViolationCode.INSTIGATE_OVERLOAD,
    ViolationCode.OTHER,
)
CATEGORIES = ((PenaltyCategory.FINE,), (PenaltyCategory.FINE, PenaltyCategory.SUSPENSION_ORDER))


def _book(late_event_horizon_days: int) -> PolicyBook:
    document: dict[str, Any] = yaml.safe_load(yaml.safe_dump(SHIPPED, allow_unicode=True))
    document["versions"][0]["retention"]["late_event_horizon_days"] = late_event_horizon_days
    # Turn the optional rule on, so that it is exercised too.
    document["versions"][0]["overload_blacklist"]["gross_overweight_ratio_gte"] = 0.3
    return parse_policy_book(yaml.safe_dump(document, allow_unicode=True))


LONG_HORIZON = _book(late_event_horizon_days=1_000)  # longer than SPAN_DAYS: nothing is stale

# --- strategies ---------------------------------------------------------------------------------

optional = st.none()


def _instant(day: int, seconds: int) -> datetime:
    return ORIGIN + timedelta(days=day, seconds=seconds)


def _day(day: int) -> str:
    return (ORIGIN_DAY + timedelta(days=day)).isoformat()


def weighings(span: int) -> st.SearchStrategy[InputEvent]:
    """Weighings of the few vehicles, precise or in motion, over the limit or not."""
    return st.builds(
        lambda day, seconds, detection_id, plate, precise, gross, driver_id, carrier, source: (
            weighing(
                "tbd",
                _instant(day, seconds),
                detection_id=detection_id,
                plate=plate,
                precise=precise,
                gross_kg=gross,
                limit_kg=49_000,
                driver_id=driver_id,
                carrier_uscc=carrier,
                loading_source_uscc=source,
            )
        ),
        st.integers(0, span),
        st.integers(0, 86_399),
        st.sampled_from(DETECTION_IDS),
        st.sampled_from(PLATES),
        st.sampled_from((True, True, False)),
        st.sampled_from((45_000, 49_000, 52_000, 52_000, 70_000)),
        st.sampled_from(DRIVERS) | optional,
        st.sampled_from(CARRIERS) | optional,
        st.sampled_from(SOURCES) | optional,
    )


@st.composite
def penalties(draw: st.DrawFn, span: int) -> InputEvent:
    """Revisions of a few decisions: any code, subject, vehicle or none, linked weighings."""
    revision = draw(st.integers(0, 2))
    change = ChangeType.ISSUED
    if revision:
        change = draw(st.sampled_from((ChangeType.MODIFIED, ChangeType.REVOKED)))
    code = draw(st.sampled_from(CODES))
    subject = draw(st.sampled_from(("driver", "carrier", "instigator")))
    return penalty(
        "tbd",
        _day(draw(st.integers(0, span))),
        number=draw(st.sampled_from(DECISION_NUMBERS)),
        revision=revision,
        change=change,
        code=code,
        plate=draw(st.sampled_from(PLATES) | optional),
        subject_id_number=draw(st.sampled_from(DRIVERS)) if subject == "driver" else None,
        subject_uscc={
            "driver": None,
            "carrier": draw(st.sampled_from(CARRIERS)),
            "instigator": INSTIGATORS[0],
        }[subject],
        carrier_uscc=draw(st.sampled_from(CARRIERS) | optional),
        fine_yuan=draw(st.sampled_from(("0", "5000", "20000"))),
        categories=draw(st.sampled_from(CATEGORIES)),
        detections=tuple(sorted(draw(st.sets(st.sampled_from(DETECTION_IDS), max_size=2)))),
    )


@st.composite
def certificates(draw: st.DrawFn, span: int) -> InputEvent:
    """Operating certificates tying the vehicles to the carriers, some revoked later."""
    revision = draw(st.integers(0, 1))
    status = LicenceStatus.GRANTED
    if revision:
        status = draw(st.sampled_from((LicenceStatus.GRANTED, LicenceStatus.REVOKED)))
    return certificate(
        "tbd",
        draw(st.sampled_from(PLATES)),
        carrier_uscc=draw(st.sampled_from(CARRIERS)),
        decided=_day(draw(st.integers(0, span))),
        status=status,
        revision=revision,
    )


@st.composite
def permits(draw: st.DrawFn, span: int) -> InputEvent:
    """Oversize permits of up to a month, some revoked, suspended or cancelled later."""
    start = _instant(draw(st.integers(0, span)), draw(st.integers(0, 86_399)))
    revision = draw(st.integers(0, 1))
    status = draw(st.sampled_from(tuple(LicenceStatus))) if revision else LicenceStatus.GRANTED
    return licence(
        "tbd",
        LicenceType.OVERSIZE_TRANSPORT_PERMIT,
        number=f"permit-{draw(st.integers(0, 1))}",
        decided=_day(0),
        valid_from=_day(0),
        status=status,
        revision=revision,
        plate=draw(st.sampled_from(PLATES)),
        permit_from=start,
        permit_until=start + timedelta(days=draw(st.integers(0, 30))),
    )


def _numbered(events: list[InputEvent]) -> list[InputEvent]:
    """Give every generated event its own id (a resend is made by copying one)."""
    return [replace(event, event_id=f"e{n:03d}") for n, event in enumerate(events)]


@st.composite
def bursts(draw: st.DrawFn, span: int) -> list[InputEvent]:
    """Several overload cases of one vehicle and driver within months, and pre-checks: enough
    to reach the thresholds, which scattered events seldom do."""
    plate, driver_id = draw(st.sampled_from(PLATES)), draw(st.sampled_from(DRIVERS))
    start = draw(st.integers(0, span - 200))
    events: list[InputEvent] = []
    for _ in range(draw(st.integers(3, 6))):
        day = start + draw(st.integers(0, 200))
        what = draw(st.sampled_from(("penalty", "penalty", "weighing", "pre-check")))
        if what == "penalty":
            linked = draw(st.sets(st.sampled_from(DETECTION_IDS), max_size=1))
            events.append(
                penalty(
                    "tbd",
                    _day(day),
                    number=draw(st.sampled_from(DECISION_NUMBERS)),
                    plate=plate,
                    subject_id_number=driver_id,
                    carrier_uscc=draw(st.sampled_from(CARRIERS) | optional),
                    detections=tuple(linked),
                )
            )
        else:
            events.append(
                weighing(
                    "tbd",
                    _instant(day, draw(st.integers(0, 86_399))),
                    detection_id=draw(st.sampled_from(DETECTION_IDS)),
                    plate=plate,
                    precise=what == "weighing",
                    driver_id=driver_id,
                )
            )
    return events


def histories(span: int, min_size: int, max_size: int) -> st.SearchStrategy[list[InputEvent]]:
    """Scattered events of every kind over ``span`` days plus a few bursts, each event with its
    own id."""
    scattered = st.lists(
        st.one_of(
            weighings(span),
            weighings(span),
            penalties(span),
            penalties(span),
            penalties(span),
            certificates(span),
            permits(span),
        ),
        min_size=min_size,
        max_size=max_size,
    )
    return st.tuples(scattered, st.lists(bursts(span), max_size=3)).map(
        lambda parts: _numbered(parts[0] + [event for burst in parts[1] for event in burst])
    )


SHORT_HISTORIES = histories(SPAN_DAYS, min_size=1, max_size=40)
FIVE_YEARS = 5 * 365
LONG_HISTORIES = histories(FIVE_YEARS, min_size=20, max_size=60)


def _state(pipeline: Pipeline) -> dict[str, Any]:
    """Every non-empty file, as stored."""
    return {
        str(subject): file_to_dict(file)
        for subject, file in pipeline.files.items()
        if file != new_file(subject)
    }


def _memberships(pipeline: Pipeline) -> set[tuple[str, str, str]]:
    return {
        (str(subject), entry.list_name.value, entry.rule_id)
        for subject, file in pipeline.files.items()
        for entry in file.entries.values()
    }


# --- properties ---------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(history=SHORT_HISTORIES, data=st.data())
def test_any_arrival_order_gives_the_same_files(
    history: list[InputEvent], data: st.DataObject
) -> None:
    """Any permutation of the same events gives the same files and the same list membership."""
    shuffled = data.draw(st.permutations(history), label="arrival order")
    in_order = Pipeline(book=LONG_HORIZON).feed(*history)
    reordered = Pipeline(book=LONG_HORIZON).feed(*shuffled)
    assert _memberships(reordered) == _memberships(in_order)
    assert _state(reordered) == _state(in_order)
    assert in_order.stale == reordered.stale == 0


@st.composite
def with_resends(draw: st.DrawFn, history: list[InputEvent]) -> list[InputEvent]:
    """``history`` with some events delivered again, each resend after its first delivery."""
    delivered = list(history)
    for event in history:
        for _ in range(draw(st.integers(0, 2))):
            first = delivered.index(event)
            delivered.insert(draw(st.integers(first + 1, len(delivered))), event)
    return delivered


@settings(max_examples=60, deadline=None)
@given(history=SHORT_HISTORIES, data=st.data())
def test_delivering_events_again_changes_nothing(
    history: list[InputEvent], data: st.DataObject
) -> None:
    """At-least-once delivery: a resent event (same id) counts once."""
    resent = data.draw(with_resends(history), label="deliveries")
    once = Pipeline(book=LONG_HORIZON).feed(*history)
    again = Pipeline(book=LONG_HORIZON).feed(*resent)
    assert _state(again) == _state(once)
    listed_once = [(t.action, t.subject, t.rule_id) for t in once.triggers]
    assert [(t.action, t.subject, t.rule_id) for t in again.triggers] == listed_once


@st.composite
def cases_then_revocations(draw: st.DrawFn) -> list[InputEvent]:
    """Penalties (some confirming a weighing of their vehicle), pre-checks, and a revocation of
    every decision, all in a random order."""
    events: list[InputEvent] = []
    revocations: list[InputEvent] = []
    for n in range(draw(st.integers(4, 16))):
        plate = draw(st.sampled_from(PLATES) | optional)
        day = _day(draw(st.integers(0, 400)))
        weighed = plate is not None and draw(st.booleans())
        code = draw(
            st.sampled_from(
                (ViolationCode.OVERLOAD_TRANSPORT, ViolationCode.OTHER)
                if weighed
                else tuple(ViolationCode)
            )
        )
        instigator = code is ViolationCode.INSTIGATE_OVERLOAD
        decision = penalty(
            f"pen-{n}",
            day,
            number=f"东交罚〔R{n}〕",
            code=code,
            plate=plate,
            subject_id_number=None if instigator else draw(st.sampled_from(DRIVERS)),
            subject_uscc=INSTIGATORS[0] if instigator else None,
            fine_yuan=draw(st.sampled_from(("0", "5000", "20000"))),
            detections=(f"W-{n}",) if weighed else (),
        )
        events.append(decision)
        if weighed:
            assert plate is not None
            events.append(
                weighing(f"w-{n}", start_of_day(D(day)), detection_id=f"W-{n}", plate=plate)
            )
        revocations.append(
            replace(decision, event_id=f"rev-{n}", revision=1, change_type=ChangeType.REVOKED)
        )
    events += [
        weighing(f"wim-{n}", _instant(n * 30, 0), precise=False, plate=PLATES[0]) for n in range(3)
    ]
    return draw(st.permutations(events + revocations))


@settings(max_examples=60, deadline=None)
@given(events=cases_then_revocations())
def test_nothing_stays_listed_once_every_supporting_decision_is_revoked(
    events: list[InputEvent],
) -> None:
    """Once every decision is revoked, no blacklist or watchlist entry remains anywhere."""
    # Red-list entries rest on a clean record, not on decisions, so they are not in question.
    pipeline = Pipeline(book=LONG_HORIZON).feed(*events)
    for subject, file in pipeline.files.items():
        lists = {entry.list_name for entry in file.entries.values()}
        assert not lists & {ListName.BLACKLIST, ListName.WATCHLIST}, subject
        assert held_violations(file) == ()
    added = {(t.subject, t.rule_id) for t in pipeline.triggers if t.action.value == "ADD"}
    removed = {(t.subject, t.rule_id) for t in pipeline.triggers if t.action.value == "REMOVE"}
    assert {a for a in added if not a[1].startswith("red_list")} <= removed


@settings(max_examples=40, deadline=None)
@given(history=LONG_HISTORIES)
def test_files_hold_nothing_older_than_the_retention_except_list_evidence(
    history: list[InputEvent],
) -> None:
    """Over five years, only list evidence outlives the retention; memories stay bounded."""
    book = _book(late_event_horizon_days=365)
    pipeline = Pipeline(book=book).feed(*history)
    for subject, file in pipeline.files.items():
        assert len(file.recent_event_ids) <= RECENT_EVENT_IDS_KEPT
        assert len(file.recent_drivers) <= RECENT_PARTIES_KEPT
        assert len(file.recent_carriers) <= RECENT_PARTIES_KEPT
        times = [t for t in [file.clock, *(v.occurred_at for v in file.received.values())] if t]
        if not times:
            continue
        cutoff = max(times) - book.retention
        protected = {v for e in file.entries.values() for v in e.evidence_violation_ids}
        evidence = [v for v in held_violations(file) if v.violation_id in protected]
        kept_numbers = {n for v in evidence for n in v.decision_numbers}
        kept_detections = {d for v in evidence for d in v.detection_ids}
        for key, received in file.received.items():
            assert received.occurred_at > cutoff or received.violation_id in protected, key
        for detection_ids, numbers in _components(file):
            times = [file.detections[d].detected_at for d in detection_ids if d in file.detections]
            times += [start_of_day(file.penalties[n].decision_date) for n in numbers]
            supports = bool(set(detection_ids) & kept_detections or set(numbers) & kept_numbers)
            assert max(times) > cutoff or supports, (subject, detection_ids, numbers)
        for permit in file.permits.values():
            assert permit.valid_until is None or permit.valid_until > cutoff


def _components(file: CreditFile) -> list[tuple[list[str], list[str]]]:
    """Held weighings and decisions linked by detection ids (instigation links nothing)."""
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        while parent.setdefault(node, node) != node:
            node = parent[node]
        return node

    for detection_id in file.detections:
        find("d:" + detection_id)
    for number, decision in file.penalties.items():
        find("p:" + number)
        if decision.code is not ViolationCode.INSTIGATE_OVERLOAD:
            for detection_id in decision.related_detection_ids:
                parent[find("d:" + detection_id)] = find("p:" + number)
    groups: dict[str, list[str]] = {}
    for node in list(parent):
        groups.setdefault(find(node), []).append(node)
    return [
        (
            [n[2:] for n in nodes if n.startswith("d:")],
            [n[2:] for n in nodes if n.startswith("p:")],
        )
        for nodes in groups.values()
        if any(n[2:] in file.detections for n in nodes if n.startswith("d:"))
        or any(n.startswith("p:") for n in nodes)
    ]

"""The first hop: which file an event goes to, as which fact."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from processors.facts import (
    DetectionFact,
    FleetFact,
    LicenceFact,
    ObjectionFact,
    PenaltyFact,
    PermitFact,
    RepairFact,
)
from processors.lists import VEHICLE_OVERLOAD, ListEntry, ListName
from processors.model import (
    InputEvent,
    LicenceType,
    Objection,
    ObjectionAction,
    ObjectionTarget,
    PenaltyCategory,
    PlateColour,
    RepairApplication,
    SubjectKind,
    SubjectRef,
    ViolationCode,
)
from processors.routing import route
from tests.unit.credit_support import (
    CARRIER_USCC,
    DRIVER_ID,
    INSTIGATOR_USCC,
    PLATE,
    carrier,
    certificate,
    driver,
    instant,
    licence,
    penalty,
    permit,
    vehicle,
    weighing,
)

OTHER_DRIVER = "371524199003033333"


@pytest.mark.parametrize(
    ("event", "subject", "fact_type"),
    [
        pytest.param(weighing("w", instant("2024-06-01")), vehicle(), DetectionFact, id="weighing"),
        pytest.param(penalty("p", "2024-06-01"), vehicle(), PenaltyFact, id="penalty-with-plate"),
        pytest.param(
            penalty("p", "2024-06-01", plate=None), driver(), PenaltyFact, id="person-is-a-driver"
        ),
        # A person who is not the case's driver is a third party (e.g. the owner).
        pytest.param(
            penalty("p", "2024-06-01", plate=None, driver_id=OTHER_DRIVER),
            SubjectRef(SubjectKind.PERSON, DRIVER_ID),
            PenaltyFact,
            id="person-other-than-the-driver",
        ),
        pytest.param(
            penalty("p", "2024-06-01", plate=None, subject_uscc=CARRIER_USCC),
            carrier(),
            PenaltyFact,
            id="organisation-is-a-carrier",
        ),
        pytest.param(
            penalty("p", "2024-06-01", plate=None, subject_uscc=INSTIGATOR_USCC),
            SubjectRef(SubjectKind.PERSON, INSTIGATOR_USCC),
            PenaltyFact,
            id="organisation-other-than-the-carrier",
        ),
        pytest.param(
            penalty(
                "p",
                "2024-06-01",
                plate=None,
                subject_uscc=INSTIGATOR_USCC,
                categories=(PenaltyCategory.SUSPENSION_ORDER,),
            ),
            SubjectRef(SubjectKind.CARRIER, INSTIGATOR_USCC),
            PenaltyFact,
            id="suspension-order-goes-to-a-carrier",
        ),
        pytest.param(
            permit("pm", instant("2024-06-01"), instant("2024-06-02")),
            vehicle(),
            PermitFact,
            id="oversize-permit",
        ),
        pytest.param(certificate("c", PLATE), vehicle(), FleetFact, id="operating-certificate"),
        pytest.param(
            licence(
                "l",
                LicenceType.ROAD_TRANSPORT_OPERATING_LICENCE,
                number="L1",
                decided="2020-01-01",
                valid_from="2020-01-01",
            ),
            carrier(),
            LicenceFact,
            id="operating-licence",
        ),
    ],
)
def test_an_event_goes_to_the_first_file_it_concerns(
    event: InputEvent, subject: SubjectRef, fact_type: type
) -> None:
    """Events with a plate go to the vehicle; others to the subject's own file."""
    ((routed_to, fact),) = route(event)
    assert routed_to == subject
    assert isinstance(fact, fact_type)


def test_a_penalty_without_any_identifier_goes_nowhere() -> None:
    """A decision that names neither vehicle nor subject cannot be filed (validation rejects it)."""
    assert route(penalty("p", "2024-06-01", plate=None, subject_id_number=None)) == ()


def test_blank_identifiers_count_as_absent() -> None:
    """Exports write "" for unknown; a blank driver is no driver, as validation reads it."""
    ((_, fact),) = route(weighing("w", instant("2024-06-01"), driver_id="  ", carrier_uscc=""))
    assert isinstance(fact, DetectionFact)
    assert fact.driver is None and fact.carrier is None


def test_a_penalised_driver_is_the_driver_of_the_case() -> None:
    """The penalised person fills in the case's driver when the decision names none."""
    ((_, fact),) = route(penalty("p", "2024-06-01", code=ViolationCode.OVERLOAD_TRANSPORT))
    assert isinstance(fact, PenaltyFact)
    assert fact.penalised == fact.driver == driver()
    assert fact.carrier == carrier()


def test_a_permit_without_instants_covers_its_validity_days_whole() -> None:
    """有效期自/至 dates cover from the first instant of the first day to the last of the last."""
    event = replace(
        permit("pm", instant("2024-06-01"), instant("2024-06-02")),
        permit_valid_from=None,
        permit_valid_until=None,
    )
    event = replace(event, valid_until=event.valid_from)
    ((_, fact),) = route(event)
    assert isinstance(fact, PermitFact)
    assert fact.valid_from == instant(event.valid_from.isoformat(), 0)
    assert fact.valid_until == fact.valid_from + timedelta(days=1, microseconds=-1)


# --- objections (异议) and credit repair applications (信用修复) ----------------------------------

FILED_AT = instant("2024-06-20")


def objection(**overrides: Any) -> Objection:
    """An objection filed to the vehicle's blacklist entry, then overrides."""
    event = Objection(
        event_id="o-1#FILED",
        objection_id="o-1",
        action=ObjectionAction.FILED,
        subject_kind=SubjectKind.VEHICLE,
        target=ObjectionTarget.LIST_ENTRY,
        occurred_at=FILED_AT,
        handled_by="东阿县交通运输局",
        plate_number=PLATE,
        plate_colour=PlateColour.YELLOW,
        list_name="BLACKLIST",
        rule_id="overload.vehicle",
        reason="同一次运输",
    )
    return replace(event, **overrides)


def repair_application(**overrides: Any) -> RepairApplication:
    """A carrier's application to repair one of its penalties, then overrides."""
    event = RepairApplication(
        event_id="r-1",
        application_id="r-1",
        subject_kind=SubjectKind.CARRIER,
        decision_number="东交罚〔2024〕7号",
        applied_at=FILED_AT,
        obligations_fulfilled=True,
        public_commitment=False,
        subject_code=CARRIER_USCC,
    )
    return replace(event, **overrides)


_NOT_A_VEHICLE = {"plate_number": None, "plate_colour": None}
_DECISION = {"target": ObjectionTarget.DECISION, "list_name": None, "rule_id": None}


@pytest.mark.parametrize(
    ("event", "subject", "fact"),
    [
        pytest.param(
            objection(),
            vehicle(),
            ObjectionFact(
                event_id="o-1#FILED",
                objection_id="o-1",
                action=ObjectionAction.FILED,
                target=ObjectionTarget.LIST_ENTRY,
                occurred_at=FILED_AT,
                handled_by="东阿县交通运输局",
                entry_key="BLACKLIST:overload.vehicle",
                reason="同一次运输",
            ),
            id="list-entry-of-a-vehicle",
        ),
        pytest.param(
            objection(
                event_id="o-1#REJECTED",
                action=ObjectionAction.REJECTED,
                subject_kind=SubjectKind.CARRIER,
                subject_code=CARRIER_USCC,
                list_name="RED_LIST",
                rule_id="red_list.clean_top_grade",
                reason="",
                **_NOT_A_VEHICLE,
            ),
            carrier(),
            ObjectionFact(
                event_id="o-1#REJECTED",
                objection_id="o-1",
                action=ObjectionAction.REJECTED,
                target=ObjectionTarget.LIST_ENTRY,
                occurred_at=FILED_AT,
                handled_by="东阿县交通运输局",
                entry_key="RED_LIST:red_list.clean_top_grade",
            ),
            id="list-entry-of-a-carrier",
        ),
        # The decision number of a decision record; a rule named beside it is not an entry key.
        pytest.param(
            objection(
                action=ObjectionAction.UPHELD,
                subject_kind=SubjectKind.DRIVER,
                subject_code=DRIVER_ID,
                decision_number="东交罚〔2024〕7号",
                **(_NOT_A_VEHICLE | _DECISION | {"rule_id": "overload.driver"}),
            ),
            driver(),
            ObjectionFact(
                event_id="o-1#FILED",
                objection_id="o-1",
                action=ObjectionAction.UPHELD,
                target=ObjectionTarget.DECISION,
                occurred_at=FILED_AT,
                handled_by="东阿县交通运输局",
                decision_number="东交罚〔2024〕7号",
                reason="同一次运输",
            ),
            id="decision-of-a-driver",
        ),
        # A vehicle case's decision is held by the vehicle's file.
        pytest.param(
            objection(decision_number="东交罚〔2024〕7号", **_DECISION),
            vehicle(),
            ObjectionFact(
                event_id="o-1#FILED",
                objection_id="o-1",
                action=ObjectionAction.FILED,
                target=ObjectionTarget.DECISION,
                occurred_at=FILED_AT,
                handled_by="东阿县交通运输局",
                decision_number="东交罚〔2024〕7号",
                reason="同一次运输",
            ),
            id="decision-of-a-vehicle-case",
        ),
        pytest.param(
            objection(
                subject_kind=SubjectKind.PERSON,
                subject_code=INSTIGATOR_USCC,
                rule_id="overload.instigator_fine",
                **_NOT_A_VEHICLE,
            ),
            SubjectRef(SubjectKind.PERSON, INSTIGATOR_USCC),
            ObjectionFact(
                event_id="o-1#FILED",
                objection_id="o-1",
                action=ObjectionAction.FILED,
                target=ObjectionTarget.LIST_ENTRY,
                occurred_at=FILED_AT,
                handled_by="东阿县交通运输局",
                entry_key="BLACKLIST:overload.instigator_fine",
                reason="同一次运输",
            ),
            id="list-entry-of-a-person",
        ),
        pytest.param(
            repair_application(),
            carrier(),
            RepairFact(
                event_id="r-1",
                application_id="r-1",
                decision_number="东交罚〔2024〕7号",
                applied_at=FILED_AT,
                obligations_fulfilled=True,
                public_commitment=False,
            ),
            id="repair-of-a-carrier",
        ),
        pytest.param(
            repair_application(
                subject_kind=SubjectKind.VEHICLE,
                subject_code=None,
                plate_number=PLATE,
                plate_colour=PlateColour.YELLOW,
                public_commitment=True,
            ),
            vehicle(),
            RepairFact(
                event_id="r-1",
                application_id="r-1",
                decision_number="东交罚〔2024〕7号",
                applied_at=FILED_AT,
                obligations_fulfilled=True,
                public_commitment=True,
            ),
            id="repair-of-a-vehicle-case",
        ),
        pytest.param(
            repair_application(subject_kind=SubjectKind.LOADING_SOURCE),
            SubjectRef(SubjectKind.LOADING_SOURCE, CARRIER_USCC),
            RepairFact(
                event_id="r-1",
                application_id="r-1",
                decision_number="东交罚〔2024〕7号",
                applied_at=FILED_AT,
                obligations_fulfilled=True,
                public_commitment=False,
            ),
            id="repair-of-a-loading-source",
        ),
    ],
)
def test_objections_and_repair_applications_go_to_the_file_they_name(
    event: InputEvent, subject: SubjectRef, fact: ObjectionFact | RepairFact
) -> None:
    """The subject kind and identifier name the file; the fact carries the target as it keys it."""
    assert route(event) == ((subject, fact),)


@pytest.mark.parametrize(
    "event",
    [
        objection(plate_colour=None),
        objection(plate_number=" "),
        objection(subject_kind=SubjectKind.CARRIER, subject_code=None, **_NOT_A_VEHICLE),
        # A plate under another kind of subject names no file of that kind.
        repair_application(subject_code="", plate_number=PLATE, plate_colour=PlateColour.YELLOW),
    ],
)
def test_an_objection_or_application_without_its_file_identifier_goes_nowhere(
    event: InputEvent,
) -> None:
    """Without the identifier of its subject's kind nothing can be keyed (validation rejects it)."""
    assert route(event) == ()


def test_a_list_entry_objection_without_its_rule_has_no_entry_key() -> None:
    """An incomplete target is no key: the file cannot match it (validation rejects it)."""
    ((_, fact),) = route(objection(rule_id=None))
    assert isinstance(fact, ObjectionFact)
    assert fact.entry_key is None


def test_the_entry_key_is_the_one_the_file_keys_its_list_entries_by() -> None:
    """``LIST:rule``, as ListEntry.key: the ledger finds the disputed entry by it."""
    ((_, fact),) = route(objection())
    assert isinstance(fact, ObjectionFact)
    entry = ListEntry(
        list_name=ListName.BLACKLIST,
        rule_id=VEHICLE_OVERLOAD,
        policy_version="2016-09-21",
        since=FILED_AT,
        evidence_event_ids=(),
        evidence_violation_ids=(),
        reason="",
    )
    assert fact.entry_key == entry.key

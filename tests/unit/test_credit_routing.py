"""The first hop: which file an event goes to, as which fact."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from processors.facts import DetectionFact, FleetFact, LicenceFact, PenaltyFact, PermitFact
from processors.model import (
    InputEvent,
    LicenceType,
    PenaltyCategory,
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

"""The first hop: which credit file an input event goes to, as which fact.

An event that names a vehicle (a plate and its colour) goes to the **vehicle** file first: only
that file knows the vehicle's oversize permits, its operating certificates and which detections a
penalty confirms, so only it can tell whether a weighing is a violation and whether a penalty and
a weighing are the same case. The vehicle file then forwards each counted violation to the
driver, carrier, loading source and penalised subject (:func:`processors.ledger.apply`).

An event with no vehicle goes straight to its subject's file: an organisation by unified social
credit code, a person by resident ID number.

An objection (异议) or a credit repair (信用修复) application names the file that holds what it
disputes or repairs (``subject_kind`` and the subject's identifier) and goes to that file alone.

**Who a penalty penalises.** ``PenaltyDecision`` says who the subject is (name, USCC or ID
number) but not in which role. This module takes the reading that fits a transport bureau's
cases: an organisation it penalises is a carrier, and a person a driver, unless the decision
names a *different* carrier or driver, in which case the subject is a third party (e.g. a
consignor who instigated the overloading) and gets a ``PERSON`` file. A suspension order
(停业整顿) always goes to a carrier.
"""

from __future__ import annotations

from datetime import timedelta
from typing import assert_never

from processors.facts import (
    DetectionFact,
    Fact,
    FleetFact,
    LicenceFact,
    ObjectionFact,
    PenaltyFact,
    PermitFact,
    RepairFact,
    start_of_day,
)
from processors.model import (
    InputEvent,
    LicenceType,
    LicensingDecision,
    Objection,
    ObjectionTarget,
    OverloadDetection,
    PenaltyCategory,
    PenaltyDecision,
    PlateColour,
    RepairApplication,
    SubjectKind,
    SubjectRef,
    vehicle_key,
)

__all__ = ["penalised_subject", "route"]

Routed = tuple[tuple[SubjectRef, Fact], ...]
"""Facts and the files they go to."""

# A validity date runs to the last instant of that day.
_LAST_INSTANT_OF_DAY = timedelta(days=1, microseconds=-1)


def route(event: InputEvent) -> Routed:
    """The first file(s) an event concerns, with the fact each ingests; empty if none can be keyed.

    Events are expected to have passed ``processors.validation``; a blank optional identifier
    counts as absent, as validation reads it.
    """
    match event:
        case OverloadDetection():
            return _route_detection(event)
        case PenaltyDecision():
            return _route_penalty(event)
        case LicensingDecision():
            return _route_licensing(event)
        case Objection():
            return _route_objection(event)
        case RepairApplication():
            return _route_repair(event)
        case _:
            assert_never(event)


def penalised_subject(decision: PenaltyDecision) -> SubjectRef | None:
    """The file of the subject a decision penalises (see the module docstring for the roles)."""
    uscc = _present(decision.subject_uscc)
    if uscc is not None:
        carrier = _present(decision.carrier_uscc)
        is_carrier = (
            carrier in (None, uscc)
            or PenaltyCategory.SUSPENSION_ORDER in decision.penalty_categories
        )
        return SubjectRef(SubjectKind.CARRIER if is_carrier else SubjectKind.PERSON, uscc)
    id_number = _present(decision.subject_id_number)
    if id_number is not None:
        driver = _present(decision.driver_id_number)
        kind = SubjectKind.DRIVER if driver in (None, id_number) else SubjectKind.PERSON
        return SubjectRef(kind, id_number)
    return None


def _route_detection(detection: OverloadDetection) -> Routed:
    vehicle = _vehicle(detection.plate_number, detection.plate_colour)
    if vehicle is None:
        return ()
    fact = DetectionFact(
        event_id=detection.event_id,
        detection_id=detection.detection_id,
        detected_at=detection.event_time,
        station_id=detection.station_id,
        station_type=detection.station_type,
        gross_weight_kg=detection.gross_weight_kg,
        legal_limit_kg=detection.legal_limit_kg,
        driver=_ref(SubjectKind.DRIVER, detection.driver_id_number),
        carrier=_ref(SubjectKind.CARRIER, detection.carrier_uscc),
        loading_source=_ref(SubjectKind.LOADING_SOURCE, detection.loading_source_uscc),
    )
    return ((vehicle, fact),)


def _route_penalty(decision: PenaltyDecision) -> Routed:
    penalised = penalised_subject(decision)
    driver = _ref(SubjectKind.DRIVER, decision.driver_id_number)
    carrier = _ref(SubjectKind.CARRIER, decision.carrier_uscc)
    if penalised is not None and penalised.kind is SubjectKind.DRIVER:
        driver = penalised
    if penalised is not None and penalised.kind is SubjectKind.CARRIER:
        carrier = penalised
    fact = PenaltyFact(
        event_id=decision.event_id,
        decision_number=decision.decision_number,
        revision=decision.revision,
        change_type=decision.change_type,
        code=decision.violation_code,
        decision_date=decision.decision_date,
        fine_amount_yuan=decision.fine_amount_yuan,
        penalty_categories=decision.penalty_categories,
        related_detection_ids=tuple(sorted(set(decision.related_detection_ids))),
        penalised=penalised,
        driver=driver,
        carrier=carrier,
        procedure=decision.procedure,
    )
    vehicle = _vehicle(decision.plate_number, decision.plate_colour)
    target = vehicle if vehicle is not None else penalised
    return () if target is None else ((target, fact),)


def _route_licensing(decision: LicensingDecision) -> Routed:
    match decision.licence_type:
        case LicenceType.OVERSIZE_TRANSPORT_PERMIT:
            vehicle = _vehicle(decision.plate_number, decision.plate_colour)
            if vehicle is None:
                return ()
            permit = PermitFact(
                event_id=decision.event_id,
                licence_number=decision.licence_number,
                revision=decision.revision,
                status=decision.status,
                decision_date=decision.decision_date,
                # Without instants the permit covers its validity days whole, in China time.
                valid_from=decision.permit_valid_from or start_of_day(decision.valid_from),
                valid_until=decision.permit_valid_until
                or (
                    None
                    if decision.valid_until is None
                    else start_of_day(decision.valid_until) + _LAST_INSTANT_OF_DAY
                ),
            )
            return ((vehicle, permit),)
        case LicenceType.VEHICLE_OPERATING_CERTIFICATE:
            vehicle = _vehicle(decision.plate_number, decision.plate_colour)
            if vehicle is None:
                return ()
            carrier = _ref(SubjectKind.CARRIER, decision.carrier_uscc or decision.subject_uscc)
            certificate = FleetFact(
                event_id=decision.event_id,
                licence_number=decision.licence_number,
                revision=decision.revision,
                status=decision.status,
                decision_date=decision.decision_date,
                vehicle_key=vehicle.key,
                carrier=carrier,
                valid_from=decision.valid_from,
                valid_until=decision.valid_until,
                carriers_named=() if carrier is None else (carrier.key,),
            )
            return ((vehicle, certificate),)
        case LicenceType.ROAD_TRANSPORT_OPERATING_LICENCE | LicenceType.DRIVER_QUALIFICATION:
            holder = (
                _ref(SubjectKind.CARRIER, decision.subject_uscc)
                if decision.licence_type is LicenceType.ROAD_TRANSPORT_OPERATING_LICENCE
                else _ref(SubjectKind.DRIVER, decision.subject_id_number)
            )
            if holder is None:
                return ()
            licence = LicenceFact(
                event_id=decision.event_id,
                licence_number=decision.licence_number,
                licence_type=decision.licence_type,
                status=decision.status,
                decision_date=decision.decision_date,
                valid_from=decision.valid_from,
            )
            return ((holder, licence),)
        case _:
            assert_never(decision.licence_type)


def _route_objection(objection: Objection) -> Routed:
    holder = _file_subject(objection)
    if holder is None:
        return ()
    entry_key = decision_number = None
    if objection.target is ObjectionTarget.LIST_ENTRY:
        list_name, rule_id = _present(objection.list_name), _present(objection.rule_id)
        if list_name is not None and rule_id is not None:
            # As the file keys its list entries (ListEntry.key).
            entry_key = f"{list_name}:{rule_id}"
    else:
        decision_number = objection.decision_number
    fact = ObjectionFact(
        event_id=objection.event_id,
        objection_id=objection.objection_id,
        action=objection.action,
        target=objection.target,
        occurred_at=objection.occurred_at,
        handled_by=objection.handled_by,
        entry_key=entry_key,
        decision_number=decision_number,
        reason=objection.reason,
    )
    return ((holder, fact),)


def _route_repair(application: RepairApplication) -> Routed:
    holder = _file_subject(application)
    if holder is None:
        return ()
    fact = RepairFact(
        event_id=application.event_id,
        application_id=application.application_id,
        decision_number=application.decision_number,
        applied_at=application.applied_at,
        obligations_fulfilled=application.obligations_fulfilled,
        public_commitment=application.public_commitment,
    )
    return ((holder, fact),)


def _file_subject(event: Objection | RepairApplication) -> SubjectRef | None:
    """The file an objection or repair application names: by plate and colour for a vehicle."""
    if event.subject_kind is SubjectKind.VEHICLE:
        return _vehicle(event.plate_number, event.plate_colour)
    return _ref(event.subject_kind, event.subject_code)


def _present(value: str | None) -> str | None:
    if value is None:
        return None
    stripped = value.strip()
    return stripped or None


def _ref(kind: SubjectKind, key: str | None) -> SubjectRef | None:
    present = _present(key)
    return None if present is None else SubjectRef(kind, present)


def _vehicle(plate_number: str | None, plate_colour: PlateColour | None) -> SubjectRef | None:
    plate = _present(plate_number)
    if plate is None or plate_colour is None:
        return None
    return SubjectRef(SubjectKind.VEHICLE, vehicle_key(plate, plate_colour))

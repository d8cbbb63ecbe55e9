"""Credit files as JSON-safe dicts for the stream's table, and back."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from processors.facts import ObjectionFact, RepairFact
from processors.file_codec import FileFormatError, file_from_dict, file_to_dict
from processors.ledger import CreditFile
from processors.model import (
    LicenceStatus,
    ObjectionAction,
    ObjectionTarget,
    PenaltyCategory,
    ViolationCode,
)
from tests.unit.credit_support import (
    CARRIER_USCC,
    LOADING_SOURCE_USCC,
    PLATE,
    Pipeline,
    carrier,
    certificate,
    instant,
    penalty,
    permit,
    review,
    vehicle,
    weighing,
)


def _rich_files() -> dict[Any, CreditFile]:
    """Files with every section filled: detections, penalties (one revoked), permits,
    certificates, received violations, list entries, recent ids and parties."""
    pipeline = Pipeline().feed(
        certificate("cert", PLATE),
        certificate(
            "cert-rev", "鲁P00002", status=LicenceStatus.REVOKED, revision=1, number="cert-鲁P00002"
        ),
        permit("pm", instant("2024-02-01"), instant("2024-02-02")),
        weighing(
            "w1", instant("2024-03-01"), detection_id="D-1", loading_source_uscc=LOADING_SOURCE_USCC
        ),
        penalty("p1", "2024-03-05", detections=("D-1",), fine_yuan="12345.67"),
        *[penalty(f"p{n}", f"2024-0{n}-01") for n in (4, 5, 6)],
        penalty("rev", "2024-07-01", number="东交罚〔p6〕", revision=1),
        penalty(
            "o",
            "2024-08-01",
            plate=None,
            subject_uscc=CARRIER_USCC,
            code=ViolationCode.OTHER,
            categories=(PenaltyCategory.WARNING,),
            fine_yuan="0",
        ),
    )
    pipeline.deliver(carrier(), review("2024-09-01"))
    objection = ObjectionFact(
        "obj-1",
        "O-1",
        ObjectionAction.FILED,
        ObjectionTarget.LIST_ENTRY,
        instant("2024-09-02"),
        "东阿县交通运输局",
        entry_key="BLACKLIST:overload.vehicle",
    )
    repair = RepairFact("rep-1", "R-1", "东交罚〔p4〕", instant("2024-09-03"), True, True)
    pipeline.deliver(vehicle(), objection).deliver(vehicle(), repair)
    return pipeline.files


def test_every_file_survives_the_round_trip_through_json() -> None:
    """file_from_dict(json(file_to_dict(f))) == f for files with every section in use."""
    files = _rich_files()
    assert any(file.entries for file in files.values())
    assert any(file.entry_records and file.objections and file.repairs for file in files.values())
    assert any(file.detections and file.permits for file in files.values())
    for file in files.values():
        stored = json.loads(json.dumps(file_to_dict(file), ensure_ascii=False))
        assert file_from_dict(stored) == file
        assert file_to_dict(file_from_dict(stored)) == stored


def test_the_dict_holds_only_json_types_and_no_floats() -> None:
    """Money stays a decimal string: a float would round fen away."""

    def walk(value: object) -> None:
        assert type(value) in (dict, list, str, int, bool, type(None)), value
        if isinstance(value, dict):
            assert all(isinstance(key, str) for key in value)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for file in _rich_files().values():
        walk(file_to_dict(file))
    vehicle_file = next(f for f in _rich_files().values() if f.penalties)
    stored: Any = file_to_dict(vehicle_file)
    fines = [decision["fine_amount_yuan"] for decision in stored["penalties"].values()]
    assert "12345.67" in fines


def _vehicle_dict() -> dict[str, Any]:
    file = next(f for f in _rich_files().values() if f.detections)
    stored: dict[str, Any] = file_to_dict(file)
    return stored


def _first(section: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = next(iter(section.values()))
    return first


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        pytest.param(lambda d: d.update(format=3), r"format: expected 2, got 3", id="format"),
        pytest.param(
            lambda d: d.update(format=1), r"format: expected 2, got 1", id="format-1-with-lifecycle"
        ),
        pytest.param(lambda d: d.pop("entries"), r"keys: expected", id="missing-section"),
        pytest.param(
            lambda d: _first(d["detections"]).update(detected_at="2024-03-01T10:00:00"),
            r"detected_at: '2024-03-01T10:00:00' has no timezone",
            id="naive-instant",
        ),
        pytest.param(
            lambda d: _first(d["penalties"]).update(fine_amount_yuan=2000.5),
            r"fine_amount_yuan: 2000.5 is not a decimal string",
            id="float-money",
        ),
        pytest.param(
            lambda d: _first(d["penalties"]).update(change_type="CANCELLED"),
            r"change_type: 'CANCELLED' is not a ChangeType",
            id="unknown-enum",
        ),
        pytest.param(
            lambda d: d.update(subject="TRUCK:鲁P12345|YELLOW"),
            r"subject: 'TRUCK' is not a subject kind",
            id="unknown-subject-kind",
        ),
        pytest.param(
            lambda d: _first(d["detections"]).pop("station_id"),
            r"detections\.D-1: expected keys",
            id="missing-field",
        ),
        pytest.param(
            lambda d: _first(d["detections"]).update(gross_weight_kg="55000"),
            r"gross_weight_kg: expected int, got '55000'",
            id="number-as-string",
        ),
    ],
)
def test_a_corrupt_dict_is_refused_with_the_path(
    corrupt: Callable[[dict[str, Any]], object], message: str
) -> None:
    """A bad table entry fails loudly, naming what is wrong, instead of judging wrongly."""
    data = copy.deepcopy(_vehicle_dict())
    corrupt(data)
    with pytest.raises(FileFormatError, match=message):
        file_from_dict(data)


def test_a_format_1_file_reads_with_empty_lifecycle_records() -> None:
    """Files stored before the lifecycle existed read back with no entry records."""
    file = next(f for f in _rich_files().values() if f.entry_records)
    stored = file_to_dict(file)
    for name in ("entry_records", "objections", "repairs"):
        del stored[name]
    stored["format"] = 1
    read = file_from_dict(stored)
    assert (read.entry_records, read.objections, read.repairs) == ({}, {}, {})
    assert read.entries == file.entries

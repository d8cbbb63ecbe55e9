"""Validation of the API's identifiers (api/queries.py) with processors.identifiers."""

from __future__ import annotations

from datetime import date

import pytest

from api.queries import (
    MAX_BATCH,
    BatchError,
    Kind,
    QueryError,
    carrier_query,
    driver_query,
    parse_batch,
    vehicle_query,
)
from processors.identifiers import resident_id_check_digit, uscc_check_character

TODAY = date(2026, 6, 1)
USCC = "91371524MA3C00042" + uscc_check_character("91371524MA3C00042")
ID_NUMBER = "37152419800101123" + resident_id_check_digit("37152419800101123")


@pytest.mark.parametrize(
    ("plate", "colour", "subject"),
    [
        ("鲁P12345", None, "VEHICLE:鲁P12345|YELLOW"),  # trucks are yellow by default
        ("鲁p·12345", "yellow", "VEHICLE:鲁P12345|YELLOW"),  # as people type it
        ("鲁Ｐ１２３４５", "BLUE", "VEHICLE:鲁P12345|BLUE"),  # full-width
        ("鲁P1234挂", None, "VEHICLE:鲁P1234挂|YELLOW"),  # a trailer
        # A large new-energy truck: its plate is yellow-green, so that is the default.
        ("鲁P12345D", None, "VEHICLE:鲁P12345D|YELLOW_GREEN"),
    ],
)
def test_vehicle_queries_normalise_the_plate_and_default_the_colour(
    plate: str, colour: str | None, subject: str
) -> None:
    """The subject is keyed as the worker keys vehicles."""
    query = vehicle_query(plate, colour)
    assert query.kind is Kind.VEHICLE
    assert query.subject == subject
    assert query.audit_identifier == subject.removeprefix("VEHICLE:")


@pytest.mark.parametrize(
    ("plate", "colour", "field", "code"),
    [
        ("ABC123", None, "plate", "PLATE_INVALID"),
        ("鲁P123", None, "plate", "PLATE_INVALID"),
        ("鲁P12345", "PURPLE", "colour", "PLATE_COLOUR_INVALID"),
        ("鲁P12345", "GREEN", "colour", "PLATE_COLOUR_MISMATCH"),
        ("鲁PD12345", "YELLOW", "colour", "PLATE_COLOUR_MISMATCH"),
    ],
)
def test_malformed_plates_name_the_field_and_the_reason(
    plate: str, colour: str | None, field: str, code: str
) -> None:
    """The reason codes are those of processors.identifiers."""
    with pytest.raises(QueryError) as caught:
        vehicle_query(plate, colour)
    assert (caught.value.field, caught.value.code) == (field, code)


def test_carrier_queries_check_the_uscc() -> None:
    """A valid code is accepted (lower case tidied); a wrong check character is not."""
    assert carrier_query(USCC.lower()).subject == f"CARRIER:{USCC}"
    wrong = USCC[:-1] + ("0" if USCC[-1] != "0" else "1")
    with pytest.raises(QueryError) as caught:
        carrier_query(wrong)
    assert (caught.value.field, caught.value.code) == ("uscc", "USCC_INVALID")
    assert wrong not in caught.value.message  # masked


def test_driver_queries_mask_the_id_number_wherever_it_is_shown() -> None:
    """The subject keeps the number; the shown query and the audit identifier mask it."""
    query = driver_query(ID_NUMBER, TODAY)
    assert query.subject == f"DRIVER:{ID_NUMBER}"
    assert query.audit_identifier == f"{ID_NUMBER[:3]}{'*' * 13}{ID_NUMBER[-2:]}"
    assert ID_NUMBER not in str(query.shown)


@pytest.mark.parametrize(
    "number",
    [
        "371524198001011230",  # wrong check digit (unless it happens to be right)
        "3715241980010112",  # too short
        "001524198001011234",  # no such province
        "371524203001011234",  # born in the future
    ],
)
def test_malformed_id_numbers_are_rejected_without_echoing_them(number: str) -> None:
    """RESIDENT_ID_INVALID, the number masked in the message."""
    if number == ID_NUMBER:
        pytest.skip("the sample is accidentally valid")
    with pytest.raises(QueryError) as caught:
        driver_query(number, TODAY)
    assert caught.value.code == "RESIDENT_ID_INVALID" and caught.value.field == "id_number"
    assert number not in caught.value.message


def test_a_batch_parses_every_kind() -> None:
    """Queries come back in order."""
    queries = parse_batch(
        {
            "queries": [
                {"kind": "vehicle", "plate": "鲁P12345", "colour": "YELLOW"},
                {"kind": "carrier", "uscc": USCC},
                {"kind": "driver", "id_number": ID_NUMBER},
            ]
        },
        TODAY,
    )
    assert [q.kind for q in queries] == [Kind.VEHICLE, Kind.CARRIER, Kind.DRIVER]


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (None, [("queries", "BODY_INVALID")]),
        ({"queries": []}, [("queries", "BODY_INVALID")]),
        ({"queries": [{}] * (MAX_BATCH + 1)}, [("queries", "TOO_MANY_QUERIES")]),
        (
            {
                "queries": [
                    {"kind": "vehicle", "plate": "X"},
                    {"kind": "vehicle", "plate": "鲁P12345", "colour": 3},
                    {"kind": "carrier"},
                    {"kind": "boat"},
                    "鲁P12345",
                ]
            },
            [
                ("queries[0].plate", "PLATE_INVALID"),
                ("queries[1].colour", "PLATE_COLOUR_INVALID"),
                ("queries[2].uscc", "FIELD_REQUIRED"),
                ("queries[3].kind", "QUERY_KIND_INVALID"),
                ("queries[4]", "BODY_INVALID"),
            ],
        ),
    ],
)
def test_a_malformed_batch_lists_every_error(body: object, errors: list[tuple[str, str]]) -> None:
    """Each error names its query's field."""
    with pytest.raises(BatchError) as caught:
        parse_batch(body, TODAY)
    assert [(e.field, e.code) for e in caught.value.errors] == errors

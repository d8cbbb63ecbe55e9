"""Identifier checks: USCC (GB 32100-2015), resident ID number (GB 11643-1999), plates (GA 36)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.identifiers import (
    ENTITY_TYPES_BY_REGISTRATION_AUTHORITY,
    PLATE_COLOUR_MISMATCH,
    PLATE_INVALID,
    PROVINCE_CODES,
    RESIDENT_ID_INVALID,
    USCC_CHARSET,
    USCC_INVALID,
    check_plate,
    check_resident_id,
    check_uscc,
    mask_identifier,
    normalise_plate,
    normalise_resident_id,
    normalise_uscc,
    resident_id_check_digit,
    uscc_check_character,
)
from processors.model import PlateColour

TODAY = date(2025, 10, 13)


def with_uscc_check(first17: str) -> str:
    """A USCC with a correct check character, to test the other parts of the code."""
    return first17 + uscc_check_character(first17)


def with_resident_id_check(first17: str) -> str:
    """A resident ID number with a correct check digit, to test the other parts of it."""
    return first17 + resident_id_check_digit(first17)


# --- unified social credit code -----------------------------------------------------------------

PUBLISHED_USCCS = [
    "91110000600037341L",  # python-stdnum's doctest example
    "914403001922038216",  # 华为技术有限公司
    "91440300708461136T",  # 深圳市腾讯计算机系统有限公司
    "91330100799655058B",  # 阿里巴巴（中国）有限公司
    "91110108558521630L",  # 小米通讯技术有限公司
    "91110000802100433B",  # example given in the brief: its check character is right
    "121200004013590816",  # 机构编制 / 事业单位
    "91620105L015101280",  # a letter inside the organisation code
    "91340600MA2PBM9HXD",  # post-2015 code (MA…) assigned by market regulation
    "92340602MA2PBMEM24",  # 个体工商户
]


@pytest.mark.parametrize("code", PUBLISHED_USCCS)
def test_uscc_accepts_published_codes(code: str) -> None:
    """Codes published by their holders pass every GB 32100-2015 check."""
    assert check_uscc(code) is None


@pytest.mark.parametrize("code", PUBLISHED_USCCS)
def test_uscc_check_character_reproduces_published_codes(code: str) -> None:
    """The GB 32100-2015 check character of a published code is its 18th character."""
    assert uscc_check_character(code[:17]) == code[17]


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("", "must be 18 characters, not 0"),
        ("91110000600037341", "must be 18 characters, not 17"),
        ("91110000600037341L0", "must be 18 characters, not 19"),
        ("91110000600037341l", "only digits and upper-case letters"),  # normalise first
        ("9111000060003IOZSV", "only digits and upper-case letters"),
        ("９1110000600037341L", "only digits and upper-case letters"),  # full-width 9
        (with_uscc_check("B1110000600037341"), "unknown registration authority code 'B'"),
        (with_uscc_check("94110000600037341"), "entity type '4' is not used"),
        (with_uscc_check("Y2110000600037341"), "entity type '2' is not used"),
        (with_uscc_check("91A10000600037341"), "characters 3-8 must be"),
        # The brief's example for 山东: the check character of this body is C, not U.
        ("91370000163042397U", "check character is U, expected C"),
        ("91110000600037341N", "check character is N, expected L"),
    ],
)
def test_uscc_rejects_malformed_codes(code: str, problem: str) -> None:
    """Length, charset, authority, entity type, region and check character (GB 32100-2015)."""
    rejection = check_uscc(code)
    assert rejection is not None
    assert rejection.reason_code == USCC_INVALID
    assert problem in rejection.message


@pytest.mark.parametrize(
    ("authority", "entity_type"),
    [
        (authority, entity_type)
        for authority, entity_types in ENTITY_TYPES_BY_REGISTRATION_AUTHORITY.items()
        for entity_type in sorted(entity_types)
    ],
)
def test_uscc_accepts_every_assigned_authority_and_entity_type(
    authority: str, entity_type: str
) -> None:
    """Every 登记管理部门码 / 机构类别码 pair assigned under GB 32100-2015 is accepted."""
    assert check_uscc(with_uscc_check(f"{authority}{entity_type}371524004311071")) is None


@pytest.mark.parametrize(
    "first17", ["", "9111000060003734", "9111000060003734I", "911100006000373410"]
)
def test_uscc_check_character_refuses_a_bad_body(first17: str) -> None:
    """Only 17 characters of the GB 32100-2015 charset have a check character."""
    with pytest.raises(ValueError, match="17 characters"):
        uscc_check_character(first17)


def test_uscc_message_masks_the_code() -> None:
    """A rejected code is shown masked: it may be a mis-filed personal ID number."""
    rejection = check_uscc("110105194912310021")
    assert rejection is not None
    assert "110105194912310021" not in rejection.message
    assert "110*************21" in rejection.message


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("91110000600037341l", "91110000600037341L"),
        (" 91 110000 600037341L ", "91110000600037341L"),
        ("９１１１００００６０００３７３４１Ｌ", "91110000600037341L"),
    ],
)
def test_normalise_uscc_yields_the_checked_form(raw: str, normalised: str) -> None:
    """Lower case, spaces and full-width characters become the GB 32100-2015 form."""
    assert normalise_uscc(raw) == normalised
    assert check_uscc(normalise_uscc(raw)) is None


_USCC_BODY = st.text(alphabet=USCC_CHARSET, min_size=17, max_size=17)
_WELL_FORMED_USCC_BODY = st.builds(
    lambda head, region, organisation: head + region + organisation,
    st.sampled_from(
        [
            authority + entity_type
            for authority, entity_types in ENTITY_TYPES_BY_REGISTRATION_AUTHORITY.items()
            for entity_type in entity_types
        ]
    ),
    st.text(alphabet="0123456789", min_size=6, max_size=6),
    st.text(alphabet=USCC_CHARSET, min_size=9, max_size=9),
)


@given(_WELL_FORMED_USCC_BODY)
def test_uscc_with_computed_check_character_is_valid(first17: str) -> None:
    """Appending the GB 32100-2015 check character to a well-formed body gives a valid code."""
    assert check_uscc(with_uscc_check(first17)) is None


@given(_USCC_BODY, st.integers(0, 17), st.sampled_from(USCC_CHARSET))
def test_uscc_single_substitution_is_detected(first17: str, position: int, new: str) -> None:
    """Changing any one character of a code breaks its check character (mod 31, prime)."""
    code = with_uscc_check(first17)
    if code[position] == new:
        new = USCC_CHARSET[(USCC_CHARSET.index(new) + 1) % len(USCC_CHARSET)]
    changed = code[:position] + new + code[position + 1 :]
    assert uscc_check_character(changed[:17]) != changed[17]
    assert check_uscc(changed) is not None


# --- resident ID number -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [
        "11010519491231002X",  # GB 11643-1999's own worked example
        "360426199101010071",  # python-stdnum's examples
        "44011320141005001X",
        with_resident_id_check("81000019900101123"),  # 港澳台居民居住证, Hong Kong
        with_resident_id_check("83000020000229123"),  # 台湾居民居住证, leap day
        with_resident_id_check("37152419000101123"),  # earliest accepted birth date
        with_resident_id_check(f"371524{TODAY:%Y%m%d}123"),  # born today
    ],
)
def test_resident_id_accepts_well_formed_numbers(number: str) -> None:
    """Well-formed 18-character numbers pass every GB 11643-1999 check."""
    assert check_resident_id(number, TODAY) is None


@pytest.mark.parametrize(
    ("number", "problem"),
    [
        ("", "must be 18 characters, not 0"),
        ("110105491231002", "must be 18 characters, not 15"),  # first-generation ID, expired
        ("11010519491231002x", "digit or an upper-case X"),  # normalise first
        ("1101051949123100AX", "17 digits"),
        ("１10105194912310021", "17 digits"),  # full-width 1
        (with_resident_id_check("99010519491231002"), "province code"),
        (with_resident_id_check("00010519491231002"), "province code"),
        (with_resident_id_check("91010519491231002"), "province code"),
        (with_resident_id_check("11010519490230002"), "not a calendar date"),
        (with_resident_id_check("11010519491331002"), "not a calendar date"),
        (with_resident_id_check("11010500000101002"), "not a calendar date"),
        (with_resident_id_check("11010520251014002"), "in the future"),  # TODAY + 1 day
        # GB 11643-1999's second example: its check digit is right, but 1880 is too early.
        ("440524188001010014", "before 1900"),
        ("110105194912310021", "check digit does not match"),
    ],
)
def test_resident_id_rejects_malformed_numbers(number: str, problem: str) -> None:
    """Length, charset, province, birth date and check digit (GB 11643-1999)."""
    rejection = check_resident_id(number, TODAY)
    assert rejection is not None
    assert rejection.reason_code == RESIDENT_ID_INVALID
    assert problem in rejection.message


def test_resident_id_birth_date_is_judged_against_the_given_today() -> None:
    """A birth date is in the future only relative to the caller's today."""
    number = with_resident_id_check("37152420251014123")
    assert check_resident_id(number, TODAY) is not None
    assert check_resident_id(number, TODAY + timedelta(days=1)) is None


def test_resident_id_message_hides_the_number_and_birth_date() -> None:
    """A rejection names neither the number nor the birth date: both are personal data."""
    number = with_resident_id_check("11010520991231002")
    rejection = check_resident_id(number, TODAY)
    assert rejection is not None
    assert number not in rejection.message
    assert "20991231" not in rejection.message
    assert "2099" not in rejection.message
    assert rejection.message.startswith(f"resident ID number {number[:3]}*************")


@pytest.mark.parametrize(
    "first17", ["", "1101051949123100", "1101051949123100X", "１1010519491231002"]
)
def test_resident_id_check_digit_refuses_a_bad_body(first17: str) -> None:
    """Only 17 ASCII digits have a GB 11643-1999 check digit."""
    with pytest.raises(ValueError, match="17 ASCII digits"):
        resident_id_check_digit(first17)


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("11010519491231002x", "11010519491231002X"),
        (" 110105 19491231 002X ", "11010519491231002X"),
        ("１１０１０５１９４９１２３１００２ｘ", "11010519491231002X"),
    ],
)
def test_normalise_resident_id_reads_lower_case_x_as_check_character(
    raw: str, normalised: str
) -> None:
    """Typed forms, lower-case x included, become the GB 11643-1999 form."""
    assert normalise_resident_id(raw) == normalised
    assert check_resident_id(normalise_resident_id(raw), TODAY) is None


_WELL_FORMED_RESIDENT_ID_BODY = st.builds(
    lambda province, area, birth, sequence: f"{province}{area}{birth:%Y%m%d}{sequence}",
    st.sampled_from(sorted(PROVINCE_CODES)),
    st.text(alphabet="0123456789", min_size=4, max_size=4),
    st.dates(min_value=date(1900, 1, 1), max_value=TODAY),
    st.text(alphabet="0123456789", min_size=3, max_size=3),
)


@given(_WELL_FORMED_RESIDENT_ID_BODY)
def test_resident_id_with_computed_check_digit_is_valid(first17: str) -> None:
    """Appending the GB 11643-1999 check digit to a well-formed body gives a valid number."""
    assert check_resident_id(with_resident_id_check(first17), TODAY) is None


@given(
    st.text(alphabet="0123456789", min_size=17, max_size=17),
    st.integers(0, 17),
    st.sampled_from("0123456789X"),
)
def test_resident_id_single_substitution_is_detected(first17: str, position: int, new: str) -> None:
    """Changing any one character of a number breaks its check digit (mod 11, prime)."""
    number = with_resident_id_check(first17)
    if position < 17 and new == "X":
        new = "0"  # the body holds digits only
    if number[position] == new:
        new = "0123456789X"[("0123456789X".index(new) + 1) % (11 if position == 17 else 10)]
    changed = number[:position] + new + number[position + 1 :]
    assert resident_id_check_digit(changed[:17]) != changed[17]
    assert check_resident_id(changed, TODAY) is not None


# --- plate numbers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plate", "colour"),
    [
        ("鲁P12345", PlateColour.YELLOW),  # 聊城 truck
        ("鲁PB8K91", PlateColour.YELLOW),
        ("京A12345", PlateColour.BLUE),
        ("鲁P1234挂", PlateColour.YELLOW),  # trailer
        ("鲁PD12345", PlateColour.GREEN),  # small new-energy, pure electric
        ("鲁PFA1234", PlateColour.GREEN),  # small new-energy, other drive
        ("粤BA12345", PlateColour.GREEN),  # small new-energy, letters added after D and F
        ("鲁P12345D", PlateColour.YELLOW_GREEN),  # large new-energy, e.g. an electric truck
        ("鲁P12345F", PlateColour.YELLOW_GREEN),
        ("鲁P12345D", PlateColour.GREEN),  # both new-energy colours are accepted on either size
        ("鲁P12345", None),  # shape only
        ("鲁PD12345", None),
    ],
)
def test_plate_accepts_ordinary_and_new_energy_plates(
    plate: str, colour: PlateColour | None
) -> None:
    """GA 36-2018 ordinary, trailer and new-energy plates with a matching colour pass."""
    assert check_plate(plate, colour) is None


@pytest.mark.parametrize(
    "plate",
    [
        "",
        "鲁P1234",  # too short
        "鲁P1234567",  # too long
        "鲁I12345",  # I is never an authority letter
        "鲁O12345",  # nor O
        "鲁P1234O",  # nor a serial character
        "鲁p12345",  # normalise first
        "鲁P 12345",
        "鲁P·12345",
        "港A12345",  # not a mainland province
        "使123456",
        "鲁P1234学",  # coach plate: not accepted here
        "鲁P12345挂",  # trailer plates have four serial characters
        "鲁P123456",  # eight characters, but no new-energy letter
        "鲁PX12345",  # X does not mark a new-energy drive
        "鲁PD1A234",  # small new-energy: the last four are digits
        "鲁P1234DD",  # large new-energy: five digits first
        "ＡＢ12345",
    ],
)
def test_plate_rejects_malformed_numbers(plate: str) -> None:
    """Anything that is not a GA 36-2018 ordinary, trailer or new-energy plate is rejected."""
    rejection = check_plate(plate, PlateColour.YELLOW)
    assert rejection is not None
    assert rejection.reason_code == PLATE_INVALID


@pytest.mark.parametrize(
    ("plate", "colour"),
    [
        ("鲁PD12345", PlateColour.BLUE),
        ("鲁PD12345", PlateColour.YELLOW),
        ("鲁P12345D", PlateColour.YELLOW),
        ("鲁P12345", PlateColour.GREEN),
        ("鲁P12345", PlateColour.YELLOW_GREEN),
        ("鲁P1234挂", PlateColour.GREEN),
    ],
)
def test_plate_rejects_colour_contradicting_the_shape(plate: str, colour: PlateColour) -> None:
    """New-energy plates are green or yellow-green, and only they are (GA 36-2018)."""
    rejection = check_plate(plate, colour)
    assert rejection is not None
    assert rejection.reason_code == PLATE_COLOUR_MISMATCH
    assert plate not in rejection.message


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("鲁p12345", "鲁P12345"),
        (" 鲁P 12345 ", "鲁P12345"),
        ("鲁P·12345", "鲁P12345"),
        ("鲁P-1234挂", "鲁P1234挂"),
        ("鲁Ｐ１２３４５", "鲁P12345"),
        ("鲁Ｐ\u300012345", "鲁P12345"),  # ideographic space
        ("鲁pd12345", "鲁PD12345"),
    ],
)
def test_normalise_plate_yields_the_checked_form(raw: str, normalised: str) -> None:
    """Spaces, separator dots, lower case and full-width characters are tidied away."""
    assert normalise_plate(raw) == normalised
    assert check_plate(normalise_plate(raw), None) is None


# --- masking ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("11010519491231002X", "110*************2X"),
        ("91110000600037341L", "911*************1L"),
        ("0123456789", "012*****89"),
        ("鲁P12345", "*******"),  # too short to show both ends
        ("123456789", "*********"),
        ("", ""),
    ],
)
def test_mask_identifier_keeps_three_leading_and_two_trailing_characters(
    value: str, masked: str
) -> None:
    """At most the first 3 and last 2 characters show, and never more than half the value."""
    assert mask_identifier(value) == masked

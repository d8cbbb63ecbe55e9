"""The website's safety net against unmasked personal data (website/privacy.py)."""

from __future__ import annotations

import pytest

from processors.identifiers import resident_id_check_digit
from website.privacy import (
    MOBILE_PHONE,
    RESIDENT_ID,
    PersonalDataFinding,
    find_unmasked_personal_data,
    unmasked_personal_data_in,
)

VALID_ID = "37152419900101123" + resident_id_check_digit("37152419900101123")
"""A well-formed resident ID number of a person born 1990-01-01 in 东阿县 (371524)."""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # masked values as the publisher sends them
        ("371***********123X", None),
        ("371524********1232", None),
        ("138****5678", None),
        # unmasked resident ID numbers
        (VALID_ID, RESIDENT_ID),
        ("11010519491231002X", RESIDENT_ID),
        ("11010519491231002x", RESIDENT_ID),  # lower-case check character
        (f"当事人身份证号{VALID_ID}，住东阿县", RESIDENT_ID),  # inside Chinese text
        ("371524199001011239", RESIDENT_ID),  # wrong check digit: still somebody's number
        ("３７１５２４１９９００１０１１２３２", RESIDENT_ID),  # full-width digits
        ("937152199001011234", RESIDENT_ID),  # foreigner's permanent residence ID layout
        # 18 digits that are not a person's number
        ("113715198506120062", None),  # a valid all-digit USCC, date-like by chance
        ("371524199013011232", None),  # month 13: no birth date
        ("991524199001011232", None),  # no province 99
        ("91371524MA3C00000X", None),  # an ordinary USCC
        ("3715241990010112321", None),  # 19 digits: part of a longer number
        # mobile phone numbers
        ("13812345678", MOBILE_PHONE),
        ("联系电话：13812345678。", MOBILE_PHONE),
        ("138 1234 5678", MOBILE_PHONE),
        ("138-1234-5678", MOBILE_PHONE),
        ("+8613812345678", MOBILE_PHONE),
        ("１３８１２３４５６７８", MOBILE_PHONE),  # full-width digits
        # numbers that are not phone numbers
        ("12812345678", None),  # no mobile prefix 12x
        ("138123456789", None),  # 12 digits
        ("12345", None),
        ("鲁P12345", None),
        ("0.2", None),
        ("2025-09-26", None),
        ("东交罚〔2025〕第00123号", None),
        ("0635-3281234", None),  # a landline (东阿 area code): not a mobile number
        ("", None),
    ],
)
def test_unmasked_personal_data_in_text(text: str, expected: str | None) -> None:
    """Unmasked ID and mobile numbers are found; masked values and other numbers pass."""
    assert unmasked_personal_data_in(text) == expected


def test_finding_names_the_field_and_never_the_value() -> None:
    """The finding says where and what, and carries no part of the number."""
    finding = find_unmasked_personal_data(
        [("subject_name", "东阿县某运输有限公司"), ("fields.CF_XDR_ZJHM", VALID_ID)]
    )
    assert finding == PersonalDataFinding("fields.CF_XDR_ZJHM", RESIDENT_ID)
    assert VALID_ID not in repr(finding)


def test_numbers_are_checked_and_none_is_skipped() -> None:
    """A phone number sent as a JSON number is found too; None and booleans are skipped."""
    assert find_unmasked_personal_data([("fields.BZ", None), ("fields.X", True)]) is None
    assert find_unmasked_personal_data([("fields.BZ", 13812345678)]) == PersonalDataFinding(
        "fields.BZ", MOBILE_PHONE
    )

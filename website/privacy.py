"""Safety net against personal data the publisher forgot to mask.

The publisher masks resident ID numbers, phone numbers and the like before it publishes
(RULES.md §1, "Masking and exclusions"). The website checks again and refuses a publication whose
text contains what looks like

- an unmasked 18-digit resident ID number (GB 11643; also the foreigners' permanent residence ID,
  which has the same layout behind a leading ``9``): 17 digits and a digit or ``X``, standing
  alone, with a province code and a calendar birth date where GB 11643 puts them. The check digit
  is deliberately not required: a mistyped ID number is personal data all the same. An all-digit
  string that is a valid unified social credit code (GB 32100) is an organisation's, not a
  person's, and passes;
- an 11-digit mainland mobile number (``1[3-9]`` and 9 more digits, optionally as ``138 1234 5678``
  or ``138-1234-5678``, optionally after ``+86``), standing alone.

"Standing alone" means not inside a longer run of digits, so amounts, dates, 5-digit numbers and
masked values such as ``371***********123X`` pass. Full-width digits are read as digits.

Nothing here returns or logs the value it found: only which field and what kind of data.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from processors.identifiers import PROVINCE_CODES, check_uscc

RESIDENT_ID = "resident ID number"
MOBILE_PHONE = "mobile phone number"

_ID_CANDIDATE = re.compile(r"(?<![0-9])[0-9]{17}[0-9X](?![0-9])")
_MOBILE_CANDIDATE = re.compile(r"(?<![0-9])(?:\+?86[ -]?)?1[3-9][0-9](?:[ -]?[0-9]{4}){2}(?![0-9])")
_FOREIGNER_PREFIX = "9"
_EARLIEST_BIRTH_YEAR = 1900
_LATEST_BIRTH_YEAR = 2099


@dataclass(frozen=True, slots=True)
class PersonalDataFinding:
    """Where unmasked personal data was found, without the data itself."""

    field: str
    """The field holding it, e.g. ``fields.CF_XDR_ZJHM``."""
    what: str
    """:data:`RESIDENT_ID` or :data:`MOBILE_PHONE`."""


def _has_birth_date(candidate: str) -> bool:
    year, month, day = int(candidate[6:10]), int(candidate[10:12]), int(candidate[12:14])
    if not _EARLIEST_BIRTH_YEAR <= year <= _LATEST_BIRTH_YEAR:
        return False
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def _has_region_code(candidate: str) -> bool:
    if candidate[:2] in PROVINCE_CODES:
        return True
    return candidate[0] == _FOREIGNER_PREFIX and candidate[1:3] in PROVINCE_CODES


def _looks_like_resident_id(candidate: str) -> bool:
    """Region and birth date where GB 11643 puts them, and not a valid USCC."""
    return (
        _has_region_code(candidate)
        and _has_birth_date(candidate)
        and check_uscc(candidate) is not None
    )


def unmasked_personal_data_in(text: str) -> str | None:
    """What kind of unmasked personal data ``text`` contains (:data:`RESIDENT_ID`,
    :data:`MOBILE_PHONE`), or ``None`` when it looks clean."""
    normalised = unicodedata.normalize("NFKC", text).upper()
    if any(_looks_like_resident_id(m.group()) for m in _ID_CANDIDATE.finditer(normalised)):
        return RESIDENT_ID
    if _MOBILE_CANDIDATE.search(normalised):
        return MOBILE_PHONE
    return None


def find_unmasked_personal_data(
    values: Iterable[tuple[str, object]],
) -> PersonalDataFinding | None:
    """The first ``(field, value)`` whose value holds unmasked personal data, if any.

    Strings and numbers are checked (an ``int`` can be a phone number too); ``None`` is skipped.
    """
    for field, value in values:
        if value is None or isinstance(value, bool):
            continue
        what = unmasked_personal_data_in(str(value))
        if what is not None:
            return PersonalDataFinding(field, what)
    return None

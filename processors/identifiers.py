"""Identifiers of subjects: unified social credit codes, resident ID numbers and plate numbers.

Each ``check_*`` function answers one question, "is this a well-formed identifier?", with ``None``
or a :class:`~processors.model.Rejection` whose message says what is wrong. Checks take the value
as the record carries it; the ``normalise_*`` functions tidy up what people type (spaces,
full-width characters, lower case) and are for the codecs, not for validation.

Messages never echo an identifier in clear: an ID number in the wrong field is still an ID
number, so every value is shown through :func:`mask_identifier`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import date
from operator import mul
from types import MappingProxyType
from typing import NamedTuple

from processors.model import PlateColour, Rejection

# Reason codes of the identifier checks. They are part of validation's stable set and are defined
# here, next to the rules, because validation imports this module (not the other way round).
USCC_INVALID = "USCC_INVALID"
RESIDENT_ID_INVALID = "RESIDENT_ID_INVALID"
PLATE_INVALID = "PLATE_INVALID"
PLATE_COLOUR_MISMATCH = "PLATE_COLOUR_MISMATCH"

_DIGITS = frozenset("0123456789")

# The checks run for every identifier of every event, and the same carriers, drivers and vehicles
# recur all day: each check memoises its verdict on the value (a Rejection is immutable, so a
# cached one can be handed out again). Bounded, so that a stream of distinct or hostile values
# costs a fixed amount of memory; a county's fleet fits many times over.
IDENTIFIER_CACHE_SIZE = 16_384
"""Most distinct values each identifier check remembers the verdict of."""

# --- masking ------------------------------------------------------------------------------------

_MASK_KEEP_HEAD = 3
_MASK_KEEP_TAIL = 2
# Below this length, keeping 3 + 2 characters would show more than half of the value.
_MASK_MIN_LENGTH_TO_SHOW_ENDS = 2 * (_MASK_KEEP_HEAD + _MASK_KEEP_TAIL)


def mask_identifier(value: str) -> str:
    """Hide all but the first 3 and last 2 characters, e.g. ``110*************2X``.

    Values shorter than 10 characters are masked completely, so at least half is always hidden.
    """
    if len(value) < _MASK_MIN_LENGTH_TO_SHOW_ENDS:
        return "*" * len(value)
    hidden = len(value) - _MASK_KEEP_HEAD - _MASK_KEEP_TAIL
    return value[:_MASK_KEEP_HEAD] + "*" * hidden + value[-_MASK_KEEP_TAIL:]


# --- normalisation ------------------------------------------------------------------------------

# Full-width ASCII forms (U+FF01..U+FF5E) and the ideographic space, as Chinese input methods type.
_FULL_TO_HALF_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
# Separators printed or typed inside plate numbers: "鲁P·12345", "鲁P-12345".
_PLATE_SEPARATORS = re.compile(r"[\s\u00b7\u2022\u30fb\uff65\-]")


def _to_half_width(value: str) -> str:
    return value.translate(_FULL_TO_HALF_WIDTH)


def normalise_uscc(value: str) -> str:
    """Half-width, upper case, without whitespace: the form :func:`check_uscc` expects."""
    return "".join(_to_half_width(value).split()).upper()


def normalise_resident_id(value: str) -> str:
    """Half-width, without whitespace, with a lower-case check character ``x`` read as ``X``."""
    return "".join(_to_half_width(value).split()).upper()


def normalise_plate(value: str) -> str:
    """Half-width, upper-case letters, without spaces or the separator dot: ``鲁P12345``."""
    return _PLATE_SEPARATORS.sub("", _to_half_width(value)).upper()


# --- unified social credit code (统一社会信用代码, GB 32100-2015) -------------------------------

USCC_LENGTH = 18
USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
"""Digits and upper-case letters without I, O, Z, S, V; a character's value is its index."""
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
"""Weight of each of the first 17 positions: 3**i mod 31 (GB 32100-2015 §5, after GB/T 17710)."""
_USCC_VALUES = {character: value for value, character in enumerate(USCC_CHARSET)}
_USCC_MODULUS = len(USCC_CHARSET)

ENTITY_TYPES_BY_REGISTRATION_AUTHORITY: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "1": frozenset("1239"),  # 机构编制: 机关, 事业单位, 中央编办管理的群众团体, 其他
        "2": frozenset("19"),  # 外交: 外国常驻新闻机构, 其他
        "3": frozenset("123459"),  # 司法行政: 律所, 公证处, 基层法律服务所, 司法鉴定, 仲裁委, 其他
        "4": frozenset("19"),  # 文化: 外国在华文化中心, 其他
        "5": frozenset("1239"),  # 民政: 社会团体, 民办非企业单位, 基金会, 其他
        "6": frozenset("129"),  # 旅游: 外国/港澳台旅游部门常驻代表机构, 其他
        "7": frozenset("129"),  # 宗教: 宗教活动场所, 宗教院校, 其他
        "8": frozenset("19"),  # 工会: 基层工会, 其他
        "9": frozenset("123"),  # 工商 (市场监管): 企业, 个体工商户, 农民专业合作社
        "A": frozenset("19"),  # 中央军委改革和编制办公室: 军队事业单位, 其他
        "N": frozenset("1239"),  # 农业: 组级, 村级, 乡镇级集体经济组织, 其他
        "Y": frozenset("1"),  # 其他: not divided further
    }
)
"""登记管理部门码 (1st character) and the 机构类别码 (2nd) each authority assigns.

GB 32100-2015 itself names 1, 5, 9 and Y; the other authorities were assigned codes later by the
national code centre. The table is that published assignment; none of B-H is assigned.
"""


_USCC_CHARACTER = "[0-9A-HJ-NP-RTUWXY]"  # USCC_CHARSET as a regex class
# Every character from the charset, a registration authority that assigns entity types, digits in
# 3-8: a code of this shape only remains to be checked for its entity type and check character.
_USCC_SHAPE = re.compile(
    f"[{''.join(ENTITY_TYPES_BY_REGISTRATION_AUTHORITY)}]{_USCC_CHARACTER}[0-9]{{6}}"
    f"{_USCC_CHARACTER}{{10}}"
)


def uscc_check_character(first17: str) -> str:
    """The 18th character of a USCC whose first 17 characters are given (GB 32100-2015).

    :raises ValueError: when ``first17`` is not 17 characters of the USCC charset.
    """
    if len(first17) != len(USCC_WEIGHTS) or any(c not in _USCC_VALUES for c in first17):
        raise ValueError("expected 17 characters from the USCC charset")
    return _uscc_check_character(first17)


def _uscc_check_character(first17: str) -> str:
    """:func:`uscc_check_character` of 17 characters known to be from the charset."""
    total = sum(map(mul, map(_USCC_VALUES.__getitem__, first17), USCC_WEIGHTS))
    return USCC_CHARSET[(_USCC_MODULUS - total % _USCC_MODULUS) % _USCC_MODULUS]


def check_uscc(code: str) -> Rejection | None:
    """Reject a code that is not a well-formed unified social credit code (GB 32100-2015)."""
    if code.__class__ is str:
        return _check_uscc_cached(code)
    return _check_uscc(code)  # a str subclass may hash and compare unlike its text: not cached


@functools.lru_cache(maxsize=IDENTIFIER_CACHE_SIZE)
def _check_uscc_cached(code: str) -> Rejection | None:
    return _check_uscc(code)


def _check_uscc(code: str) -> Rejection | None:
    if (
        len(code) == USCC_LENGTH
        and _USCC_SHAPE.fullmatch(code)
        and code[1] in ENTITY_TYPES_BY_REGISTRATION_AUTHORITY[code[0]]
        and code[17] == _uscc_check_character(code[:17])
    ):
        return None
    return _uscc_rejection(code)


def _uscc_rejection(code: str) -> Rejection:
    """The rejection of a code :func:`_check_uscc` found wrong: the first problem, in order."""
    shown = mask_identifier(code)

    def rejection(problem: str) -> Rejection:
        return Rejection(USCC_INVALID, f"unified social credit code {shown}: {problem}")

    if len(code) != USCC_LENGTH:
        return rejection(f"must be {USCC_LENGTH} characters, not {len(code)}")
    if any(c not in _USCC_VALUES for c in code):
        return rejection("only digits and upper-case letters other than I, O, Z, S, V are allowed")
    entity_types = ENTITY_TYPES_BY_REGISTRATION_AUTHORITY.get(code[0])
    if entity_types is None:
        return rejection(f"unknown registration authority code {code[0]!r}")
    if code[1] not in entity_types:
        return rejection(f"entity type {code[1]!r} is not used by registration authority {code[0]}")
    if any(c not in _DIGITS for c in code[2:8]):
        return rejection("characters 3-8 must be an administrative division code (digits)")
    # Everything before it is right, so the check character is what _check_uscc found wrong.
    expected = _uscc_check_character(code[:17])
    return rejection(f"check character is {code[17]}, expected {expected}")


# --- resident ID number (公民身份号码, GB 11643-1999) -----------------------------------------

RESIDENT_ID_LENGTH = 18
RESIDENT_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
"""Weight of each of the first 17 digits: 2**(17 - i) mod 11 (GB 11643-1999 §8.2)."""
_RESIDENT_ID_CHECK_DIGITS = "10X98765432"
"""Check character indexed by the weighted sum mod 11."""

PROVINCE_CODES: frozenset[str] = frozenset(
    [str(code) for code in range(11, 16)]  # 京 津 冀 晋 蒙
    + [str(code) for code in range(21, 24)]  # 辽 吉 黑
    + [str(code) for code in range(31, 38)]  # 沪 苏 浙 皖 闽 赣 鲁
    + [str(code) for code in range(41, 47)]  # 豫 鄂 湘 粤 桂 琼
    + [str(code) for code in range(50, 55)]  # 渝 川 贵 云 藏
    + [str(code) for code in range(61, 66)]  # 陕 甘 青 宁 新
    + ["71", "81", "82", "83"]  # 台湾; 香港, 澳门, 台湾 residence permits (港澳台居民居住证)
)
"""First two digits of the address code (GB/T 2260 province-level divisions)."""
EARLIEST_BIRTH_DATE = date(1900, 1, 1)
"""Older birth dates are data-entry errors here, not living drivers or subjects."""


# 17 digits and a check character: a number of this shape only remains to be checked for its
# province, birth date and check digit.
_RESIDENT_ID_SHAPE = re.compile("[0-9]{17}[0-9X]")


def resident_id_check_digit(first17: str) -> str:
    """The 18th character of a resident ID number whose first 17 digits are given (GB 11643-1999).

    :raises ValueError: when ``first17`` is not 17 ASCII digits.
    """
    if len(first17) != len(RESIDENT_ID_WEIGHTS) or any(c not in _DIGITS for c in first17):
        raise ValueError("expected 17 ASCII digits")
    return _resident_id_check_digit(first17)


def _resident_id_check_digit(first17: str) -> str:
    """:func:`resident_id_check_digit` of 17 characters known to be ASCII digits."""
    total = sum(map(mul, map(int, first17), RESIDENT_ID_WEIGHTS))
    return _RESIDENT_ID_CHECK_DIGITS[total % 11]


def _birth_date(number: str) -> date | None:
    try:
        return date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return None


class _ResidentIdVerdict(NamedTuple):
    """What a resident ID number says about itself, whatever the date today."""

    rejection: Rejection | None
    """A problem found before the birth date is compared with today."""
    birth_date: date | None
    """The birth date, when the number got as far as having one."""
    later_rejection: Rejection | None
    """A problem to report only if the birth date is not in the future."""


def check_resident_id(number: str, today: date) -> Rejection | None:
    """Reject a number that is not a well-formed 18-digit resident ID number (GB 11643-1999).

    ``today`` is the date in China; a birth date after it cannot be real. The message never
    states the birth date: it is personal data.
    """
    if number.__class__ is str:
        verdict = _resident_id_verdict_cached(number)
    else:
        verdict = _resident_id_verdict(number)  # a str subclass is not cached, as for the USCC
    if verdict.rejection is not None:
        return verdict.rejection
    if verdict.birth_date is not None and verdict.birth_date > today:
        return _resident_id_rejection(number, "the birth date is in the future")
    return verdict.later_rejection


@functools.lru_cache(maxsize=IDENTIFIER_CACHE_SIZE)
def _resident_id_verdict_cached(number: str) -> _ResidentIdVerdict:
    return _resident_id_verdict(number)


def _resident_id_verdict(number: str) -> _ResidentIdVerdict:
    """The checks of :func:`check_resident_id` that do not depend on today, in its order."""
    if len(number) != RESIDENT_ID_LENGTH:
        problem = f"must be {RESIDENT_ID_LENGTH} characters, not {len(number)}"
        return _ResidentIdVerdict(_resident_id_rejection(number, problem), None, None)
    if not _RESIDENT_ID_SHAPE.fullmatch(number):
        problem = "must be 17 digits followed by a digit or an upper-case X"
        return _ResidentIdVerdict(_resident_id_rejection(number, problem), None, None)
    if number[:2] not in PROVINCE_CODES:
        problem = "the address code does not start with a province code"
        return _ResidentIdVerdict(_resident_id_rejection(number, problem), None, None)
    birth_date = _birth_date(number)
    if birth_date is None:
        problem = "the birth date is not a calendar date"
        return _ResidentIdVerdict(_resident_id_rejection(number, problem), None, None)
    later: Rejection | None = None
    if birth_date < EARLIEST_BIRTH_DATE:
        later = _resident_id_rejection(
            number, f"the birth date is before {EARLIEST_BIRTH_DATE.year}"
        )
    elif number[17] != _resident_id_check_digit(number[:17]):
        later = _resident_id_rejection(number, "the check digit does not match")
    return _ResidentIdVerdict(None, birth_date, later)


def _resident_id_rejection(number: str, problem: str) -> Rejection:
    shown = mask_identifier(number)
    return Rejection(RESIDENT_ID_INVALID, f"resident ID number {shown}: {problem}")


# --- plate numbers (机动车号牌, GA 36-2018) -----------------------------------------------------

PROVINCE_ABBREVIATIONS = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
"""The 31 province-level abbreviations of the mainland that head an ordinary plate."""
_AUTHORITY_LETTER = "[A-HJ-NP-Z]"  # 发牌机关代号; I and O look like 1 and 0
_SERIAL_CHARACTER = "[A-HJ-NP-Z0-9]"
# New-energy plates mark the drive in the serial: D (pure electric) and F (other) since 2017;
# A, B, C, E and G, H, J, K were added when the D and F ranges ran out.
_NEW_ENERGY_LETTER = "[DABCEFGHJK]"
_HEAD = f"[{PROVINCE_ABBREVIATIONS}]{_AUTHORITY_LETTER}"

_ORDINARY_PLATE = re.compile(f"{_HEAD}{_SERIAL_CHARACTER}{{5}}")
_TRAILER_PLATE = re.compile(f"{_HEAD}{_SERIAL_CHARACTER}{{4}}挂")
# Small new-energy vehicles: letter, then a letter or digit, then four digits (e.g. 鲁PD12345).
_SMALL_NEW_ENERGY_PLATE = re.compile(f"{_HEAD}{_NEW_ENERGY_LETTER}{_SERIAL_CHARACTER}[0-9]{{4}}")
# Large new-energy vehicles, trucks among them: five digits, then the letter (e.g. 鲁P12345D).
_LARGE_NEW_ENERGY_PLATE = re.compile(f"{_HEAD}[0-9]{{5}}{_NEW_ENERGY_LETTER}")

NEW_ENERGY_COLOURS = frozenset({PlateColour.GREEN, PlateColour.YELLOW_GREEN})
"""渐变绿 for small and 黄绿双拼 for large new-energy vehicles; no other plate uses them."""


# The two families as single patterns, for the verdict; the four above name the shapes.
_NEW_ENERGY_PLATE = re.compile(
    f"{_SMALL_NEW_ENERGY_PLATE.pattern}|{_LARGE_NEW_ENERGY_PLATE.pattern}"
)
_ORDINARY_OR_TRAILER_PLATE = re.compile(f"{_ORDINARY_PLATE.pattern}|{_TRAILER_PLATE.pattern}")


def check_plate(plate_number: str, plate_colour: PlateColour | None) -> Rejection | None:
    """Reject a plate number of the wrong shape, or whose colour contradicts its shape.

    Accepts ordinary 7-character plates (trailers ending in 挂 included) and 8-character
    new-energy plates (GA 36-2018). A new-energy plate is green or yellow-green; an ordinary
    plate is neither. With ``plate_colour`` None only the shape is checked.
    """
    if plate_number.__class__ is str and (
        plate_colour is None or plate_colour.__class__ is PlateColour
    ):
        return _check_plate_cached(plate_number, plate_colour)
    # Anything else (a str subclass, or a colour given as a plain string, which hashes like the
    # member of the same name) is checked without the cache.
    return _check_plate(plate_number, plate_colour)


@functools.lru_cache(maxsize=IDENTIFIER_CACHE_SIZE)
def _check_plate_cached(plate_number: str, plate_colour: PlateColour | None) -> Rejection | None:
    return _check_plate(plate_number, plate_colour)


def _check_plate(plate_number: str, plate_colour: PlateColour | None) -> Rejection | None:
    is_new_energy = _NEW_ENERGY_PLATE.fullmatch(plate_number) is not None
    is_ordinary = _ORDINARY_OR_TRAILER_PLATE.fullmatch(plate_number) is not None
    if not (is_new_energy or is_ordinary):
        return Rejection(
            PLATE_INVALID,
            f"plate number {mask_identifier(plate_number)}: "
            "not a mainland ordinary or new-energy plate number",
        )
    if plate_colour is None:
        return None
    if is_new_energy and plate_colour not in NEW_ENERGY_COLOURS:
        return Rejection(
            PLATE_COLOUR_MISMATCH,
            f"plate number {mask_identifier(plate_number)}: a new-energy plate is green or "
            f"yellow-green, not {plate_colour.value}",
        )
    if is_ordinary and plate_colour in NEW_ENERGY_COLOURS:
        return Rejection(
            PLATE_COLOUR_MISMATCH,
            f"plate number {mask_identifier(plate_number)}: {plate_colour.value} is only used "
            "on new-energy plates",
        )
    return None

"""Page arithmetic of the public lists (website/pagination.py)."""

from __future__ import annotations

import pytest

from website.pagination import (
    MAX_PAGE_NUMBER,
    PAGE_SIZE,
    InvalidPageNumberError,
    Page,
    parse_page_number,
)


@pytest.mark.parametrize(
    ("number", "total", "offset", "count", "previous", "following", "first", "last"),
    [
        (1, 0, 0, 1, False, False, 0, 0),  # an empty list still has its (empty) page 1
        (1, 1, 0, 1, False, False, 1, 1),
        (1, 20, 0, 1, False, False, 1, 20),
        (1, 21, 0, 2, False, True, 1, 20),
        (2, 21, 20, 2, True, False, 21, 21),
        (3, 60, 40, 3, True, False, 41, 60),
        (2, 61, 20, 4, True, True, 21, 40),
    ],
)
def test_page_arithmetic(
    number: int,
    total: int,
    offset: int,
    count: int,
    previous: bool,
    following: bool,
    first: int,
    last: int,
) -> None:
    """Offset, page count, neighbours and row range for 20 rows a page."""
    page = Page(number, total)
    assert page.size == PAGE_SIZE == 20
    assert (page.offset, page.count, page.has_previous, page.has_next) == (
        offset,
        count,
        previous,
        following,
    )
    assert (page.first_row, page.last_row) == (first, last)
    assert page.exists


@pytest.mark.parametrize(("number", "total"), [(2, 0), (2, 20), (4, 60)])
def test_pages_past_the_end_do_not_exist(number: int, total: int) -> None:
    """A page after the last one is reported as missing (the handler answers 404)."""
    assert not Page(number, total).exists


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, 1), ("", 1), ("1", 1), ("7", 7), (str(MAX_PAGE_NUMBER), 1_000_000)]
)
def test_page_number_is_parsed(raw: str | None, expected: int) -> None:
    """Absent or empty means page 1."""
    assert parse_page_number(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["0", "-1", "01", "1.5", "abc", " 2", "２", str(MAX_PAGE_NUMBER + 1), "9" * 5000],
)
def test_bad_page_numbers_are_refused(raw: str) -> None:
    """Zero, negatives, leading zeros, non-ASCII digits and huge numbers are refused."""
    with pytest.raises(InvalidPageNumberError):
        parse_page_number(raw)

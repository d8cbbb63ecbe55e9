"""Page arithmetic of the public lists."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

PAGE_SIZE: Final = 20
"""Rows per page of every public list."""
MAX_PAGE_NUMBER: Final = 1_000_000
"""Page numbers above this are refused rather than turned into huge SQL offsets."""

_PAGE_NUMBER = re.compile(r"[1-9][0-9]{0,6}")


class InvalidPageNumberError(ValueError):
    """A ``?page=`` that is not a whole number from 1 to :data:`MAX_PAGE_NUMBER`."""


def parse_page_number(raw: str | None) -> int:
    """The page asked for by ``?page=``; 1 when absent or empty.

    :raises InvalidPageNumberError: for ``0``, negatives, non-digits, leading zeros or huge numbers.
    """
    if raw is None or raw == "":
        return 1
    if not _PAGE_NUMBER.fullmatch(raw) or int(raw) > MAX_PAGE_NUMBER:
        raise InvalidPageNumberError(raw)
    return int(raw)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list of ``total`` rows."""

    number: int
    """1-based."""
    total: int
    """Rows in the whole list."""
    size: int = PAGE_SIZE

    @property
    def offset(self) -> int:
        """Rows before this page."""
        return (self.number - 1) * self.size

    @property
    def count(self) -> int:
        """Pages in the list; an empty list still has one (empty) page."""
        return max(1, -(-self.total // self.size))

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.count

    @property
    def exists(self) -> bool:
        """Whether this page is within the list (page 1 always is)."""
        return self.number <= self.count

    @property
    def first_row(self) -> int:
        """1-based position of the page's first row; 0 on an empty list."""
        return min(self.offset + 1, self.total) if self.total else 0

    @property
    def last_row(self) -> int:
        """1-based position of the page's last row; 0 on an empty list."""
        return min(self.offset + self.size, self.total)

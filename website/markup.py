"""A tiny HTML template helper that escapes by default.

Everything interpolated into a template is escaped with :func:`html.escape` unless it is already
:class:`Markup`, i.e. HTML this package produced itself. ``Markup`` is a ``str`` subclass whose
ordinary string methods return plain ``str``: an accidental ``markup + user_text`` is therefore
plain text again and gets escaped (twice, visibly) rather than trusted.
"""

from __future__ import annotations

import html
from collections.abc import Iterable


class Markup(str):
    """A string of HTML that is safe to insert as it is."""

    __slots__ = ()


def escape(value: object) -> Markup:
    """``value`` as text in HTML: ``&``, ``<``, ``>``, ``"`` and ``'`` become entities."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def render(template: str, /, **values: object) -> Markup:
    """Fill ``{name}`` placeholders of a constant ``template``, escaping each value.

    ``template`` must be a literal written in this package, never data: only the values are
    treated as untrusted. ``str.format`` does not interpret what it substitutes, so a value
    containing ``{`` or ``}`` is inserted as it is (escaped).
    """
    return Markup(template.format(**{name: escape(value) for name, value in values.items()}))


def join(parts: Iterable[Markup], separator: str = "") -> Markup:
    """Concatenate pieces of markup (each one already safe)."""
    return Markup(separator.join(escape(part) for part in parts))

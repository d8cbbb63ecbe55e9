"""Logs of every process: one JSON object per line, personal data masked in every field.

Each line holds ``time`` (UTC, ISO 8601, milliseconds), ``level``, ``logger``, ``message``,
``role`` (worker, serving-store, api, publisher, website, ...), ``pid``, ``exception`` and
``stack`` when the record has them, and the record's extras (``log.info(..., extra={...})``)::

    {"time": "2026-11-27T08:00:00.123Z", "level": "INFO", "logger": "sinks.publisher",
     "message": "delivered 371************12", "role": "publisher", "pid": 4242}

Masking is the 双公示 rules' own (:func:`processors.disclosure.mask_free_text`: resident ID
numbers keep their first 3 and last 2 characters, mobiles become ``138****5678``, labelled
addresses, phones and accounts are cut, people named by their role become ``某某``), then
:func:`processors.disclosure.find_personal_data` as a last check: a digit run that still looks
like an ID number or a mobile is starred out whole. A log is not a publication, but it is kept
and read by more people than the credit file, so the same rules apply. Runs of 12 or more
digits keep only their last 4 (e.g. epoch milliseconds): the price of never leaking an ID.

Use :func:`configure_logging` at a process's entry point, or pass :func:`logging_config` to
``faust.Worker(logging_config=...)``, which replaces the root logger's configuration itself.
"""

from __future__ import annotations

import json
import logging
import logging.config
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

from processors.disclosure import find_personal_data, mask_free_text

TEXT_FORMAT = "%(asctime)s %(levelname)s [{role}] %(name)s: %(message)s"
"""The line of ``json=False``: for a terminal."""

_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",  # Python 3.12+
}
"""Attributes every LogRecord has: anything else on a record is an extra."""

_DIGIT_RUN = re.compile(r"[0-9０-９]+[XxＸｘ]?")
_LONG_FRACTION = re.compile(r"(?<=[0-9][.])([0-9]{6})[0-9]+")
"""The digits of a decimal fraction past the sixth: durations and ratios in logs ran long enough
to look like phone or ID numbers and came out starred ("0.123*************78 s")."""


def mask_personal_data(text: str) -> str:
    """``text`` with resident ID numbers, phone numbers and other personal data masked.

    Decimal fractions are cut to six digits first: a fraction is a measurement, and cutting takes
    digits away, so nothing that was personal data can come back through it.
    """
    masked = mask_free_text(_LONG_FRACTION.sub(r"\1", text))
    if find_personal_data(masked):  # defence in depth: whatever the patterns above missed
        masked = _DIGIT_RUN.sub(
            lambda run: "*" * len(run[0]) if find_personal_data(run[0]) else run[0], masked
        )
        if find_personal_data(masked):  # e.g. a mobile written across separators
            masked = _DIGIT_RUN.sub(lambda run: "*" * len(run[0]), masked)
    return masked


def _masked(value: Any) -> Any:
    """A JSON-ready copy of an extra's value, every string in it masked."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        # An ID number passed as a number is in its whole part; a fraction stays a number.
        text = str(int(value)) if isinstance(value, float) and math.isfinite(value) else str(value)
        masked = mask_personal_data(text)
        return value if masked == text else mask_personal_data(str(value))
    if isinstance(value, Mapping):
        return {str(key): _masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked(item) for item in value]
    return mask_personal_data(value if isinstance(value, str) else str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line, with personal data masked in every field."""

    def __init__(self, role: str) -> None:
        """:param role: the process's role, written on every line (``worker``, ``api``, ...)."""
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": mask_personal_data(record.getMessage()),
            "role": self.role,
            "pid": record.process,
        }
        if record.exc_info:
            entry["exception"] = mask_personal_data(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = mask_personal_data(record.exc_text)
        if record.stack_info:
            entry["stack"] = mask_personal_data(self.formatStack(record.stack_info))
        for key, value in vars(record).items():
            if key in _RECORD_ATTRIBUTES or key.startswith("_"):
                continue
            entry[key if key not in entry else f"extra_{key}"] = _masked(value)
        return json.dumps(entry, ensure_ascii=False, default=str)


class MaskingTextFormatter(logging.Formatter):
    """The plain one-line format (``TEXT_FORMAT``), with personal data masked as in JSON."""

    def __init__(self, role: str) -> None:
        """:param role: the process's role, shown in brackets on every line."""
        super().__init__(TEXT_FORMAT.format(role=role))
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        """The formatted line (traceback included), masked as a whole."""
        return mask_personal_data(super().format(record))


def logging_config(
    role: str, level: int | str = "INFO", *, json: bool = True, stream: IO[str] | None = None
) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` dict: one handler on the root logger, to stderr.

    :param role: written on every line.
    :param level: the root logger's level.
    :param json: JSON lines (:class:`JsonFormatter`); plain masked text when False.
    :param stream: where lines go; standard error when None.
    """
    formatter = JsonFormatter if json else MaskingTextFormatter
    return {
        "version": 1,
        # Loggers that modules created at import time keep working.
        "disable_existing_loggers": False,
        "formatters": {"masked": {"()": formatter, "role": role}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "masked",
                "stream": stream if stream is not None else "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["default"]},
    }


def configure_logging(
    role: str, level: int | str = "INFO", *, json: bool = True, stream: IO[str] | None = None
) -> None:
    """Send every log record of this process to ``stream`` (stderr), formatted and masked.

    Replaces the root logger's handlers (as :func:`logging.basicConfig` with ``force=True``).
    """
    logging.config.dictConfig(logging_config(role, level, json=json, stream=stream))


__all__ = [
    "JsonFormatter",
    "MaskingTextFormatter",
    "configure_logging",
    "logging_config",
    "mask_personal_data",
]

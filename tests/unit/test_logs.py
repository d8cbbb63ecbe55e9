"""streams/logs.py: one JSON object per line, and no resident ID or phone number in any field."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from processors.disclosure import find_personal_data
from processors.identifiers import check_resident_id, mask_identifier, resident_id_check_digit
from streams.logs import (
    JsonFormatter,
    MaskingTextFormatter,
    configure_logging,
    logging_config,
    mask_personal_data,
)

FIRST17 = "37152419800101001"  # 东阿县, born 1980-01-01
RESIDENT_ID = FIRST17 + resident_id_check_digit(FIRST17)
MOBILE = "13812345678"


def _resident_id_ending_in_x() -> str:
    for serial in range(1000):
        first17 = f"371524197512{serial % 28 + 1:02d}{serial:03d}"
        if resident_id_check_digit(first17) == "X":
            return first17 + "X"
    raise AssertionError("no check digit X in 1,000 serials")


RESIDENT_ID_X = _resident_id_ending_in_x()


def test_the_identifiers_of_these_tests_are_valid() -> None:
    """The IDs are real GB 11643 numbers, so the masking is tested on what production logs."""
    assert check_resident_id(RESIDENT_ID, date(2026, 1, 1)) is None
    assert check_resident_id(RESIDENT_ID_X, date(2026, 1, 1)) is None


def _record(message: str, *args: object, exc_info: Any = None, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord(
        "sinks.publisher", logging.WARNING, __file__, 42, message, args, exc_info
    )
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def _line(record: logging.LogRecord, role: str = "publisher") -> dict[str, Any]:
    text = JsonFormatter(role).format(record)
    assert "\n" not in text, "one object per line"
    entry: dict[str, Any] = json.loads(text)
    return entry


def _raised(message: str) -> Any:
    try:
        raise ValueError(message)
    except ValueError:
        return sys.exc_info()


def test_a_line_has_time_level_logger_message_role_and_pid() -> None:
    """Every line carries the fields a log pipeline indexes."""
    record = _record("delivered %d requests", 3)
    record.created = 1_795_000_000.123_456
    entry = _line(record, role="publisher")
    assert entry == {
        "time": "2026-11-18T11:06:40.123Z",
        "level": "WARNING",
        "logger": "sinks.publisher",
        "message": "delivered 3 requests",
        "role": "publisher",
        "pid": record.process,
    }


@pytest.mark.parametrize(
    ("message", "args", "hidden", "shown"),
    [
        ("driver %s weighed at %s", (RESIDENT_ID, "371524-ZC-01"), RESIDENT_ID,
         mask_identifier(RESIDENT_ID)),
        ("driver %s weighed", (RESIDENT_ID_X.lower(),), RESIDENT_ID_X.lower(), "371"),
        (f"lookup /v1/drivers/{RESIDENT_ID} answered 200", (), RESIDENT_ID,
         mask_identifier(RESIDENT_ID)),
        ("call the driver on %s", (MOBILE,), MOBILE, "138****5678"),
        ("联系电话：%s", ("138-1234-5678",), "138-1234-5678", "138****5678"),
        ("mobile +86 %s", (MOBILE,), MOBILE, "138****5678"),
        # Not personal data: offsets, ports and plates stay readable.
        ("partition 3 offset 1234567 at 127.0.0.1:19092 for 鲁P12345", (), None,
         "partition 3 offset 1234567 at 127.0.0.1:19092 for 鲁P12345"),
    ],
)  # fmt: skip
def test_personal_data_in_the_message_is_masked(
    message: str, args: tuple[object, ...], hidden: str | None, shown: str
) -> None:
    """Resident ID numbers and mobiles never reach a line; the rest of the message does."""
    entry = _line(_record(message, *args))
    assert hidden is None or hidden not in entry["message"]
    assert shown in entry["message"]
    assert find_personal_data(entry["message"]) == []


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("commit took 0.123456789012345678 s", "commit took 0.123456 s"),
        ("ratio 3.14159265358979 of the fleet", "ratio 3.141592 of the fleet"),
        ("p99 845.123456789012 ms", "p99 845.123456 ms"),
        # A fraction that reads like a mobile or an ID number is cut, not shown.
        ("value 1.13812345678", "value 1.138123"),
        (f"value 0.{RESIDENT_ID}", "value 0.371524"),
        ("version 4.1.1 at 127.0.0.1:19092", "version 4.1.1 at 127.0.0.1:19092"),
    ],
)
def test_decimal_fractions_are_cut_to_six_digits_not_starred(message: str, shown: str) -> None:
    """Durations and ratios came out as '0.123*************78 s', unreadable for operators."""
    entry = _line(_record(message))
    assert entry["message"] == shown
    assert find_personal_data(entry["message"]) == []


def test_a_float_extra_stays_a_number() -> None:
    entry = _line(_record("batch", seconds=0.12345678901234568, ratio=2 / 3))
    assert (entry["seconds"], entry["ratio"]) == (0.12345678901234568, 2 / 3)


def test_an_exception_traceback_is_masked() -> None:
    """The exception's message (and any frame quoting an ID) is masked; the traceback stays."""
    record = _record(
        "could not deliver", exc_info=_raised(f"bad subject {RESIDENT_ID}, phone {MOBILE}")
    )
    entry = _line(record)
    trace = entry["exception"]
    assert trace.startswith("Traceback (most recent call last):")
    assert "ValueError: bad subject " + mask_identifier(RESIDENT_ID) in trace
    assert "138****5678" in trace
    assert RESIDENT_ID not in json.dumps(entry, ensure_ascii=False)
    assert MOBILE not in json.dumps(entry, ensure_ascii=False)
    assert find_personal_data(trace) == []


def test_a_stack_is_masked() -> None:
    """``stack_info=True`` output is masked like a traceback."""
    record = _record("where")
    record.stack_info = f'  File "x.py", line 1, in f\n    lookup("{RESIDENT_ID}")'
    entry = _line(record)
    assert RESIDENT_ID not in entry["stack"] and mask_identifier(RESIDENT_ID) in entry["stack"]


def test_extras_are_fields_and_are_masked_too() -> None:
    """``extra={...}`` becomes fields of the line, with every string (and ID-like int) masked."""
    entry = _line(
        _record(
            "weighed",
            driver=RESIDENT_ID,
            driver_as_int=int(RESIDENT_ID),
            contact={"mobile": MOBILE, "names": [f"手机{MOBILE}"]},
            partition=3,
            overload_ratio=0.25,
            late=False,
            level="not ours",  # a name the line already uses
        )
    )
    assert entry["driver"] == mask_identifier(RESIDENT_ID)
    assert entry["driver_as_int"] != int(RESIDENT_ID) and RESIDENT_ID not in str(entry)
    assert entry["contact"] == {"mobile": "138****5678", "names": ["手机138****5678"]}
    assert (entry["partition"], entry["overload_ratio"], entry["late"]) == (3, 0.25, False)
    assert entry["level"] == "WARNING" and entry["extra_level"] == "not ours"


def test_an_id_number_missed_by_the_patterns_is_starred_out_whole() -> None:
    """The last check catches what the publication patterns let through (here: full-width)."""
    full_width = RESIDENT_ID.translate({ord(d): ord(d) + 0xFEE0 for d in "0123456789"})
    masked = mask_personal_data(f"身份证{full_width}")
    assert find_personal_data(masked) == []
    assert full_width not in masked


def test_the_text_format_is_masked_too() -> None:
    """json=False (a terminal) shows the role and masks message and traceback alike."""
    formatter = MaskingTextFormatter("api")
    line = formatter.format(_record("driver %s", RESIDENT_ID, exc_info=_raised(MOBILE)))
    assert "WARNING [api] sinks.publisher: driver " + mask_identifier(RESIDENT_ID) in line
    assert RESIDENT_ID not in line and MOBILE not in line and "ValueError" in line


@pytest.fixture
def restored_root_logger() -> Iterator[None]:
    """configure_logging changes the root logger: put it back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)


@pytest.mark.usefixtures("restored_root_logger")
def test_configure_logging_sends_every_logger_to_json_lines() -> None:
    """After configure_logging, any module's logger writes masked JSON lines at the level set."""
    stream = io.StringIO()
    configure_logging("worker", "INFO", stream=stream)
    logging.getLogger("streams.app").info("judged %s", RESIDENT_ID)
    logging.getLogger("aiokafka").debug("below the level")
    logging.getLogger("faust.worker").error("failed", exc_info=_raised(MOBILE))
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["logger"], e["level"], e["role"]) for e in lines] == [
        ("streams.app", "INFO", "worker"),
        ("faust.worker", "ERROR", "worker"),
    ]
    assert RESIDENT_ID not in stream.getvalue() and MOBILE not in stream.getvalue()


@pytest.mark.usefixtures("restored_root_logger")
def test_the_dict_config_is_what_faust_worker_takes() -> None:
    """faust.Worker(logging_config=...) hands the dict to dictConfig: it must configure alone."""
    stream = io.StringIO()
    config = logging_config("worker", logging.DEBUG, json=False, stream=stream)
    assert config["disable_existing_loggers"] is False
    logging.config.dictConfig(config)
    logging.getLogger("mode").debug("phone %s", MOBILE)
    assert "DEBUG [worker] mode: phone 138****5678" in stream.getvalue()

"""The lifecycle clock's records and the choice of files a tick wakes (streams/clock.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiokafka.partitioner import DefaultPartitioner

from streams.clock import due_keys, key_partition, parse_tick, subject_partition, tick_value

AT = datetime(2026, 12, 11, 1, 0, tzinfo=UTC)


def test_a_tick_reads_back_as_its_instant() -> None:
    assert parse_tick(tick_value(AT)) == AT


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"{}",
        b'{"type":"ClockTick"}',
        b'{"type":"ClockTick","at":"2026-12-11"}',
        b'{"type":"Other","at":"2026-12-11T00:00:00+00:00"}',
        b"\xff",
    ],
)
def test_anything_else_is_not_a_tick(value: bytes | None) -> None:
    with pytest.raises(ValueError, match="not a clock tick"):
        parse_tick(value)


def test_a_naive_instant_cannot_be_sent() -> None:
    with pytest.raises(ValueError, match="timezone"):
        tick_value(datetime(2026, 12, 11))


@pytest.mark.parametrize(
    "key", ["VEHICLE:鲁P12345|YELLOW", "DRIVER:371524198001011234", "CARRIER:x"]
)
@pytest.mark.parametrize("partitions", [1, 3, 6, 12])
def test_the_partition_is_the_one_the_producer_picks(key: str, partitions: int) -> None:
    expected = DefaultPartitioner()(key.encode(), list(range(partitions)), list(range(partitions)))
    assert key_partition(key.encode(), partitions) == expected


@pytest.mark.parametrize("partitions", [1, 4, 12])
def test_a_subject_is_on_the_partition_of_the_key_upstream_gives_its_events(
    partitions: int,
) -> None:
    """A detection keyed ``plate|colour`` (docs/upstream-guide.md) arrives on the partition
    number of its vehicle's file, so the first hop can judge it in place."""
    for plate in ("鲁P12345", "鲁PA0001", "鲁P9999X"):
        upstream_key = f"{plate}|YELLOW".encode()
        expected = DefaultPartitioner()(
            upstream_key, list(range(partitions)), list(range(partitions))
        )
        assert subject_partition(f"VEHICLE:{plate}|YELLOW", partitions) == expected


def test_a_tick_wakes_the_due_files_of_its_partition_only() -> None:
    keys = [f"VEHICLE:鲁P{n:05d}|YELLOW" for n in range(40)]
    dues = [(key, (AT - timedelta(hours=n % 3 - 1)).isoformat()) for n, key in enumerate(keys)]
    dues.append(("VEHICLE:never|YELLOW", None))
    for partition in range(3):
        woken = due_keys(dues, partition, 3, AT)
        expected = sorted(
            key
            for key, due in dues
            if due is not None
            and datetime.fromisoformat(due) <= AT
            and subject_partition(key, 3) == partition
        )
        assert woken == expected
    woken_anywhere = {key for p in range(3) for key in due_keys(dues, p, 3, AT)}
    assert len(woken_anywhere) == sum(
        1 for n in range(40) if n % 3 != 0
    )  # n % 3 == 0 is an hour ahead

"""The fetch loop's delivery (streams/delivery.py): a plain await when the callback cannot block,
faust's interruptible way otherwise, and faust's offset bookkeeping either way."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from streams.delivery import DirectDeliveryConsumer

TOPIC = "credit-facts"
TP0 = TP(TOPIC, 0)


def _channel(full: bool) -> Any:
    return SimpleNamespace(queue=SimpleNamespace(full=lambda: full))


def _app(active: bool = True, buffered: int = 0, channels: Any = None) -> Any:
    return SimpleNamespace(
        flow_control=SimpleNamespace(is_active=lambda: active),
        producer=SimpleNamespace(
            buffer=SimpleNamespace(
                size=buffered, max_messages=100, pending=SimpleNamespace(qsize=lambda: buffered)
            )
        ),
        conf=SimpleNamespace(producer_threaded=False),
        topics=SimpleNamespace(
            _tp_index={TP0: channels if channels is not None else [_channel(False)]},
            acks_enabled_for=lambda topic: True,
        ),
        should_stop=False,
    )


@pytest.mark.parametrize(
    ("app", "expected"),
    [
        (_app(), True),
        (_app(active=False), False),  # a rebalance suspended the flow: the callback would wait
        (_app(buffered=101), False),  # faust's producer buffer over its limit: it would flush
        (_app(buffered=100), True),
        (_app(channels=[_channel(False), _channel(True)]), False),  # one queue full
        (_app(channels=[]), False),  # no subscriber known
    ],
)
def test_a_record_is_delivered_at_once_only_when_nothing_can_block(
    app: Any, expected: bool
) -> None:
    consumer = DirectDeliveryConsumer.__new__(DirectDeliveryConsumer)
    consumer.app = app
    assert consumer.delivers_at_once(TP0) is expected


class _FakeConsumer:
    """What the fetch loop uses of faust's consumer, recording what it does."""

    consumer_stopped_errors = ()

    def __init__(self, offsets: list[int], read_offset: int | None, blocked: set[int]) -> None:
        self.app = _app()
        self.log = logging.getLogger("test")
        self.diag = SimpleNamespace(set_flag=lambda flag: None, unset_flag=lambda flag: None)
        self._read_offset: dict[TP, int | None] = {TP0: read_offset}
        self._commit_every = None
        self._n_acked = 0
        self._stopped = asyncio.Event()
        self.should_stop = False
        self.suspend_flow = asyncio.Event()
        self.fetcher = SimpleNamespace(_stopped=asyncio.Event())
        self.offsets, self.blocked = offsets, blocked
        self.delivered: list[tuple[int, str]] = []
        self.gaps: list[tuple[int, int]] = []

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        for offset in self.offsets:
            self.next_offset = offset
            yield TP0, SimpleNamespace(offset=offset, topic=TOPIC)
        self.fetcher._stopped.set()  # one fetch, then the loop ends

    def delivers_at_once(self, tp: TP) -> bool:
        return self.next_offset not in self.blocked

    async def callback(self, message: Any) -> None:
        self.delivered.append((message.offset, self.way))
        self.way = "direct"

    async def wait_first(self, *coros: Any) -> None:
        self.way = "faust"  # the callback runs in one of these tasks
        tasks = [asyncio.ensure_future(coro) for coro in coros]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()

    async def _add_gap(self, tp: TP, start: int, end: int) -> None:
        self.gaps.append((start, end))

    async def run(self) -> None:
        self.way, self.next_offset = "direct", -1
        fetch_loop = DirectDeliveryConsumer._drain_messages
        await asyncio.wait_for(fetch_loop(self, self.fetcher), timeout=5)  # type: ignore[arg-type]


async def test_records_go_in_order_each_way_and_offsets_advance() -> None:
    consumer = _FakeConsumer([10, 11, 12], read_offset=9, blocked={11})
    await consumer.run()
    assert consumer.delivered == [(10, "direct"), (11, "faust"), (12, "direct")]
    assert consumer._read_offset[TP0] == 12
    assert consumer.gaps == []


async def test_a_record_below_the_read_offset_is_dropped_and_a_gap_is_recorded() -> None:
    """As faust's loop does: offsets already delivered are not delivered again; a jump over
    offsets that hold no record (transaction markers) is a gap the commit may pass."""
    consumer = _FakeConsumer([4, 5, 9], read_offset=5, blocked=set())
    await consumer.run()
    assert [offset for offset, _ in consumer.delivered] == [5, 9]
    assert consumer.gaps == [(6, 9)]

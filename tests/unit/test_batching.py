"""take_ready (streams/batching.py): batches straight from an agent's channel queue."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from streams.batching import ack_events, take_ready

TOPIC = "overload-detections"


class _Channel:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def __aiter__(self) -> _Channel:
        return self

    async def __anext__(self) -> Any:
        return await self.queue.get()


def _setup(generation: int = 7) -> tuple[Any, _Channel]:
    acked: list[int] = []

    def ack(message: ConsumerMessage) -> bool:  # what faust's Consumer.ack records
        message.acked = True
        acked.append(message.offset)
        return True

    consumer = SimpleNamespace(unacked=set(), acked=acked, ack=ack)
    app = SimpleNamespace(
        consumer=consumer,
        consumer_generation_id=generation,
        flow_control=SimpleNamespace(is_active=lambda: True),
        topics=SimpleNamespace(acking_topics={TOPIC}),
    )
    channel = _Channel()
    return SimpleNamespace(app=app, channel=channel), channel


def _event(app: Any, offset: int, generation: int = 7) -> faust.Event:
    message = ConsumerMessage(
        TOPIC,
        0,
        offset,
        0.0,
        0,
        None,
        b"k",
        b"v",
        None,
        None,
        generation_id=generation,
        tp=TP(TOPIC, 0),
    )
    return faust.Event(app, b"k", b"v", None, message)


async def _first_batch(stream: Any, **settings: float) -> list[faust.EventT[Any]]:
    batches = take_ready(
        stream,
        int(settings.get("max_events", 100)),
        settings.get("within", 1.0),
        settings.get("linger", 0.005),
    )
    try:
        return await asyncio.wait_for(anext(batches), timeout=5)
    finally:
        await batches.aclose()


async def test_the_events_already_fetched_form_one_batch_in_order() -> None:
    stream, channel = _setup()
    events = [_event(stream.app, offset) for offset in range(5)]
    for event in events:
        channel.queue.put_nowait(event)
    batch = await _first_batch(stream)
    assert batch == events
    assert {event.message for event in events} == stream.app.consumer.unacked
    assert all(event.message.tracked and not event.message.acked for event in batch)


@pytest.mark.parametrize(("queued", "max_events", "expected"), [(10, 3, 3), (3, 3, 3), (2, 3, 2)])
async def test_a_batch_holds_at_most_max_events(
    queued: int, max_events: int, expected: int
) -> None:
    stream, channel = _setup()
    for offset in range(queued):
        channel.queue.put_nowait(_event(stream.app, offset))
    batch = await _first_batch(stream, max_events=max_events)
    assert [event.message.offset for event in batch] == list(range(expected))
    assert channel.queue.qsize() == queued - expected


async def test_events_arriving_within_the_linger_join_the_batch() -> None:
    stream, channel = _setup()
    channel.queue.put_nowait(_event(stream.app, 0))

    async def trickle() -> None:
        for offset in range(1, 4):
            await asyncio.sleep(0.002)
            channel.queue.put_nowait(_event(stream.app, offset))

    feeder = asyncio.ensure_future(trickle())
    batch = await _first_batch(stream, linger=0.05)
    await feeder
    assert [event.message.offset for event in batch] == [0, 1, 2, 3]


async def test_a_quiet_linger_hands_the_batch_over_before_the_window() -> None:
    stream, channel = _setup()
    channel.queue.put_nowait(_event(stream.app, 0))
    loop = asyncio.get_running_loop()
    started = loop.time()
    batch = await _first_batch(stream, within=5.0, linger=0.01)
    assert len(batch) == 1 and loop.time() - started < 1.0


async def test_events_of_an_earlier_generation_are_skipped_and_not_counted_as_handled() -> None:
    """The partition was seeked back, so they come again. faust's stream acks them, which
    marks their offsets handled: a commit at the next rebalance or stop then went past events
    nobody handled, and their outputs were lost."""
    stream, channel = _setup(generation=8)
    stale = [_event(stream.app, offset, generation=7) for offset in range(2)]
    current = _event(stream.app, 2, generation=8)
    for event in [*stale, current]:
        channel.queue.put_nowait(event)
    batch = await _first_batch(stream)
    assert batch == [current]
    assert stream.app.consumer.acked == []
    assert stream.app.consumer.unacked == {current.message}
    assert not any(event.message.acked for event in stale)


async def test_events_taken_while_the_flow_is_stopped_are_skipped_not_counted_as_handled() -> None:
    stream, channel = _setup()
    stream.app.flow_control.is_active = lambda: False
    channel.queue.put_nowait(_event(stream.app, 0))
    batches = take_ready(stream, 100, 1.0, 0.005)
    waiting = asyncio.ensure_future(anext(batches))
    await asyncio.sleep(0.05)
    assert not waiting.done() and stream.app.consumer.acked == []
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    await batches.aclose()


async def test_acking_an_event_twice_counts_once() -> None:
    stream, _ = _setup()
    event = _event(stream.app, 0)
    ack_events([event, event])
    assert stream.app.consumer.acked == [0]


async def test_an_event_of_the_generation_current_when_it_is_taken_is_not_stale() -> None:
    """The wait for a batch's first event may span a rebalance (at start-up it always does)."""
    stream, channel = _setup(generation=7)
    waiting = asyncio.ensure_future(_first_batch(stream))
    await asyncio.sleep(0.01)
    stream.app.consumer_generation_id = 8
    event = _event(stream.app, 0, generation=8)
    channel.queue.put_nowait(event)
    assert await waiting == [event]
    assert stream.app.consumer.acked == []


async def test_the_channel_told_to_stop_ends_the_batches_after_the_events_taken() -> None:
    """faust stops an agent by throwing StopAsyncIteration into its channel; raised out of the
    async generator it became a RuntimeError and crashed the agent on every clean stop."""
    stream, channel = _setup()
    event = _event(stream.app, 0)
    channel.queue.put_nowait(event)

    class _Stop:
        pass

    original_get_nowait = channel.queue.get_nowait

    def get_nowait() -> Any:
        value = original_get_nowait()
        if isinstance(value, _Stop):
            raise StopAsyncIteration
        return value

    channel.queue.put_nowait(_Stop())
    channel.queue.get_nowait = get_nowait  # type: ignore[method-assign]
    batches = [batch async for batch in take_ready(stream, 100, 1.0, 0.005)]
    assert batches == [[event]]

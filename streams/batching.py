"""Batches of the events that are ready, for agents that handle events in bulk.

faust's ``Stream.take_events(max_, within)`` hands over a batch only when it holds ``max_``
events or ``within`` has passed since the last batch. Below full speed every batch therefore
waits out the whole window, which each hop adds to every event's latency.

:func:`take_ready` hands a batch over as soon as the events fetched so far are in it: when no
event came for a short linger (the records of one fetch arrive microseconds apart) or the
batch is full. Under load batches grow by themselves; when traffic is light an event waits the
linger, not the window. The window stays as a backstop. Like ``take_events``, events are acked
by the caller's batch and again here (a second ack is a no-op), and the stream takes no new
events while a batch is handled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import faust


async def take_ready(
    stream: faust.Stream[Any], max_events: int, within: float, linger: float
) -> AsyncIterator[list[faust.EventT[Any]]]:
    """Yield batches of at most ``max_events`` events, each as soon as it is ready.

    A batch is ready when full, or when no event came for ``linger`` seconds, or at the latest
    ``within`` seconds after its first event came.
    """
    events: list[faust.EventT[Any]] = []
    arrived = asyncio.Event()  # an event came since the last look
    full = asyncio.Event()
    handled = asyncio.Event()  # the batch taken last has been handled: take more
    handled.set()
    loop = asyncio.get_running_loop()
    channel = aiter(stream.channel)

    async def collect(value: Any) -> Any:
        await handled.wait()
        event = stream.current_event
        if event is None:
            raise RuntimeError("take_ready found no current event")
        events.append(event)
        arrived.set()
        if len(events) >= max_events:
            full.set()
            handled.clear()  # a full batch takes no more until it is handled
        return value

    acks_enabled = stream.enable_acks
    stream.enable_acks = False  # events are acked once their batch is handled
    stream.add_processor(collect)
    stream._enable_passive(cast(faust.ChannelT[Any], channel))  # how take_events drains
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(arrived, timeout=within)  # type: ignore[arg-type]
            started = loop.time()
            # Quiet for ``linger``: the events fetched so far are in.
            while not full.is_set() and arrived.is_set() and loop.time() - started < within:
                arrived.clear()
                await stream.wait_for_stopped(full, timeout=linger)  # type: ignore[arg-type]
            if not events:
                arrived.clear()
                continue
            handled.clear()
            batch = list(events)
            try:
                yield batch
            finally:
                for event in batch:
                    await stream.ack(event)
                events.clear()
                arrived.clear()
                full.clear()
                handled.set()
    finally:
        stream.enable_acks = acks_enabled
        stream._processors.remove(collect)

"""Batches of the events that are ready, taken straight from an agent's channel.

faust's ``Stream.take_events(max_, within)`` hands over a batch only when it holds ``max_``
events or ``within`` has passed since the last batch. Below full speed every batch therefore
waits out the whole window, which each hop adds to every event's latency. It also takes each
event through the stream's per-event path (an iteration of the stream's generator, sensors, a
processor call, a context variable, an ``asyncio.sleep(0)``); leaving that path out took the
worker from 974 to 1,583 input events per CPU-second in ``bench/bench_worker.py``.

:func:`take_ready` reads the agent's channel queue itself, all the events already there at once,
and hands a batch over as soon as the events fetched so far are in it: when a short linger
(the records of one fetch arrive microseconds apart) brought nothing new, or the batch is full.
Under load batches grow by themselves; when traffic is light an event waits the linger, not the
window. The window stays as a backstop. It keeps what faust's stream does per event that matters
to exactly-once: an event fetched before the current rebalance generation (or while the flow is
suspended) is skipped, and every taken event is tracked as unacked, which faust's rebalance and
shutdown wait for. Unlike faust, a skipped event is not acked: faust's ack marks its offset
handled, so a commit at a rebalance or a stop could commit past an event nobody handled, and
the partition's next owner would start after it (its outputs lost). It needs no ack: it was
never tracked, and the partition is seeked back to its committed offset, so it comes again.
The caller acks each event once its batch is handled (an event acked twice counts once); the
channel takes no new events while a batch is handled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterable
from typing import Any

import faust
from faust.types import AppT


async def take_ready(
    stream: faust.Stream[Any], max_events: int, within: float, linger: float
) -> AsyncGenerator[list[faust.EventT[Any]], None]:
    """Yield batches of at most ``max_events`` events, each as soon as it is ready.

    A batch is ready when full, or when no event came for ``linger`` seconds, or at the latest
    ``within`` seconds after its first event came.
    """
    channel: Any = aiter(stream.channel)  # the iterator channel the conductor delivers to
    queue = channel.queue
    app = stream.app
    loop = asyncio.get_running_loop()
    batch: list[faust.EventT[Any]] = []
    stopped = False
    taken = _Taken(app)
    while not stopped:
        try:
            taken.add(await queue.get(), batch)
            deadline = loop.time() + within
            while len(batch) < max_events:
                for _ in range(min(queue.qsize(), max_events - len(batch))):
                    taken.add(queue.get_nowait(), batch)
                if len(batch) >= max_events:
                    break
                left = deadline - loop.time()
                if left <= 0:
                    break
                before = queue.qsize()
                await asyncio.sleep(min(linger, left))
                if queue.qsize() == before:  # quiet for ``linger``: the fetched events are in
                    break
        except StopAsyncIteration:
            # How faust tells an agent's channel to stop (its stream ends the iteration): the
            # events taken so far are still handled.
            stopped = True
        if not batch:
            continue
        try:
            yield batch
        finally:
            batch = []


class _Taken:
    """Tracks the events taken from a channel as faust's stream would, and skips stale ones."""

    def __init__(self, app: AppT) -> None:
        self._app = app
        self._flowing = app.flow_control.is_active
        self._unacked = app.consumer.unacked
        self._acking_topics = app.topics.acking_topics

    def add(self, value: Any, batch: list[faust.EventT[Any]]) -> None:
        if not isinstance(value, faust.EventT):
            raise TypeError(f"an agent's channel held {type(value).__name__}, not an event")
        message = value.message
        # Read when the event is taken, as faust's stream does: the first wait may span a
        # rebalance, and an event of the generation then current is not stale.
        if not self._flowing() or message.generation_id != self._app.consumer_generation_id:
            return  # stale: not handled, not acked (see the module's docstring)
        if not message.tracked and message.topic in self._acking_topics:
            message.tracked = True
            self._unacked.add(message)
        batch.append(value)


def ack_events(events: Iterable[faust.EventT[Any]]) -> None:
    """Mark each event's offset handled (once: a second ack of an event is a no-op)."""
    for event in events:
        event.ack()

"""Fetched records handed to the agents' channels without two asyncio tasks per record.

faust's fetch loop (``Consumer._drain_messages``) hands each record to the conductor through
``Service.wait_first(callback(message), suspend_flow.wait())``: two tasks, their futures and an
``asyncio.wait`` per record, so that a record blocked on a full channel queue can be abandoned
when a rebalance suspends the flow. Delivering without them took the worker from 1,583 to 2,064
input events per CPU-second in ``bench/bench_worker.py``. The conductor's callback blocks only
when the flow is suspended, when faust's own producer buffer is over its limit, or when a
channel of the record's partition has a full queue; none of these can change while the loop does
not yield. So a record that meets none of them is delivered by a plain ``await`` of the
callback, which then runs to its end without suspending; any other record takes faust's way.

Everything else the loop does is what faust's does: read offsets (a record below the read
offset was delivered already and is dropped), gaps in the offsets recorded for commits,
a yield to the event loop every 100 records, the count-based commit when it is enabled.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import TP
from mode import ServiceT

YIELD_EVERY = 100
"""Records delivered between two yields to the event loop (health checks, timers)."""


class DirectDeliveryConsumer(AIOKafkaConsumer):
    """faust's aiokafka consumer whose fetch loop delivers most records by a plain await."""

    _producer_threaded: bool | None = None

    def delivers_at_once(self, tp: TP) -> bool:
        """Whether the conductor's callback for a record of ``tp`` cannot block right now."""
        app = self.app
        if not app.flow_control.is_active():
            return False
        buffer = app.producer.buffer
        if self._buffered_sends(buffer) > buffer.max_messages:
            return False
        channels = app.topics._tp_index.get(tp)  # type: ignore[attr-defined]
        if not channels:
            return False  # no subscriber known here: let faust's path decide
        return not any(channel.queue.full() for channel in channels)

    def _buffered_sends(self, buffer: Any) -> int:
        # ``ProducerBuffer.size`` reads a faust setting on every call, here once per record;
        # unthreaded, the size is that of its queue of pending sends.
        threaded = self._producer_threaded
        if threaded is None:
            threaded = self._producer_threaded = bool(self.app.conf.producer_threaded)
        return int(buffer.size) if threaded else int(buffer.pending.qsize())

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        deliver = self.callback
        read_offsets = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        commit_every = self._commit_every
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set  # type: ignore[attr-defined]
        since_yield = 0
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records = self.getmany(timeout=1.0)
                await asyncio.sleep(0)  # getmany can return at once, again and again
                if self.should_stop:
                    continue
                async for tp, message in records:
                    since_yield += 1
                    if since_yield > YIELD_EVERY:
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset = message.offset
                    read = read_offsets.get(tp)
                    if read is not None and offset < read:
                        continue  # delivered already
                    if read and offset - read > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, read + 1, offset)
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    if self.delivers_at_once(tp):
                        await deliver(message)
                    else:
                        await self.wait_first(deliver(message), self.suspend_flow.wait())
                    read_offsets[tp] = offset
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if not self.app.should_stop:
                raise
            self.log.info("Broker stopped consumer, shutting down...")
        except asyncio.CancelledError:
            if not self.app.should_stop:
                raise
            self.log.info("Consumer shutting down for user cancel.")
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

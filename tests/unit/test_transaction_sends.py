"""How a batch's records reach its transaction's producer (streams/eos.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka.partitioner import murmur2

from streams.eos import _send_in_record_batches

TOPIC = "credit-snapshots"


class _Batch:
    def __init__(self) -> None:
        self.keys: list[bytes] = []

    def append(self, timestamp: Any, key: bytes, value: bytes) -> object:
        self.keys.append(key)
        return object()

    def close(self) -> None:
        pass


class _Client:
    """An aiokafka producer's batch interface; a gate holds a batch back, as a busy partition
    does, and a key in ``refused`` makes the broker refuse its batch."""

    def __init__(self) -> None:
        self.handed: list[list[bytes]] = []
        self.gates: dict[bytes, asyncio.Event] = {}
        self.refused: set[bytes] = set()

    def create_batch(self) -> _Batch:
        return _Batch()

    async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> Any:
        gate = self.gates.get(batch.keys[0])
        if gate is not None:
            await gate.wait()
        if batch.keys[0] in self.refused:
            raise RuntimeError("the producer refused the batch")
        self.handed.append(batch.keys)
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        delivered.set_result(None)
        return delivered


def _records(*keys: bytes) -> list[tuple[str, bytes, bytes, int]]:
    return [(TOPIC, key, b"{}", 0) for key in keys]


async def test_a_record_without_a_partition_goes_where_the_default_partitioner_puts_it() -> None:
    """Kafka's murmur2 of the key, as aiokafka's default partitioner (and every Kafka client)
    computes it, so a subject's snapshots all land on one partition of the compacted topic."""
    client = _Client()
    fallback: list[bytes] = []

    async def wait_on_metadata(topic: str) -> None:
        pass

    def default_partitioner(topic: str, partition: Any, *args: Any) -> int:
        fallback.append(args[2])
        return 0

    client.client = SimpleNamespace(_wait_on_metadata=wait_on_metadata)  # type: ignore[attr-defined]
    client._partition = default_partitioner  # type: ignore[attr-defined]
    keys = [f"VEHICLE:鲁P{n:05d}|YELLOW".encode() for n in range(40)]
    client._metadata = SimpleNamespace(partitions_for_topic=lambda topic: {0, 1, 2, 3})  # type: ignore[attr-defined]
    sent_to: dict[bytes, int] = {}

    async def send_batch(batch: _Batch, topic: str, *, partition: int) -> Any:
        sent_to.update(dict.fromkeys(batch.keys, partition))
        return await _Client.send_batch(client, batch, topic, partition=partition)

    client.send_batch = send_batch  # type: ignore[method-assign]
    await _send_in_record_batches(client, [(TOPIC, key, b"{}", None) for key in keys])
    assert sent_to == {key: (murmur2(key) & 0x7FFFFFFF) % 4 for key in keys}
    assert len(set(sent_to.values())) > 1 and fallback == []
    # Partitions numbered otherwise: aiokafka decides.
    client._metadata = SimpleNamespace(partitions_for_topic=lambda topic: {0, 2})  # type: ignore[attr-defined]
    await _send_in_record_batches(client, [(TOPIC, keys[0], b"{}", None)])
    assert fallback == [keys[0]]

"""Batches hand their records to a transaction's producer in order, without waiting under the
batch lock; the commit waits for them (streams/eos.py, SourcePartitionTransactionManager)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.partitioner import murmur2

from streams.eos import SourcePartitionTransactionManager, _send_in_record_batches, _settle

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


def _manager() -> SourcePartitionTransactionManager:
    return SourcePartitionTransactionManager.__new__(SourcePartitionTransactionManager)


def _records(*keys: bytes) -> list[tuple[str, bytes, bytes, int]]:
    return [(TOPIC, key, b"{}", 0) for key in keys]


async def test_a_later_batch_waits_until_the_one_before_is_handed_over() -> None:
    manager, client = _manager(), _Client()
    client.gates[b"first"] = asyncio.Event()
    manager.send_in_order("txn-0", client, _records(b"first", b"first-2"))
    manager.send_in_order("txn-0", client, _records(b"second"))
    await asyncio.sleep(0.01)
    assert client.handed == [], "the second batch must not overtake the first"
    client.gates[b"first"].set()
    await _settle((manager._deliveries or {})["txn-0"])
    assert client.handed == [[b"first", b"first-2"], [b"second"]]


async def test_transactions_do_not_wait_for_each_other() -> None:
    manager, client = _manager(), _Client()
    client.gates[b"held"] = asyncio.Event()
    manager.send_in_order("txn-0", client, _records(b"held"))
    manager.send_in_order("txn-1", client, _records(b"free"))
    await _settle((manager._deliveries or {})["txn-1"])
    assert client.handed == [[b"free"]]
    client.gates[b"held"].set()
    await _settle((manager._deliveries or {})["txn-0"])


async def test_a_refused_batch_fails_the_commit_and_the_batches_after_it() -> None:
    """Nothing after a batch that could not be handed over may reach the transaction: its
    commit would otherwise go past a hole."""
    manager, client = _manager(), _Client()
    client.refused.add(b"refused")
    manager.send_in_order("txn-0", client, _records(b"refused"))
    manager.send_in_order("txn-0", client, _records(b"after"))
    with pytest.raises(RuntimeError, match="refused"):
        await _settle((manager._deliveries or {})["txn-0"])
    await asyncio.sleep(0.01)
    assert client.handed == []


async def test_a_forgotten_transaction_cancels_its_sends() -> None:
    manager, client = _manager(), _Client()
    client.gates[b"held"] = asyncio.Event()
    manager.send_in_order("txn-0", client, _records(b"held"))
    sends = list((manager._deliveries or {})["txn-0"])
    manager._forget_deliveries(["txn-0"])
    await asyncio.sleep(0)
    assert all(send.cancelled() for send in sends)
    assert not (manager._deliveries or {}).get("txn-0")


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

"""Batches hand their records to a transaction's producer in order, without waiting under the
batch lock; the commit waits for them (streams/eos.py, SourcePartitionTransactionManager)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.eos import SourcePartitionTransactionManager, _settle

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

"""Batches hand their records to a transaction's producer in order, without waiting under the
batch lock; the commit waits for them (streams/eos.py, SourcePartitionTransactionManager)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.partitioner import murmur2
from faust.types import TP

from streams.eos import (
    BatchAwareConsumer,
    SourcePartitionTransactionManager,
    _send_in_record_batches,
    _settle,
)

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
        self.log = []

    def create_batch(self) -> _Batch:
        return _Batch()

    # The transaction's end: ``log`` tells what reached it in which order.
    log: list[str]
    commit_gate: asyncio.Event | None = None
    commit_fails: BaseException | None = None

    async def send_offsets_to_transaction(self, offsets: Any, group_id: str) -> None:
        self.log.append(f"offsets {sorted(tp.partition for tp in offsets)}")

    async def commit_transaction(self) -> None:
        if self.commit_gate is not None:
            await self.commit_gate.wait()
        if self.commit_fails is not None:
            raise self.commit_fails
        self.log.append("commit")

    async def begin_transaction(self) -> None:
        self.log.append("begin")

    async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> Any:
        gate = self.gates.get(batch.keys[0])
        if gate is not None:
            await gate.wait()
        if batch.keys[0] in self.refused:
            raise RuntimeError("the producer refused the batch")
        self.handed.append(batch.keys)
        self.log.append("records " + ",".join(key.decode() for key in batch.keys))
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        delivered.set_result(None)
        return delivered


def _manager(*clients: _Client) -> SourcePartitionTransactionManager:
    """A transaction manager per source partition ``txn-<n>``, with the n-th client as its
    producer, and an app that records crashes."""
    manager = SourcePartitionTransactionManager.__new__(SourcePartitionTransactionManager)
    crashes: list[BaseException] = []

    async def crash(exc: BaseException) -> None:
        crashes.append(exc)

    manager.app = SimpleNamespace(  # type: ignore[assignment]
        flow_control=SimpleNamespace(is_active=lambda: True),
        rebalancing=False,
        conf=SimpleNamespace(id="app"),
        crash=crash,
        crashes=crashes,
        commit_observers=[],
    )
    manager.producer = SimpleNamespace(  # type: ignore[assignment]
        _transaction_producers={f"txn-{n}": client for n, client in enumerate(clients)},
        _trn_locks=defaultdict(asyncio.Lock),
    )
    manager._transactional_id_of = lambda tp: f"txn-{tp.partition}"  # type: ignore[method-assign]
    return manager


def _records(*keys: bytes) -> list[tuple[str, bytes, bytes, int]]:
    return [(TOPIC, key, b"{}", 0) for key in keys]


async def test_a_later_batch_waits_until_the_one_before_is_handed_over() -> None:
    client = _Client()
    manager = _manager(client)
    client.gates[b"first"] = asyncio.Event()
    manager.send_in_order("txn-0", _records(b"first", b"first-2"))
    manager.send_in_order("txn-0", _records(b"second"))
    await asyncio.sleep(0.01)
    assert client.handed == [], "the second batch must not overtake the first"
    client.gates[b"first"].set()
    await _settle((manager._deliveries or {})["txn-0"])
    assert client.handed == [[b"first", b"first-2"], [b"second"]]


async def test_transactions_do_not_wait_for_each_other() -> None:
    client = _Client()
    manager = _manager(client, client)
    client.gates[b"held"] = asyncio.Event()
    manager.send_in_order("txn-0", _records(b"held"))
    manager.send_in_order("txn-1", _records(b"free"))
    await _settle((manager._deliveries or {})["txn-1"])
    assert client.handed == [[b"free"]]
    client.gates[b"held"].set()
    await _settle((manager._deliveries or {})["txn-0"])


async def test_a_refused_batch_fails_the_commit_and_the_batches_after_it() -> None:
    """Nothing after a batch that could not be handed over may reach the transaction: its
    commit would otherwise go past a hole."""
    client = _Client()
    manager = _manager(client)
    client.refused.add(b"refused")
    manager.send_in_order("txn-0", _records(b"refused"))
    manager.send_in_order("txn-0", _records(b"after"))
    with pytest.raises(RuntimeError, match="refused"):
        await _settle((manager._deliveries or {})["txn-0"])
    await asyncio.sleep(0.01)
    assert client.handed == []


async def test_a_forgotten_transaction_cancels_its_sends() -> None:
    client = _Client()
    manager = _manager(client)
    client.gates[b"held"] = asyncio.Event()
    manager.send_in_order("txn-0", _records(b"held"))
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


async def test_a_timer_commit_ends_in_the_background_and_later_records_wait_for_it() -> None:
    """The batches go on while the broker commits; what they send goes into the next
    transaction, never into the one being committed."""
    client = _Client()
    manager = _manager(client)
    manager.send_in_order("txn-0", _records(b"before"))
    client.commit_gate = asyncio.Event()
    returned = await asyncio.wait_for(manager.commit({TP(TOPIC, 0): 10}), timeout=1)
    assert returned is True, "a timer commit returns once it has started"
    manager.send_in_order("txn-0", _records(b"after"))
    await asyncio.sleep(0.01)
    assert client.log == ["records before", "offsets [0]"]
    client.commit_gate.set()
    await manager.commits_done()
    await _settle((manager._deliveries or {})["txn-0"])
    assert client.log == ["records before", "offsets [0]", "commit", "begin", "records after"]


async def test_a_rebalance_commit_waits_for_the_running_ones_and_ends_before_it_returns() -> None:
    """What follows a rebalance's commit reads the committed offsets back from the broker."""
    client = _Client()
    manager = _manager(client)
    client.commit_gate = asyncio.Event()
    await manager.commit({TP(TOPIC, 0): 10})  # from the timer: in the background
    manager.app.rebalancing = True  # type: ignore[attr-defined]
    rebalance_commit = asyncio.ensure_future(manager.commit({TP(TOPIC, 0): 12}))
    await asyncio.sleep(0.01)
    assert not rebalance_commit.done()
    client.commit_gate.set()
    await asyncio.wait_for(rebalance_commit, timeout=1)
    assert client.log == ["offsets [0]", "commit", "begin", "offsets [0]", "commit", "begin"]
    assert all(commit.done() for commit in (manager._committing or {}).values())


async def test_a_background_commit_that_fails_stops_the_worker_and_what_follows_it() -> None:
    client = _Client()
    manager = _manager(client)
    client.commit_fails = RuntimeError("the coordinator refused the commit")
    await manager.commit({TP(TOPIC, 0): 10})
    manager.send_in_order("txn-0", _records(b"after"))
    await manager.commits_done()
    await asyncio.sleep(0.01)
    assert [str(exc) for exc in manager.app.crashes] == ["the coordinator refused the commit"]  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="refused the commit"):
        await _settle((manager._deliveries or {})["txn-0"])
    assert client.handed == []


async def test_after_a_failed_background_commit_nothing_commits_again() -> None:
    """faust counts a background commit's offsets as committed when it starts. If it then
    fails, a later commit (the stop's, after the crash) would commit offsets past the events
    whose outputs the failed transaction lost: the worker must restart from the broker's."""
    client = _Client()
    manager = _manager(client)
    client.commit_fails = RuntimeError("the coordinator refused the commit")
    await manager.commit({TP(TOPIC, 0): 10})
    await manager.commits_done()
    await asyncio.sleep(0.01)
    client.commit_fails = None
    manager.app.rebalancing = True  # type: ignore[attr-defined]  # the stop's commit waits
    assert await manager.commit({TP(TOPIC, 0): 20}) is False
    assert client.log == ["offsets [0]"], "nothing after the failed commit reached the broker"


async def test_after_a_failed_rebalance_commit_nothing_commits_again() -> None:
    client = _Client()
    manager = _manager(client)
    manager.app.rebalancing = True  # type: ignore[attr-defined]
    client.commit_fails = RuntimeError("the coordinator refused the commit")
    with pytest.raises(RuntimeError, match="refused"):
        await manager.commit({TP(TOPIC, 0): 10})
    client.commit_fails = None
    assert await manager.commit({TP(TOPIC, 0): 20}) is False
    assert client.log == ["offsets [0]"]


async def test_records_handed_to_a_replaced_producer_fail_the_commit() -> None:
    """faust replaces a fenced producer when a transaction begins; the new one's start aborts
    what the old one held. Committing the offsets on the new one would lose those records."""
    old, new = _Client(), _Client()
    manager = _manager(old)
    manager.send_in_order("txn-0", _records(b"sent-before"))
    await asyncio.sleep(0.01)
    manager.producer._transaction_producers["txn-0"] = new  # type: ignore[attr-defined]
    manager.app.rebalancing = True  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="replaced producer"):
        await manager.commit({TP(TOPIC, 0): 10})
    assert old.handed == [[b"sent-before"]]
    assert new.log == [], "no offsets reached the new producer"


async def test_a_transaction_whose_producer_cannot_start_stops_the_rebalance() -> None:
    """faust swallows a producer's failed start: the partitions' previous owner would not be
    fenced before the tables are recovered. A second try is made, then the worker stops."""
    client = _Client()
    manager = _manager(client)
    producers = manager.producer._transaction_producers  # type: ignore[attr-defined]
    starts: list[str] = []

    async def maybe_begin_transaction(transactional_id: str) -> None:
        starts.append(transactional_id)
        if transactional_id == "txn-1":  # starts at the second try
            producers[transactional_id] = client

    manager.producer.maybe_begin_transaction = maybe_begin_transaction  # type: ignore[attr-defined]
    await manager.ensure_producers(["txn-0", "txn-1"])
    assert starts == ["txn-1"]
    with pytest.raises(RuntimeError, match="txn-2"):
        await manager.ensure_producers(["txn-0", "txn-2"])


async def test_the_last_commit_before_a_stop_waits_for_the_running_ones() -> None:
    """faust skips the last commit when nothing new was acked; a background commit then
    outlived the worker's place in the group. The stop now waits for it."""
    client = _Client()
    manager = _manager(client)
    client.commit_gate = asyncio.Event()
    await manager.commit({TP(TOPIC, 0): 10})  # from the timer: running in the background
    consumer = BatchAwareConsumer.__new__(BatchAwareConsumer)
    consumer.transactions = manager
    asked: list[dict[str, Any]] = []

    async def commit(**kwargs: Any) -> bool:  # faust's part: nothing new to commit
        asked.append(kwargs)
        return False

    consumer.commit = commit  # type: ignore[method-assign]
    ending = asyncio.ensure_future(consumer.commit_and_end_transactions())
    await asyncio.sleep(0.02)
    assert not ending.done() and asked == []
    client.commit_gate.set()
    await asyncio.wait_for(ending, timeout=1)
    assert asked == [{"start_new_transaction": False}]
    assert client.log == ["offsets [0]", "commit", "begin"]

"""A worker restarted on its own disk (RocksDB, the production store) keeps nothing in its local
tables that the changelog does not hold (streams/state.py): what an aborted transaction wrote
there is gone before the worker handles anything."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
from rocksdict import Rdict

from ops.services import free_port
from streams.clock import subject_partition
from streams.topics import CREDIT_FACTS_TOPIC, CREDIT_SNAPSHOTS_TOPIC, prefixed
from tests.conftest import KafkaService
from tests.integration.kafka_helpers import end_offsets, read_committed
from tests.integration.pipeline_support import (
    send_events,
    simulated_events,
    start_worker,
    stop_worker,
)

pytestmark = pytest.mark.integration

NEVER_COMMITTED = "VEHICLE:鲁PZZ999|YELLOW"
"""A subject no event names: only an aborted transaction could have put it in a table."""


async def _ticks_handled(port: int) -> float:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    for line in response.text.splitlines():
        if line.startswith("credit_clock_ticks_total "):
            return float(line.split()[1])
    return 0.0


async def test_a_restarted_worker_drops_local_state_no_transaction_committed(
    kafka: KafkaService, unique_name: str, tmp_path: Path
) -> None:
    bootstrap, prefix = kafka.bootstrap_servers, f"{unique_name}."
    snapshots_topic = prefixed(CREDIT_SNAPSHOTS_TOPIC, prefix).name
    await send_events(bootstrap, prefix, simulated_events(seed=41, steps=300, vehicles=20))
    worker = start_worker(bootstrap, unique_name, prefix, tmp_path, store="rocksdb://")
    try:
        deadline = time.monotonic() + 90
        while sum((await end_offsets(bootstrap, snapshots_topic, 4)).values()) < 20:
            assert time.monotonic() < deadline, "the worker wrote no snapshots"
            await asyncio.sleep(0.5)
    finally:
        stop_worker(worker)

    # What an aborted transaction leaves in RocksDB: a subject due for review long ago, whose
    # record never reached the changelog. Left there, the next clock tick would wake it.
    partition = subject_partition(NEVER_COMMITTED, CREDIT_FACTS_TOPIC.partitions)
    [path] = (tmp_path / "worker").rglob(f"*subject_due*-{partition}.db")
    db = Rdict(str(path))
    try:
        db[json.dumps(NEVER_COMMITTED, ensure_ascii=False).encode()] = b'"2001-01-01T00:00:00Z"'
    finally:
        db.close()

    port = free_port()
    settings = {"CREDIT_CLOCK_INTERVAL_SECONDS": "0.5", "CREDIT_WORKER_WEB_PORT": str(port)}
    worker = start_worker(
        bootstrap, unique_name, prefix, tmp_path, store="rocksdb://", settings=settings
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if await _ticks_handled(port) >= 3:
                    break
            except httpx.HTTPError:
                pass  # not serving yet
            assert time.monotonic() < deadline, "the restarted worker handled no clock tick"
            await asyncio.sleep(0.5)
    finally:
        stop_worker(worker)
    snapshots = await read_committed(bootstrap, snapshots_topic, idle=1.0, timeout=30)
    subjects = {record.key.decode() for record in snapshots if record.key}
    assert NEVER_COMMITTED not in subjects
    assert len(subjects) >= 10, "the restarted worker's tables were recovered and in use"

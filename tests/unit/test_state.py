"""Newly assigned table partitions start empty (streams/state.py): nothing a transaction did not
commit survives in a worker's local store, in memory or in RocksDB."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from rocksdict import Rdict

from streams.clock import subject_partition
from streams.state import discard_partitions

SUBJECTS = [f"VEHICLE:鲁P{n:05d}|YELLOW" for n in range(40)]


def test_a_memory_store_loses_the_keys_of_that_partition_only() -> None:
    store = SimpleNamespace(data={subject: {"file": subject} for subject in SUBJECTS})
    on_1 = [subject for subject in SUBJECTS if subject_partition(subject, 4) == 1]
    assert 0 < len(on_1) < len(SUBJECTS)
    removed = discard_partitions(store, {1}, lambda key: subject_partition(key, 4))
    assert removed == len(on_1)
    assert set(store.data) == set(SUBJECTS) - set(on_1)


def test_a_rocksdb_partition_is_emptied_with_faust_s_persisted_offset(tmp_path: Path) -> None:
    dbs = {partition: Rdict(str(tmp_path / f"table-{partition}.db")) for partition in (0, 1)}
    for partition, db in dbs.items():
        for n in range(5):
            db[f'"key-{partition}-{n}"'.encode()] = b'{"facts": []}'
        db[b"__faust\x00offset__"] = b"1234"  # where faust keeps a partition's persisted offset
    key_index = {
        f'"key-{partition}-{n}"'.encode(): partition for partition in (0, 1) for n in range(5)
    }
    store = SimpleNamespace(_db_for_partition=dbs.__getitem__, _key_index=key_index)
    try:
        assert discard_partitions(store, {1}, lambda key: 0) == 6
        assert list(dbs[1].keys()) == []
        assert len(list(dbs[0].keys())) == 6, "the other partition keeps its keys"
        assert set(key_index.values()) == {0}
    finally:
        for db in dbs.values():
            db.close()

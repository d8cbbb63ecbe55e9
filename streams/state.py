"""Tables whose local state never holds what a transaction did not commit.

The agents write a table's store at once and its changelog record in the batch's transaction
(``streams.eos.write_table``). When that transaction aborts (the worker crashed, or lost the
partition before it committed), the store keeps the write. faust recovers a table partition by
replaying its changelog over what the store holds, which puts every key that has a committed
record back to its committed value, but a key first written in the aborted transaction stays
as it was: a credit file with facts that were never committed. The same events are then handled
again from the committed offsets, the ledger takes them for repeats, and whatever they raised
(a list trigger for a new subject, say an instigator fined 20,000 yuan) is never sent. A RocksDB
store keeps such writes across a restart on the same disk, which production does; the memory
store keeps them while the worker runs, for a partition it loses and gets back.

So a table partition that a worker is newly assigned (every partition at start-up) starts
empty, and its recovery replays the whole changelog, as Kafka Streams does with exactly-once
when it finds no checkpoint. Restarts then take as long as reading the changelogs; compaction
keeps them to one record per subject.
"""

from __future__ import annotations

from collections.abc import Callable, Set
from typing import Any

import faust
from faust.types import TP

from streams.clock import subject_partition


def discard_partitions(store: Any, partitions: Set[int], partition_of: Callable[[Any], int]) -> int:
    """Remove every key of ``partitions`` from a table's store; returns how many were removed.

    A RocksDB store holds one database per partition (with faust's persisted offset in it); the
    memory store is one mapping, read once, where ``partition_of`` tells a key's partition.
    """
    db_for_partition = getattr(store, "_db_for_partition", None)
    if db_for_partition is None:
        data = store.data
        keys = [key for key in data if partition_of(key) in partitions]
        for key in keys:
            del data[key]
        return len(keys)
    removed = 0
    for partition in partitions:
        db = db_for_partition(partition)
        keys = list(db.keys())
        for key in keys:
            db.delete(key)
        removed += len(keys)
    key_index = getattr(store, "_key_index", None)
    if key_index is not None:
        for key in [key for key, at in key_index.items() if at in partitions]:
            del key_index[key]
    return removed


class ExactlyOnceTable(faust.Table[Any, Any]):
    """A table whose newly assigned partitions start empty (see the module's docstring).

    Its keys are subjects as text; a key's partition is the subject's (streams.clock).
    """

    async def on_rebalance(
        self,
        assigned: set[TP],
        revoked: set[TP],
        newly_assigned: set[TP],
        generation_id: int = 0,
    ) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        changelogs = self.changelog_topic.topics
        standbys = self.app.assignor.assigned_standbys()
        fresh = {
            tp.partition for tp in newly_assigned if tp.topic in changelogs and tp not in standbys
        }
        if not fresh:
            return
        partitions = self.partitions or self.app.conf.topic_partitions
        discarded = discard_partitions(
            self.data, fresh, lambda key: subject_partition(key, partitions)
        )
        if discarded:
            self.log.info(
                "%s partitions %s: %d local keys discarded before recovery",
                self.name,
                sorted(fresh),
                discarded,
            )

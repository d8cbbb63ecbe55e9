"""Exactly-once processing on faust, made to hold.

faust's ``processing_guarantee="exactly_once"`` gives one transactional producer per source
partition and commits a partition's consumer offsets inside that producer's transaction. Reading
faust 0.15.3 shows twelve gaps that break the guarantee for this product's topology (and a
thirteenth that slows every recovery), so the product closes them here (gap 11 in
streams/batching.py, 12 in streams/state.py), by configuration and subclassing only (ANCHORS.md
§B, issues #177 and #323):

1. **Records go to the wrong transaction.** ``TransactionManager.send`` picks the transaction of
   the *destination* partition. A record re-keyed to another subject (a vehicle's violation
   forwarded to its carrier) lands in another partition's transaction, which commits
   independently: a crash between the two commits duplicates or loses it. Here every record sent
   while a batch from source partition *p* is handled goes into *p*'s transaction
   (:data:`SOURCE_PARTITION`).
2. **A commit can interleave with a batch.** faust commits acked offsets from a background timer.
   If it fires while a batch is half sent, or reads the acked offsets before a batch and commits
   the transaction after it, the transaction holds outputs of events its offsets exclude; after
   a crash those events are processed again and their outputs appear twice (the crash test saw
   exactly one batch twice before this fix). Here the whole commit, offsets read included, waits
   for :func:`exactly_once_batch`'s lock, and the batch acks its events before it lets go.
3. **A restart can stall on a gap at the head of a partition.** After a crash, a topic written
   in transactions (the worker's own ``credit-facts``) holds aborted records and markers that a
   ``read_committed`` consumer never sees. faust records such gaps only between two records it
   has read, not between the committed offset and the first record after a restart, so it
   never commits that partition again; its transaction stays open until the broker's
   transaction timeout fences the producer (faust #606 family). Here the seek to the committed
   offsets also sets faust's read position, so the first gap is recorded like any other.
4. **A worker that takes over a partition can skip its table's recovery.** In exactly-once mode
   faust takes a changelog's high-water mark from aiokafka's cached last stable offset, which
   is unknown until the partition has been fetched: for a partition just handed over it reads
   -1, and recovery restores nothing (the handover test saw every listed subject listed twice).
   Here the high-water marks come from the broker (ListOffsets, read_committed).
5. **Table changelog records are sent late.** ``Table.__setitem__`` queues the changelog record
   in the producer buffer; the transactional commit does not flush that buffer, so an offset can
   commit before the state change that it implies. The agents here write state through
   :func:`write_table` and wait until every record has been handed to its transaction.
6. **The end of a recovery races the fetcher.** ``Recovery.on_recovery_completed`` resumes the
   stream partitions, *then* seeks them to their committed offsets (one OffsetFetch per
   partition, one after the other: 190-250 ms for the worker's 33), *then* resumes the flow,
   which empties the agents' queues. After a table recovery (every restart after a crash) the
   fetcher is already running, so records of the stream partitions reach the agents in between
   and are processed, acked and even committed while the seek goes on. A partition is then
   moved back behind records already processed (processed again: duplicate outputs), faust's
   committed offset is set back to a value read before that commit, and records still queued
   are thrown away by the flow's resume although faust counted them as read. Each of the last
   two leaves a hole after faust's committed offset that no ack fills; faust commits only up to
   the first offset not acked, so the partition never commits again, and its open transaction
   holds back the last stable offset of every partition it wrote to until the broker fences
   the producer (the restart stall in the README). States seen at the stall: committed 6325,
   offsets 6325-6326 thrown away, every later offset acked; committed 1888 (set back from
   1984), acked from 1985 on. Here a stream partition that faust resumes starts fetching only
   when the flow resumes, after the seek and the emptied queues, as on a first start, where
   the fetcher is not running yet.

7. **Committed offsets fall behind the committed outputs.** faust's fetcher records a gap (an
   offset with no record, such as a commit marker) up to and including the record it has just
   read, so that record's offset sits twice in the acked list and the committable prefix stops
   there. On ``credit-facts`` every commit marker is such a gap: each commit got past one marker
   only, while its transaction held the outputs of everything handled. After a crash or a
   handover those events were handled again (the ledger's idempotence hid it in the triggers).
   :meth:`BatchAwareConsumer._add_gap` leaves the read record out.

8. **A rebalance throws away the offsets it should commit.** faust's
   ``Consumer.on_partitions_revoked`` forgets the acked offsets of the revoked partitions (with
   eager rebalancing, all of them) *before* it calls the app's handler, which waits for the
   agents and commits what they acked: that commit found nothing. A worker that keeps a
   partition keeps its producer, and the open transaction with the outputs of every batch
   since the last commit; after the rebalance the worker seeks back to the committed offset,
   handles those events again, and its next commit commits both copies. In the handover test
   (a second worker keeps its partitions when the first stops) the repeats were list triggers
   raised twice, so the list outcome never matched the reference: the "stall" in the README.
   Here the offsets are forgotten after the app's handler has committed them.
9. **The end of a recovery can drain a stream partition into nothing.** faust's fetcher hands
   its live set of active partitions to the consumer thread, where aiokafka waits up to a
   second for records of those partitions, and aiokafka reads an *empty* set as "every
   partition". When a recovery ends, faust pauses the changelog partitions (the set becomes
   empty) while that wait goes on, then seeks the stream partitions to their committed offsets;
   a partition refetched after its seek was drained whole in the same wait and thrown away by
   faust, which keeps only records of active partitions. Its position was then at the end, its
   committed offset at the start, and nothing fetched it again (the handover test: a partition
   handed over at offset 221 of 1,450, never consumed). Here the thread gets a copy of the set.
10. **A failed commit leaves faust ahead of the broker.** faust drops a commit's offsets from
   its acked lists and counts them as committed once the transaction manager returns; a timer
   commit here returns when it has started (:meth:`SourcePartitionTransactionManager.commit`).
   If it then fails, the worker crashes, and the crash's orderly stop commits the offsets acked
   since, past the events whose outputs the failed transaction lost. Here the first failed
   commit stops every later one, and a commit whose records went to a producer that faust has
   replaced since (it replaces a fenced one when a transaction begins, and the new one's start
   aborts the old one's records) fails instead of committing the offsets.
11. **A skipped event counts as handled.** faust's stream acks an event it skips as stale
   (fetched before the current rebalance, or while the flow is stopped), which marks its offset
   handled; the commit at the next rebalance or stop could go past it, and the partition's next
   owner starts after it. :func:`streams.batching.take_ready` does not ack it.
12. **Local table state keeps what an aborted transaction wrote.** A key first written in a
   transaction that aborted has no changelog record for recovery to put right; the events come
   again, the ledger takes them for repeats, and what they raised is lost. RocksDB keeps such
   writes across a restart on the same disk. Here a newly assigned table partition starts empty
   (:mod:`streams.state`).
13. **Every recovery waits about 10 s.** (Not a break of the guarantee, a pause of the worker.)
   faust's recovery runs until its offset reaches the changelog's high-water mark; a
   transactional changelog ends with a commit marker, which holds no record, so faust waited
   for two 5-second timeouts before its "Aborted tx until highwater" check let it end. Here the
   high-water marks stop just past each partition's last committed record
   (:mod:`streams.changelog_tail`).

A third-party reader sees only committed transactions (``read_committed``), so outputs,
changelog records and offsets become visible together or not at all.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import ProducerFenced
from faust.transport.consumer import CONSUMER_PARTITIONS_REVOKED, TransactionManager
from faust.transport.drivers.aiokafka import (
    AIOKafkaConsumerThread,
    credentials_to_aiokafka_auth,
    server_list,
)
from faust.transport.drivers.aiokafka import Transport as AIOKafkaTransport
from faust.types import TP
from mode import Service

from streams.batching import ack_events
from streams.changelog_tail import past_last_records
from streams.clock import key_partition
from streams.delivery import DirectDeliveryConsumer

log = logging.getLogger(__name__)

SOURCE_PARTITION: contextvars.ContextVar[TP | None] = contextvars.ContextVar(
    "credit_transport_source_partition", default=None
)
"""The source partition whose transaction receives the records sent in this context."""


class SourcePartitionTransactionManager(TransactionManager):
    """Sends each record in the transaction of the source partition being processed."""

    _deliveries: dict[str, list[Any]] | None = None
    _handed_over: dict[str, asyncio.Future[None]] | None = None
    """Per transaction, done once the records sent last have been handed to its producer, or
    its commit that started since has ended."""
    _committing: dict[str, asyncio.Future[None]] | None = None
    """Per transaction, its last commit (maybe still running)."""
    _crashing: asyncio.Future[None] | None = None
    _failed: BaseException | None = None
    """Why a commit failed; from then on this worker commits nothing (gap 10)."""

    def expect_deliveries(self, transactional_id: str, deliveries: Iterable[Any]) -> None:
        """Make the next commit of ``transactional_id`` wait for ``deliveries`` and check them.

        aiokafka's commit waits for the transaction's records but does not look at how their
        delivery ended: a record the broker refused would be committed past, and lost.
        """
        if self._deliveries is None:
            self._deliveries = {}
        self._deliveries.setdefault(transactional_id, []).extend(deliveries)

    def send_in_order(self, transactional_id: str, records: Sequence[Record]) -> None:
        """Hand ``records`` to the producer of ``transactional_id`` after the records handed to it
        before them, without waiting; its next commit waits until the broker has them.

        aiokafka takes a partition's next record batch only once the one before has left for the
        broker; waiting for that under the batch lock stopped every batch for a broker round
        trip per partition still busy. The batches keep their order: each send
        starts once the one before it has handed its records over, or once the commit started
        since has ended (then they go into the next transaction).
        """
        if self._handed_over is None:
            self._handed_over = {}
        previous = self._handed_over.get(transactional_id)
        handed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._handed_over[transactional_id] = handed
        send = asyncio.ensure_future(self._send_after(previous, handed, transactional_id, records))
        self.expect_deliveries(transactional_id, [send])

    async def _send_after(
        self,
        previous: asyncio.Future[None] | None,
        handed: asyncio.Future[None],
        transactional_id: str,
        records: Sequence[Record],
    ) -> Any:
        """Send ``records`` once ``previous`` is done; done when the broker has them all.

        Returns the producer that has them: the commit checks that it is the one committing.
        """
        try:
            if previous is not None:
                await previous  # what could not be handed over (or committed) stops what follows
            await self._ensure_in_transaction(transactional_id)
            client = self.producer._transaction_producers[transactional_id]  # type: ignore[attr-defined]
            deliveries = await _send_in_record_batches(client, records)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                handed.cancel()
            else:
                handed.set_exception(exc)
                handed.exception()  # retrieved: the commit that waits for this send reports it
            raise
        handed.set_result(None)
        await _settle(deliveries)
        return client

    def _forget_deliveries(self, transactional_ids: Iterable[str]) -> None:
        # The transaction ends with its producer (aborted): nothing of it will be committed.
        for transactional_id in transactional_ids:
            for delivery in (self._deliveries or {}).pop(transactional_id, []):
                if isinstance(delivery, asyncio.Future):
                    delivery.cancel()
            (self._handed_over or {}).pop(transactional_id, None)

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
        *,
        transactional_id: str | None = None,
    ) -> Awaitable[Any]:
        source = SOURCE_PARTITION.get()
        if source is None:
            # Table changelogs written by faust itself (recovery bookkeeping) go to the
            # partition of their source, where faust's own choice is right.
            return await super().send(topic, key, value, partition, timestamp, headers)
        destination = self.consumer.key_partition(topic, key, partition)
        transactional_id = self._transactional_id_of(source)
        await self._ensure_in_transaction(transactional_id)
        return await self.producer.send(
            topic,
            key,
            value,
            destination,
            timestamp,
            headers,
            transactional_id=transactional_id,
        )

    async def commit(self, offsets: Any, start_new_transaction: bool = True) -> bool:
        """Commit each source partition's transaction with its offsets, all at once.

        faust commits the transactions one after another, each with three round trips to the
        broker (offsets to the transaction, the offset commit, the end of the transaction),
        under the batch lock: with eight partitions no batch ran for most of every commit.
        The transactions are independent, so they commit concurrently; a fenced producer
        still stops the worker, as in faust.

        A commit from faust's timer returns once it has started: its transactions finish in
        the background while batches go on (under the batch lock, no batch ran while the broker
        answered). Records sent meanwhile wait for their transaction's
        commit to end and go into the next one (:meth:`send_in_order`). Any other commit (a
        rebalance's, the last one before stopping) first waits for those, and finishes before
        it returns: what follows it reads the committed offsets back from the broker.
        """
        if self._failed is not None:
            # faust counted the failed commit's offsets as committed and dropped them from its
            # acked lists: a later commit would skip the events whose outputs it lost (gap 10).
            log.warning("not committing after a failed commit: %r", self._failed)
            return False
        by_transaction: dict[str, dict[TP, int]] = {}
        for tp, offset in offsets.items():
            by_transaction.setdefault(self._transactional_id_of(tp), {})[tp] = offset
        in_background = start_new_transaction and self._flowing()
        # A background commit waits for the earlier ones of its own transactions; any other
        # commit for all of them.
        await self.commits_done(by_transaction if in_background else None)
        # faust's shutdown commits twice with start_new_transaction=False; the second found no
        # open transaction, raised IllegalOperation, and could leave the worker hanging on stop.
        for transactional_id in by_transaction:
            await self._ensure_in_transaction(transactional_id)
        commits = [
            self._start_commit(transactional_id, tp_offsets, start_new_transaction)
            for transactional_id, tp_offsets in by_transaction.items()
        ]
        if in_background:
            for commit in commits:
                commit.add_done_callback(self._crash_on_failure)
            return True
        try:
            await asyncio.gather(*commits)
        except ProducerFenced as fenced:
            self._failed = fenced
            log.warning("producer fenced: %s", fenced)
            await self.app.crash(fenced)
        except Exception as exc:
            self._failed = exc
            raise
        return True

    def _flowing(self) -> bool:
        app = self.app
        return bool(app.flow_control.is_active() and not app.rebalancing)

    def _start_commit(
        self, transactional_id: str, offsets: dict[TP, int], start_new_transaction: bool
    ) -> asyncio.Future[None]:
        """Commit ``transactional_id`` in a task; records sent from now on wait until it ends."""
        if self._handed_over is None:
            self._handed_over = {}
        if self._committing is None:
            self._committing = {}
        # Taken now: a send queued after this belongs to the next transaction, and waits for
        # this commit to end.
        deliveries = (self._deliveries or {}).pop(transactional_id, [])
        commit = asyncio.ensure_future(
            self._commit_transaction(transactional_id, offsets, deliveries, start_new_transaction)
        )
        self._handed_over[transactional_id] = commit
        self._committing[transactional_id] = commit
        return commit

    def _crash_on_failure(self, commit: asyncio.Future[None]) -> None:
        failure = None if commit.cancelled() else commit.exception()
        if failure is None:
            return
        self._failed = self._failed or failure
        if isinstance(failure, ProducerFenced):
            log.warning("producer fenced: %s", failure)
        else:
            log.error("transaction commit failed: %r", failure)
        # faust counts the offsets as committed: restart from what the broker has.
        self._crashing = asyncio.ensure_future(self.app.crash(failure))

    async def commits_done(self, transactional_ids: Iterable[str] | None = None) -> None:
        """Wait until the commits still running (of ``transactional_ids``, or all) have ended."""
        committing = self._committing or {}
        wanted = list(committing) if transactional_ids is None else transactional_ids
        running = [committing[tid] for tid in wanted if tid in committing]
        if running:
            await asyncio.wait(running)

    async def _commit_transaction(
        self,
        transactional_id: str,
        offsets: dict[TP, int],
        deliveries: list[Any],
        start_new_transaction: bool,
    ) -> None:
        started = time.perf_counter()
        producer: Any = self.producer
        async with producer._trn_locks[transactional_id]:
            client = producer._transaction_producers.get(transactional_id)
            if client is None:
                log.warning("commit for unknown transaction %s", transactional_id)
                return
            # Raises if the broker refused a record: the worker stops, nothing commits.
            senders = await asyncio.gather(*deliveries) if deliveries else []
            if any(sender is not None and sender is not client for sender in senders):
                # The producer was replaced since (a fenced one is replaced when a transaction
                # begins): the new one's start aborted those records. Committing the offsets
                # here would skip the events they came from.
                raise RuntimeError(f"records of {transactional_id} went to a replaced producer")
            await client.send_offsets_to_transaction(offsets, self.app.conf.id)
            await client.commit_transaction()
            if start_new_transaction:
                await client.begin_transaction()
        for observe in getattr(self.app, "commit_observers", ()):
            observe(time.perf_counter() - started)

    def _transactional_id_of(self, tp: TP) -> str:
        group = self.app.assignor.group_for_topic(tp.topic)
        return f"{self.app.conf.id}-{group}-{tp.partition}"

    async def on_rebalance(self, assigned: Any, revoked: Any, newly_assigned: Any) -> None:
        # faust stops the producers of revoked partitions only if they are not standbys now,
        # and keeps an old producer when a partition comes back. By then another worker may
        # have fenced it. A partition that arrives gets a fresh producer (a new epoch), which
        # also aborts whatever its previous owner left open.
        await self.commits_done()
        restarted = sorted(self._tps_to_transactional_ids(set(newly_assigned)))
        self._forget_deliveries(restarted)
        for transactional_id in restarted:
            await self.producer.stop_transaction(transactional_id)
        self._forget_deliveries(self._tps_to_transactional_ids(set(revoked)))
        await super().on_rebalance(assigned, revoked, newly_assigned)
        await self.ensure_producers(sorted(self._tps_to_transactional_ids(set(assigned))))

    async def ensure_producers(self, transactional_ids: Iterable[str]) -> None:
        """Make sure each transaction has a started producer, or stop the worker.

        Starting a transactional producer fences the partitions' previous owner and settles
        what it left open, before the tables are recovered and the committed offsets read.
        faust's ``begin_transaction`` logs and swallows any error of that start; a recovery
        that went on could read a changelog's end before the previous owner's last transaction
        had settled and its committed offsets after: state without the outputs its offsets
        cover.
        """
        producers = self.producer._transaction_producers  # type: ignore[attr-defined]
        missing = [tid for tid in transactional_ids if tid not in producers]
        for transactional_id in missing:
            await self.producer.maybe_begin_transaction(transactional_id)
        still_missing = [tid for tid in missing if tid not in producers]
        if still_missing:
            raise RuntimeError(f"no transactional producer could start for {still_missing}")

    async def _ensure_in_transaction(self, transactional_id: str) -> None:
        # A rebalance ends the transactions it commits (commit_and_end_transactions) and
        # begins them again only for partitions it counts as newly active; a partition kept
        # across the rebalance can be left with no open transaction. Begin one before sending.
        producer = getattr(self.producer, "_transaction_producers", {}).get(transactional_id)
        txn_manager = getattr(producer, "_txn_manager", None)
        if txn_manager is not None and not txn_manager.is_in_transaction():
            await self.producer.maybe_begin_transaction(transactional_id)


class _PromptFetchConsumerThread(AIOKafkaConsumerThread):
    """faust fixes the fetch wait at 1.5 s; here it is the app's ``fetch_max_wait_ms``.

    aiokafka keeps one fetch in flight per broker: while the broker holds a fetch for partitions
    with nothing new, records that arrive for partitions just drained wait up to that long.
    """

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = getattr(self.app, "fetch_max_wait_ms", 1500)
        return consumer


class BatchAwareConsumer(DirectDeliveryConsumer):
    """A consumer whose commits never interleave with a batch being sent, whose stream
    partitions start fetching only after the end of a recovery has seeked them (gap 6), that
    commits what it handled before a rebalance takes its partitions (gap 8), and that fetches
    only the partitions active when it asks (gap 9)."""

    _batch_lock: asyncio.Lock | None = None
    _held_until_flow_resumes: set[TP] | None = None

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return _PromptFetchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    @property
    def batch_lock(self) -> asyncio.Lock:
        """Held while a batch is handled, sent and acked; a commit (offsets read included) waits.

        Batches hold it one at a time too: both agents write the credit files of a partition,
        and their changelog records must reach the transaction in the order of the writes.
        A batch does not wait for the broker (the commit does), so the lock is held briefly.
        """
        if self._batch_lock is None:
            self._batch_lock = asyncio.Lock()
        return self._batch_lock

    def resume_partitions(self, tps: Iterable[TP]) -> None:
        """Resume changelog partitions now, stream partitions when the flow resumes (gap 6)."""
        tps = set(tps)
        streams = {tp for tp in tps if not self._is_changelog_tp(tp)}
        if streams:
            if self._held_until_flow_resumes is None:
                self._held_until_flow_resumes = set()
            self._held_until_flow_resumes.update(streams)
        super().resume_partitions(tps - streams)

    def pause_partitions(self, tps: Iterable[TP]) -> None:
        tps = set(tps)
        if self._held_until_flow_resumes:
            self._held_until_flow_resumes.difference_update(tps)
        super().pause_partitions(tps)

    def resume_flow(self) -> None:
        super().resume_flow()
        held, self._held_until_flow_resumes = self._held_until_flow_resumes, None
        if held:
            super().resume_partitions(held)

    @Service.transitions_to(CONSUMER_PARTITIONS_REVOKED)
    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """faust's, but the revoked partitions' offsets are forgotten only after the app's
        handler (stop the flow, wait for the agents, commit and end the transactions) has run.

        faust forgets them first, so that commit found no acked offset: the outputs of the
        batches since the last commit stayed in the open transaction of a partition the worker
        keeps, the events were handled again after the seek to the committed offsets, and the
        next commit committed both copies (gap 8 above). Until the new assignment (eager
        rebalancing) the partitions are still this worker's, so committing them is right; a
        worker that lost them to another meanwhile is fenced by the new owner's producer.
        """
        if self._active_partitions is not None:
            self._active_partitions.difference_update(revoked)
        self._paused_partitions.difference_update(revoked)
        try:
            await self._on_partitions_revoked(revoked)
        finally:
            for tp in revoked:
                self._gap.pop(tp, None)
                self._acked.pop(tp, None)
                self._acked_index.pop(tp, None)
                self._read_offset.pop(tp, None)
                self._committed_offset.pop(tp, None)

    async def _getmany(
        self,
        active_partitions: set[TP] | None,
        timeout: float,  # noqa: ASYNC109 (faust's signature)
    ) -> Any:
        """Fetch records of the partitions active now, from a copy of faust's live set (gap 9).

        The consumer thread waits up to ``timeout`` for records; faust changes its set meanwhile,
        and aiokafka takes an empty set for "every partition": records of paused partitions
        came back, advanced their positions, and were dropped by faust as inactive.
        """
        if active_partitions is not None:
            active_partitions = set(active_partitions)
        return await super()._getmany(active_partitions, timeout)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        transactions = getattr(self, "transactions", None)
        if isinstance(transactions, SourcePartitionTransactionManager):
            await transactions.commits_done()  # the broker's committed offsets are read next
        committed: Mapping[TP, int] = await super().seek_to_committed()
        for tp, offset in committed.items():
            if offset is not None and offset > 0:
                # What ``Consumer.seek`` records: the next record read past a gap adds the gap.
                self._read_offset[tp] = offset
        return committed

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Record that offsets ``offset_from`` to ``offset_to`` - 1 hold no record to ack.

        faust's fetcher calls this with the offset of the record it has just read as
        ``offset_to``, and faust counts that end in: the record's offset then sits in the acked
        list twice, once acked and once as gap, and the committable prefix stops at the
        duplicate. On a topic written in transactions every commit marker is such a gap, so
        each commit got past one marker only: the worker's committed offsets on credit-facts
        fell further and further behind what it had handled (the throughput bench saw 400
        offsets of lag on a partition whose records were all handled 15 s earlier).
        """
        if offset_to > offset_from:
            await super()._add_gap(tp, offset_from, offset_to - 1)

    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
        """Where the recovery of each changelog partition ends (gaps 4 and 13).

        The broker's last stable offsets (faust read -1 from a cache for a partition just
        handed over), brought back to just past each partition's last committed record: the
        LSO lies past a commit marker, which faust's recovery waited about 10 s to give up on.
        """
        thread = self._thread
        consumer = thread._ensure_consumer()
        offsets: Mapping[Any, int] = await thread.call_thread(
            consumer.end_offsets, list(partitions)
        )
        try:
            offsets = await self._past_last_records(offsets)
        except Exception:  # the LSO is still right, only slower to recover to
            log.warning("changelog tails not read; recovery ends at the LSO", exc_info=True)
        return {TP(tp.topic, tp.partition): offset for tp, offset in offsets.items()}

    async def _past_last_records(self, stable_ends: Mapping[Any, int]) -> Mapping[Any, int]:
        transport: Any = self.transport
        conf = self.app.conf
        reader = AIOKafkaConsumer(
            bootstrap_servers=server_list(transport.url, transport.default_port),
            client_id=conf.broker_client_id,
            isolation_level="read_committed",
            enable_auto_commit=False,
            **credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context),
        )
        await reader.start()
        try:
            return await past_last_records(reader, stable_ends)
        finally:
            await reader.stop()

    async def commit_and_end_transactions(self) -> None:
        """faust's last commit before a rebalance or a stop, after the commits still running.

        faust skips it when nothing new was acked, and a timer commit still running in the
        background then outlived the worker's place in the group. Its transaction's next owner
        fences it, which should settle it before that owner reads anything; a worker that leaves
        with nothing in flight does not depend on that.
        """
        transactions = getattr(self, "transactions", None)
        if isinstance(transactions, SourcePartitionTransactionManager):
            async with self.batch_lock:  # a commit that holds it has registered when it lets go
                await transactions.commits_done()
        await super().commit_and_end_transactions()

    async def force_commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        async with self.batch_lock:
            return bool(
                await super().force_commit(topics, start_new_transaction=start_new_transaction)
            )


class ExactlyOnceTransport(AIOKafkaTransport):
    """The aiokafka transport with the batch-aware consumer and source-partition transactions."""

    Consumer = BatchAwareConsumer
    TransactionManager = SourcePartitionTransactionManager


class ExactlyOnceApp(faust.App):
    """A faust app whose exactly-once mode routes records by source partition."""

    fetch_max_wait_ms: int = 1500
    """How long the broker may hold a fetch that finds nothing new (faust's fixed value)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commit_observers: list[Callable[[float], None]] = []
        """Called with each transaction commit's duration, in seconds (commits end in tasks)."""

    def _new_transport(self) -> Any:
        return ExactlyOnceTransport(self.conf.broker_consumer, self)


def _batch_lock(app: faust.App) -> asyncio.Lock | None:
    if not app.in_transaction:
        return None
    consumer = app.consumer
    if isinstance(consumer, BatchAwareConsumer):
        return consumer.batch_lock
    raise TypeError("exactly-once batches need an ExactlyOnceApp")


Record = tuple[str, bytes | None, bytes | None, int | None]


class BatchOutput:
    """What one batch sends: records buffered per source partition, written at the end.

    Records go straight to the source partition's transactional aiokafka producer as one
    record batch per destination partition, bypassing faust's per-record send path (topic,
    channel, sensors, futures) and aiokafka's per-record future, which cost most of a worker's
    CPU (BENCHMARKS.md, stream worker profile). In a transaction the batch does not wait for
    the broker: the commit does (:meth:`SourcePartitionTransactionManager.commit`).
    """

    def __init__(self, app: faust.App) -> None:
        self._app = app
        self._records: dict[TP, list[Record]] = {}
        self._pending: list[Awaitable[Any]] = []

    def append(self, delivery: Awaitable[Any]) -> None:
        """Wait for a record sent some other way before the batch counts as sent."""
        self._pending.append(delivery)

    def record(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> None:
        """Send a record in this batch, in the transaction of the current source partition."""
        source = SOURCE_PARTITION.get()
        if source is None:
            raise RuntimeError("BatchOutput.record() outside sending_for(source)")
        self._records.setdefault(source, []).append((topic, key, value, partition))

    async def flush(self) -> None:
        """Hand every record to its transaction; outside one, wait until the broker has them."""
        app = self._app
        producer: Any = app.producer
        transactions = app.consumer.transactions if app.in_transaction else None
        for source, records in self._records.items():
            if not isinstance(transactions, SourcePartitionTransactionManager):
                for topic, key, value, partition in records:
                    self._pending.append(
                        await producer.send(topic, key, value, partition, None, None)
                    )
                continue
            transactions.send_in_order(transactions._transactional_id_of(source), records)
        self._records.clear()
        await _settle(self._pending)
        self._pending.clear()


async def _send_in_record_batches(client: Any, records: Sequence[Record]) -> list[Any]:
    """Send ``records`` as one record batch per destination partition, order kept in each.

    Returns the batches' delivery futures.
    """
    by_destination: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = {}
    partition_of: dict[tuple[str, bytes | None], int] = {}
    for topic, key, value, partition in records:
        if partition is None:
            partition = partition_of.get((topic, key))
            if partition is None:
                await client.client._wait_on_metadata(topic)
                partitions = client._metadata.partitions_for_topic(topic)
                if key is not None and partitions == set(range(len(partitions))):
                    # The default partitioner's choice (murmur2 in pure Python), remembered.
                    partition = key_partition(key, len(partitions))
                else:
                    partition = client._partition(topic, None, None, None, key, value)
                partition_of[topic, key] = partition
        by_destination.setdefault((topic, partition), []).append((key, value))
    deliveries = []
    for (topic, partition), entries in by_destination.items():
        deliveries += await _send_to_partition(client, topic, partition, entries)
    return deliveries


async def _send_to_partition(
    client: Any, topic: str, partition: int, entries: list[tuple[bytes | None, bytes | None]]
) -> list[Any]:
    """One partition's records, in order, in as few record batches as they fit."""
    deliveries = []
    batch = client.create_batch()
    for key, value in entries:
        if batch.append(timestamp=None, key=key, value=value) is None:
            # Full (the producer's max batch size): send it and start another.
            batch.close()
            deliveries.append(await client.send_batch(batch, topic, partition=partition))
            batch = client.create_batch()
            if batch.append(timestamp=None, key=key, value=value) is None:
                raise ValueError(f"a record for {topic} is larger than a record batch")
    # Closed: sent at once. An open one would linger, and the next batch for the partition
    # (add_batch) would wait until it had gone.
    batch.close()
    deliveries.append(await client.send_batch(batch, topic, partition=partition))
    return deliveries


@asynccontextmanager
async def exactly_once_batch(
    app: faust.App, events: Sequence[faust.EventT[Any]]
) -> AsyncIterator[BatchOutput]:
    """Handle one batch of events so that its outputs commit together with its offsets.

    Yields the batch's :class:`BatchOutput`. On leaving, every record is handed to its
    transaction and the events are acked, all while faust's commit waits, so no commit sees
    half a batch; the commit then waits until the broker has every record it covers.
    """
    lock = _batch_lock(app)
    output = BatchOutput(app)
    if lock is None:
        yield output
        await output.flush()
        ack_events(events)
        return
    async with lock:
        try:
            yield output
        except Exception as exc:
            await app.crash(exc)  # nothing sent yet, but the events could never be acked
            raise

        async def send_and_ack() -> None:
            try:
                await output.flush()
            except Exception as exc:
                # A batch that failed half sent cannot be acked, and a stream that skips it
                # would never commit past it: stop the worker; it restarts from the committed
                # offsets.
                await app.crash(exc)
                raise
            ack_events(events)

        # Once its first record is handed over, a batch finishes, even when the agent is
        # cancelled (faust stops agents before its last commit): half a batch in a transaction
        # that commits, with its events not acked, would be handled again by the next owner.
        finishing = asyncio.ensure_future(send_and_ack())
        try:
            await asyncio.shield(finishing)
        except asyncio.CancelledError:
            await finishing  # still under the lock: no commit sees the batch half done
            raise


async def _settle(pending: Iterable[Awaitable[Any]]) -> None:
    futures = list(pending)
    if futures:
        await asyncio.gather(*futures)


def write_table(table: Any, partition: int, key: Any, value: Any, output: BatchOutput) -> None:
    """Set ``table[key]`` and send its changelog record in this batch's transaction.

    Bypasses ``Table.__setitem__``, which queues the changelog record for later (gap 5 above).
    The record is encoded with the table's own key and value codecs, so recovery reads it back.
    (faust's changelog-sent callback is skipped: a RocksDB store then replays a little more of
    the changelog after a restart, which is correct, only slower.)
    """
    store = table.data
    if value is None:
        store.pop(key, None)
    else:
        _store_set(store, partition, key, value)
    changelog = table.changelog_topic
    output.record(
        changelog.get_topic_name(),
        changelog.prepare_key(key, None)[0],
        None if value is None else changelog.prepare_value(value, None)[0],
        partition,
    )


def _store_set(store: Any, partition: int, key: Any, value: Any) -> None:
    db_for_partition = getattr(store, "_db_for_partition", None)
    if db_for_partition is None:  # the memory store is a plain mapping
        store[key] = value
        return
    # The RocksDB store picks its per-partition database from faust's current event, which a
    # batch does not set: name the partition explicitly.
    encoded_key = store._encode_key(key)
    store._key_index[encoded_key] = partition
    db_for_partition(partition).put(encoded_key, store._encode_value(value))


def source_partitions(events: Sequence[faust.EventT[Any]]) -> dict[TP, list[faust.EventT[Any]]]:
    """Group a batch's events by source partition, keeping each partition's order."""
    grouped: dict[TP, list[faust.EventT[Any]]] = {}
    for event in events:
        grouped.setdefault(event.message.tp, []).append(event)
    return grouped


@contextmanager
def sending_for(source: TP) -> Iterator[None]:
    """Route every record sent in this block to the transaction of ``source``."""
    token = SOURCE_PARTITION.set(source)
    try:
        yield
    finally:
        SOURCE_PARTITION.reset(token)

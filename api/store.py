"""Reading the serving store (layout: ``sinks/serving_store.py``) and writing the audit log.

A lookup is one Lua script call, so one round trip whatever it asks: it reads the freshness
marker, each queried subject's answer for the scope, a vehicle's carrier and recent drivers (from
the ``related`` field), their trigger history when asked, and appends one audit entry per query
to the audit stream, in one atomic step: no answer leaves Redis without its audit entry.

Lookups that arrive together are sent together, as a database groups commits: a lookup is sent
at the end of its event-loop turn if fewer than ``max_in_flight`` calls are under way, and
otherwise waits for one of them to end and goes with every lookup that waited (single or batch,
from any agency, each with its own audit context) in one script call. Under load this spreads
the fixed cost of a Redis call (client, system calls, server) over many requests; alone, a
lookup waits for nothing.

The store answers "not ready" (and the API 503) until the sink or a rebuild has loaded it to the
end of the topics: an empty or half-loaded store must never read as "not listed".
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.queries import SubjectQuery
from sinks.serving_store import ServingStoreLayout

__all__ = [
    "AUDIT_FIELDS",
    "AuditContext",
    "AuditPage",
    "Lookup",
    "RelatedAnswer",
    "StoreNotReadyError",
    "StoreReader",
    "StoreUnavailableError",
    "SubjectAnswer",
]


class StoreUnavailableError(RuntimeError):
    """Redis did not answer."""


class StoreNotReadyError(RuntimeError):
    """The serving store is empty or still loading."""


AUDIT_FIELDS = (
    "at",
    "agency",
    "key",
    "route",
    "request",
    "kind",
    "identifier",
    "known",
    "lists",
    "related_lists",
)
"""Fields of an audit entry: when (UTC), who (agency and key id), which route and request, what
(query kind and identifier; a driver's ID number masked), and the answer in short: whether the
subject is known, the lists it is on, and the lists of its carrier and drivers
(``CARRIER=BLACKLIST;DRIVER=WATCHLIST``, without their identifiers)."""

# ARGV: 1 subject key prefix, 2 triggers key prefix, 3 meta key, 4 audit stream, 5 answer field
# ('full' or 'basic'), 6 triggers per subject (0: none), 7 audit MAXLEN (0: no audit), 8 the
# number R of requests, then one per request: at, agency, key id, route, request id, joined by
# the ASCII unit separator (31); then one per query: its request (1..R), subject, kind, identifier,
# joined likewise. (Two arguments where there would be nine: the client encodes each one.)
# Returns {0} when the store is not ready, else {1, as_of, written_at, caught_up_at, per query:
# {answer|nil, {related subjects}, {related answers|nil}, {history}, {{related history}}}}.
_LOOKUP_SCRIPT = """
local meta = redis.call('HMGET', ARGV[3], 'ready', 'as_of', 'written_at', 'caught_up_at')
if meta[1] ~= '1' then
  return {0}
end
local out = {1, meta[2] or '', meta[3] or '', meta[4] or ''}
local sp, tp, field, audit, maxlen = ARGV[1], ARGV[2], ARGV[5], ARGV[4], ARGV[7]
local depth = tonumber(ARGV[6])
local requests = tonumber(ARGV[8])
local who = {}
for r = 1, requests do
  local at, agency, key, route, request = string.match(
    ARGV[8 + r], '^([^\\31]*)\\31([^\\31]*)\\31([^\\31]*)\\31([^\\31]*)\\31(.*)$')
  who[r] = {at, agency, key, route, request}
end
for i = 9 + requests, #ARGV do
  local r, subject, kind, identifier = string.match(
    ARGV[i], '^(%d+)\\31([^\\31]*)\\31([^\\31]*)\\31(.*)$')
  local row = redis.call('HMGET', sp .. subject, field, 'lists', 'related')
  local subjects, answers, histories, summary = {}, {}, {}, {}
  if row[3] then
    for s in string.gmatch(row[3], '[^\\n]+') do
      local rel = redis.call('HMGET', sp .. s, field, 'lists')
      local n = #subjects + 1
      subjects[n] = s
      answers[n] = rel[1]
      if depth > 0 then
        histories[n] = redis.call('ZREVRANGE', tp .. s, 0, depth - 1)
      end
      if rel[2] and rel[2] ~= '' then
        summary[#summary + 1] = string.sub(s, 1, string.find(s, ':', 1, true) - 1) .. '=' .. rel[2]
      end
    end
  end
  local history = {}
  if depth > 0 then
    history = redis.call('ZREVRANGE', tp .. subject, 0, depth - 1)
  end
  out[#out + 1] = {row[1], subjects, answers, history, histories}
  if maxlen ~= '0' then
    local w = who[tonumber(r)]
    redis.call('XADD', audit, 'MAXLEN', '~', maxlen, '*',
      'at', w[1], 'agency', w[2], 'key', w[3], 'route', w[4], 'request', w[5],
      'kind', kind, 'identifier', identifier,
      'known', row[1] and '1' or '0', 'lists', row[2] or '',
      'related_lists', table.concat(summary, ';'))
  end
end
return out
"""
_SEPARATOR = "\x1f"
"""Joins the fields of one script argument (ASCII unit separator: in no identifier or name)."""


@dataclass(frozen=True, slots=True)
class AuditContext:
    """Who asks, for the audit log."""

    at: str
    """When (ISO 8601, UTC)."""
    agency: str
    """The key's agency."""
    key_id: str
    """The key's id."""
    route: str
    """The route template, e.g. ``/v1/vehicles/{plate}``."""
    request_id: str
    """The request's id (also in the response's X-Request-ID)."""

    @property
    def packed(self) -> bytes:
        """The fields as one script argument."""
        fields = (self.at, self.agency, self.key_id, self.route, self.request_id)
        return _SEPARATOR.join(fields).encode()


@dataclass(frozen=True, slots=True)
class RelatedAnswer:
    """A vehicle's carrier or recent driver."""

    subject: str
    """``KIND:key`` (not masked: the caller masks what it shows)."""
    answer: bytes | None
    """The stored answer document for the scope; None when the subject has no snapshot."""
    history: tuple[bytes, ...]
    """Latest list triggers, newest first (evidence scope)."""


@dataclass(frozen=True, slots=True)
class SubjectAnswer:
    """What the store holds for one query."""

    query: SubjectQuery
    """The query."""
    answer: bytes | None
    """The stored answer document for the scope; None when the subject has no snapshot."""
    history: tuple[bytes, ...]
    """Latest list triggers, newest first (evidence scope)."""
    related: tuple[RelatedAnswer, ...]
    """Vehicles: the carrier first, then the recent drivers, as the snapshot names them."""


@dataclass(frozen=True, slots=True)
class Lookup:
    """Answers, with the store's freshness."""

    as_of: str
    """Newest snapshot ``as_of`` written to the store."""
    written_at: str
    """When the sink last wrote."""
    caught_up_at: str
    """When the sink last had every partition read to its end."""
    answers: tuple[SubjectAnswer, ...]
    """One per query, in order."""


@dataclass(frozen=True, slots=True)
class AuditPage:
    """Audit entries, newest first."""

    entries: tuple[dict[str, str], ...]
    """Each with its stream ``id`` and :data:`AUDIT_FIELDS`."""
    next_before: str | None
    """Pass as ``before`` for older entries; None when there are none."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(slots=True)
class _Waiting:
    """A lookup waiting for its turn's script call."""

    queries: Sequence[SubjectQuery]
    audit: AuditContext
    future: asyncio.Future[Lookup]


class StoreReader:
    """Lookups in the serving store, and the audit log."""

    def __init__(
        self,
        redis: Redis,
        layout: ServingStoreLayout | None = None,
        *,
        history: int = 10,
        audit_maxlen: int = 1_000_000,
        timeout: float = 0.5,
        max_in_flight: int = 2,
        batch_queries: int = 1000,
    ) -> None:
        """
        :param redis: the serving store. Its own read timeout may be None: every script call
            is bounded by ``timeout`` here.
        :param layout: key names; the default prefix when None.
        :param history: list triggers shown per subject in the evidence scope.
        :param audit_maxlen: about how many audit entries the stream keeps (``MAXLEN ~``).
        :param timeout: seconds a lookup may take before it counts as Redis not answering.
        :param max_in_flight: script calls under way at once, per scope; more lookups wait
            and go together in the next call.
        :param batch_queries: queries per script call, about (a request is never split).
        """
        self._redis = redis
        self._layout = layout or ServingStoreLayout()
        self._history = history
        self._audit_maxlen = audit_maxlen
        self._timeout = timeout
        self._lookup = redis.register_script(_LOOKUP_SCRIPT)
        self._max_in_flight = max_in_flight
        self._batch_queries = batch_queries
        self._waiting: dict[bool, list[_Waiting]] = {False: [], True: []}
        self._scheduled: dict[bool, bool] = {False: False, True: False}
        self._in_flight: dict[bool, int] = {False: 0, True: 0}
        self._calls: set[asyncio.Task[None]] = set()
        self.calls = 0
        """Script calls made (lookups per call = lookups / calls)."""

    async def lookup(
        self, queries: Sequence[SubjectQuery], *, evidence: bool, audit: AuditContext
    ) -> Lookup:
        """Answers to ``queries``, each audited.

        :raises StoreUnavailableError: when Redis does not answer.
        :raises StoreNotReadyError: when the store is empty or loading.
        """
        future: asyncio.Future[Lookup] = asyncio.get_running_loop().create_future()
        self._waiting[evidence].append(_Waiting(queries, audit, future))
        self._schedule(evidence)
        return await future

    def _schedule(self, evidence: bool) -> None:
        """Flush at the end of this event-loop turn, unless enough calls are in flight: then
        the lookups wait for one to end and go together in the next."""
        if (
            self._scheduled[evidence]
            or not self._waiting[evidence]
            or self._in_flight[evidence] >= self._max_in_flight
        ):
            return
        self._scheduled[evidence] = True
        asyncio.get_running_loop().call_soon(self._flush, evidence)

    def _flush(self, evidence: bool) -> None:
        self._scheduled[evidence] = False
        waiting = self._waiting[evidence]
        if not waiting or self._in_flight[evidence] >= self._max_in_flight:
            return
        taken = queries = 0
        for waiting_lookup in waiting:
            taken += 1
            queries += len(waiting_lookup.queries)
            if queries >= self._batch_queries:
                break
        batch, self._waiting[evidence] = waiting[:taken], waiting[taken:]
        self._in_flight[evidence] += 1
        self.calls += 1
        call = asyncio.ensure_future(self._call(batch, evidence))
        self._calls.add(call)
        call.add_done_callback(lambda done: self._ended(done, evidence))

    def _ended(self, call: asyncio.Task[None], evidence: bool) -> None:
        self._calls.discard(call)
        self._in_flight[evidence] -= 1
        self._schedule(evidence)

    async def _call(self, batch: list[_Waiting], evidence: bool) -> None:
        layout = self._layout
        args: list[str | int | bytes] = [
            layout.subject_prefix,
            layout.triggers_prefix,
            layout.meta,
            layout.audit,
            "full" if evidence else "basic",
            self._history if evidence else 0,
            self._audit_maxlen,
            len(batch),
        ]
        args += [waiting.audit.packed for waiting in batch]
        for number, waiting in enumerate(batch, 1):
            head = b"%d" % number
            args += [head + query.packed for query in waiting.queries]
        try:
            async with asyncio.timeout(self._timeout):
                reply = await self._lookup(keys=[], args=args)
        except (RedisError, TimeoutError) as exc:
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(StoreUnavailableError(type(exc).__name__))
            return
        if int(reply[0]) != 1:
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(StoreNotReadyError("the store is loading"))
            return
        as_of, written_at, caught_up_at = _text(reply[1]), _text(reply[2]), _text(reply[3])
        rows = iter(reply[4:])
        for waiting in batch:
            answers = []
            for query, row in zip(waiting.queries, rows, strict=False):
                answer, subjects, related_answers, history, histories = row
                related = tuple(
                    RelatedAnswer(
                        _text(subject),
                        related_answers[n],
                        tuple(histories[n]) if histories else (),
                    )
                    for n, subject in enumerate(subjects)
                )
                answers.append(SubjectAnswer(query, answer, tuple(history), related))
            if not waiting.future.done():
                waiting.future.set_result(Lookup(as_of, written_at, caught_up_at, tuple(answers)))

    async def audit_log(
        self,
        *,
        count: int,
        before: str | None = None,
        agency: str | None = None,
        identifier: str | None = None,
        scan_limit: int = 10_000,
    ) -> AuditPage:
        """Audit entries, newest first, optionally only one agency's or one identifier's.

        Reads at most ``scan_limit`` entries to fill a filtered page.

        :raises StoreUnavailableError: when Redis does not answer.
        """
        entries: list[dict[str, str]] = []
        cursor = f"({before}" if before else "+"
        scanned = 0
        next_before: str | None = None
        try:
            while len(entries) < count and scanned < scan_limit:
                page = await self._redis.xrevrange(
                    self._layout.audit, max=cursor, min="-", count=min(1000, count * 4)
                )
                if not page:
                    next_before = None
                    break
                for entry_id, fields in page:
                    scanned += 1
                    entry = {"id": _text(entry_id)} | {
                        _text(k): _text(v) for k, v in (fields or {}).items()
                    }
                    next_before = entry["id"]
                    if agency is not None and entry.get("agency") != agency:
                        continue
                    if identifier is not None and entry.get("identifier") != identifier:
                        continue
                    entries.append(entry)
                    if len(entries) == count:
                        break
                cursor = f"({next_before}"
        except RedisError as exc:
            raise StoreUnavailableError(type(exc).__name__) from exc
        return AuditPage(tuple(entries), next_before)

    async def readiness(self) -> dict[str, Any]:
        """Whether Redis answers and the store is loaded, with its freshness.

        :raises StoreUnavailableError: when Redis does not answer.
        """
        try:
            await self._redis.ping()
            ready, as_of, caught_up_at = await self._redis.hmget(
                self._layout.meta, ["ready", "as_of", "caught_up_at"]
            )
        except RedisError as exc:
            raise StoreUnavailableError(type(exc).__name__) from exc
        return {
            "redis": "up",
            "store_ready": ready == b"1",
            "as_of": None if as_of is None else _text(as_of),
            "caught_up_at": None if caught_up_at is None else _text(caught_up_at),
        }

    async def close(self) -> None:
        """Close the Redis connections."""
        await self._redis.aclose()

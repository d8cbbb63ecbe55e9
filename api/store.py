"""Reading the serving store (layout: ``sinks/serving_store.py``) and writing the audit log.

A lookup is one Lua script call, so one round trip whatever it asks: it reads the freshness
marker, each queried subject's answer for the scope, a vehicle's carrier and recent drivers (from
the ``related`` field), their trigger history when asked, and appends one audit entry per query
to the audit stream, in one atomic step: no answer leaves Redis without its audit entry.

Lookups that arrive together are sent together, as a database groups commits: at the end of an
event-loop turn the waiting lookups (single or batch, from any agency, each with its own audit
context) go out in script calls of about ``batch_queries`` queries while fewer than
``max_in_flight`` calls are under way; the rest wait for a call to end. Under load this spreads
the fixed cost of a Redis call (client, system calls, server) over many requests; alone, a
lookup waits for nothing. Calls are kept small (16 queries) and several may be under way (4), so
that Redis runs one while the API parses requests and writes answers for another: with at most
2 calls of every waiting lookup, the API sat idle, on a loaded benchmark, while Redis ran a call
that held nearly all the requests in flight (BENCHMARKS.md, notes on the Lookup API).

The script calls go over a connection of the reader's own (:class:`_Connection`): each call is
encoded straight into RESP (a query's part is encoded once, when the query is first parsed), the
calls are pipelined on the one socket, and hiredis parses the replies, which are handed to the
calls in order. No connection pool, retry wrapper, task or timeout context per call: the profile
of the API under load showed redis-py's call path costing about as much as the rest of the
lookup. That connection speaks RESP2 over TCP or a Unix socket, with the password, user name and
database of the client's URL (what ``connect_redis`` makes); a client with anything else (TLS, a
credential provider) has its calls made through redis-py instead, with the same script. The Redis
client passed in also serves the audit log and the readiness check.

Every call is bounded by ``timeout`` from the moment it is sent, connecting included. A call that
fails, or outlasts it, answers each of its lookups :class:`StoreUnavailableError`; the connection
is then dropped and opened again by the next call (loading the script again: a restarted Redis
has forgotten it; a ``NOSCRIPT`` reply is retried once with ``EVAL``).

The store answers "not ready" (and the API 503) until the sink or a rebuild has loaded it to the
end of the topics: an empty or half-loaded store must never read as "not listed".
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
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
# ('full' or 'basic'), 6 triggers per subject (0: none), 7 audit MAXLEN (0: no audit); then, per
# request, one argument with its number N of queries, at, agency, key id, route and request id,
# joined by the ASCII unit separator (31), followed by N arguments, one per query: subject, kind,
# identifier, joined likewise (SubjectQuery.packed). (A few arguments where there would be many:
# each one costs the client and the server.)
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
local i, last = 8, #ARGV
while i <= last do
  local n, at, agency, key, route, request = string.match(
    ARGV[i], '^(%d+)\\31([^\\31]*)\\31([^\\31]*)\\31([^\\31]*)\\31([^\\31]*)\\31(.*)$')
  n = tonumber(n)
  for q = i + 1, i + n do
    local subject, kind, identifier = string.match(ARGV[q], '^([^\\31]*)\\31([^\\31]*)\\31(.*)$')
    local row = redis.call('HMGET', sp .. subject, field, 'lists', 'related')
    local subjects, answers, histories, summary = {}, {}, {}, {}
    if row[3] then
      for s in string.gmatch(row[3], '[^\\n]+') do
        local rel = redis.call('HMGET', sp .. s, field, 'lists')
        local k = #subjects + 1
        subjects[k] = s
        answers[k] = rel[1]
        if depth > 0 then
          histories[k] = redis.call('ZREVRANGE', tp .. s, 0, depth - 1)
        end
        if rel[2] and rel[2] ~= '' then
          local kind_of = string.sub(s, 1, string.find(s, ':', 1, true) - 1)
          summary[#summary + 1] = kind_of .. '=' .. rel[2]
        end
      end
    end
    local history = {}
    if depth > 0 then
      history = redis.call('ZREVRANGE', tp .. subject, 0, depth - 1)
    end
    out[#out + 1] = {row[1], subjects, answers, history, histories}
    if maxlen ~= '0' then
      redis.call('XADD', audit, 'MAXLEN', '~', maxlen, '*',
        'at', at, 'agency', agency, 'key', key, 'route', route, 'request', request,
        'kind', kind, 'identifier', identifier,
        'known', row[1] and '1' or '0', 'lists', row[2] or '',
        'related_lists', table.concat(summary, ';'))
    end
  end
  i = i + n + 1
end
return out
"""
_SEPARATOR = "\x1f"
"""Joins the fields of one script argument (ASCII unit separator: in no identifier or name)."""


class AuditContext(NamedTuple):
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
        """The fields as the script reads them, after the number of queries."""
        return _SEPARATOR.join(self).encode()


class RelatedAnswer(NamedTuple):
    """A vehicle's carrier or recent driver."""

    subject: str
    """``KIND:key`` (not masked: the caller masks what it shows)."""
    answer: bytes | None
    """The stored answer document for the scope; None when the subject has no snapshot."""
    history: tuple[bytes, ...]
    """Latest list triggers, newest first (evidence scope)."""


class SubjectAnswer(NamedTuple):
    """What the store holds for one query."""

    query: SubjectQuery
    """The query."""
    answer: bytes | None
    """The stored answer document for the scope; None when the subject has no snapshot."""
    history: tuple[bytes, ...]
    """Latest list triggers, newest first (evidence scope)."""
    related: tuple[RelatedAnswer, ...]
    """Vehicles: the carrier first, then the recent drivers, as the snapshot names them."""


class Lookup(NamedTuple):
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


def _fail(batch: Sequence[_Waiting], error: Exception) -> None:
    for waiting in batch:
        if not waiting.future.done():
            waiting.future.set_exception(error)


def _bulk(value: bytes) -> bytes:
    """``value`` as a RESP bulk string."""
    return b"$%d\r\n%b\r\n" % (len(value), value)


def _command(*args: bytes) -> bytes:
    """A command in RESP."""
    return b"*%d\r\n" % len(args) + b"".join(_bulk(arg) for arg in args)


_EVAL = _command(b"EVAL", _LOOKUP_SCRIPT.encode())[4:]
"""``EVAL <script>`` without the command's argument count: for a Redis that lost the script."""


class _Waiting(NamedTuple):
    """A lookup waiting for its turn's script call."""

    queries: Sequence[SubjectQuery]
    audit: AuditContext
    future: asyncio.Future[Lookup]


Reply = Any
"""What hiredis parsed: bytes, int, None, a list of them, or an exception (an error reply, or
the connection lost)."""


class _Connection(asyncio.Protocol):
    """One Redis connection: commands are written as they come (pipelined); each reply goes to
    the callback of the command it answers, in order. When the connection is lost, every
    command still waiting gets a :class:`ConnectionError` as its reply."""

    def __init__(self) -> None:
        self._reader = hiredis.Reader()
        self._callbacks: deque[Callable[[Reply], None]] = deque()
        self._transport: asyncio.Transport | None = None
        self.usable = False
        """Connected, and not closed or lost since."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.attach(transport)

    def attach(self, transport: asyncio.BaseTransport) -> None:
        """Use ``transport`` (uvloop may call ``connection_made`` only after the connection is
        handed over: the opener attaches it first)."""
        if self._transport is None:
            self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
            self.usable = not transport.is_closing()

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        callbacks = self._callbacks
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError:
                self.close()
                return
            if reply is False:
                return
            if not callbacks:  # a reply to nothing: the stream cannot be trusted
                self.close()
                return
            callbacks.popleft()(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        callbacks, self._callbacks = self._callbacks, deque()
        lost = ConnectionError("the connection to Redis was lost")
        for callback in callbacks:
            callback(lost)

    def send(self, command: bytes, callback: Callable[[Reply], None]) -> None:
        """Write ``command``; ``callback`` gets its reply."""
        assert self._transport is not None
        self._callbacks.append(callback)
        self._transport.write(command)

    def request(self, command: bytes) -> asyncio.Future[Reply]:
        """Write ``command``; the future gets its reply."""
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

        def deliver(reply: Reply) -> None:
            if not future.done():
                future.set_result(reply)

        self.send(command, deliver)
        return future

    def close(self) -> None:
        """Drop the connection now; commands waiting get :class:`ConnectionError`."""
        self.usable = False
        if self._transport is not None:
            self._transport.abort()


@dataclass(frozen=True, slots=True)
class _Address:
    """Where and how :class:`_Connection` connects: from the Redis client's settings."""

    host: str
    port: int
    path: str | None
    db: int
    username: str | None
    password: str | None

    @classmethod
    def of(cls, redis: Redis) -> _Address | None:
        """The client's address, or None when the calls must go through redis-py."""
        pool = redis.connection_pool
        kwargs = pool.connection_kwargs
        if kwargs.get("credential_provider") is not None:
            return None
        if pool.connection_class is Connection:
            return cls(
                str(kwargs.get("host", "localhost")),
                int(kwargs.get("port", 6379)),
                None,
                int(kwargs.get("db", 0) or 0),
                kwargs.get("username"),
                kwargs.get("password"),
            )
        if pool.connection_class is UnixDomainSocketConnection:
            return cls(
                "",
                0,
                str(kwargs["path"]),
                int(kwargs.get("db", 0) or 0),
                kwargs.get("username"),
                kwargs.get("password"),
            )
        return None

    def handshake(self) -> list[bytes]:
        """The commands that make a new connection ready for the lookup script."""
        commands = []
        if self.password is not None:
            credentials = (self.username, self.password) if self.username else (self.password,)
            commands.append(_command(b"AUTH", *(c.encode() for c in credentials)))
        if self.db:
            commands.append(_command(b"SELECT", b"%d" % self.db))
        commands.append(_command(b"SCRIPT", b"LOAD", _LOOKUP_SCRIPT.encode()))
        return commands


class _Call:
    """One script call: the lookups it answers, and its state."""

    __slots__ = ("argv", "batch", "done", "evaluated", "evidence", "reconnected", "timer")

    def __init__(self, batch: list[_Waiting], evidence: bool, argv: tuple[int, bytes]) -> None:
        self.batch = batch
        self.evidence = evidence
        self.argv = argv
        """How many script arguments, and the arguments in RESP."""
        self.done = False
        """Its lookups are answered (or failed)."""
        self.evaluated = False
        """Sent again with EVAL after a NOSCRIPT reply."""
        self.reconnected = False
        """Sent again on a new connection after the one it was sent on was lost."""
        self.timer: asyncio.TimerHandle | None = None


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
        max_in_flight: int = 4,
        batch_queries: int = 16,
    ) -> None:
        """
        :param redis: the serving store: its address for the script calls (see the module
            docstring), and the client of the audit log and the readiness check. Its own read
            timeout may be None: every script call is bounded by ``timeout`` here.
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
        self._address = _Address.of(redis)
        self._connection: _Connection | None = None
        self._opening: asyncio.Task[_Connection] | None = None
        self._evalsha = b""
        self._closed = False
        self._constants = {scope: self._constant_args(scope) for scope in (False, True)}
        self._constants_resp = {
            scope: b"".join(_bulk(arg) for arg in args) for scope, args in self._constants.items()
        }
        self.calls = 0
        """Script calls made (lookups per call = lookups / calls)."""

    def _constant_args(self, evidence: bool) -> list[bytes]:
        layout = self._layout
        return [
            layout.subject_prefix.encode(),
            layout.triggers_prefix.encode(),
            layout.meta.encode(),
            layout.audit.encode(),
            b"full" if evidence else b"basic",
            b"%d" % (self._history if evidence else 0),
            b"%d" % self._audit_maxlen,
        ]

    async def lookup(
        self, queries: Sequence[SubjectQuery], *, evidence: bool, audit: AuditContext
    ) -> Lookup:
        """Answers to ``queries``, each audited.

        :raises StoreUnavailableError: when Redis does not answer.
        :raises StoreNotReadyError: when the store is empty or loading.
        """
        future: asyncio.Future[Lookup] = asyncio.get_running_loop().create_future()
        self._waiting[evidence].append(_Waiting(queries, audit, future))
        if not self._scheduled[evidence]:
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
        """Send the waiting lookups, in calls of about ``batch_queries`` queries, while fewer
        than ``max_in_flight`` calls are under way."""
        self._scheduled[evidence] = False
        if self._closed:
            waiting, self._waiting[evidence] = self._waiting[evidence], []
            _fail(waiting, StoreUnavailableError("the store reader is closed"))
            return
        while self._waiting[evidence] and self._in_flight[evidence] < self._max_in_flight:
            waiting = self._waiting[evidence]
            taken = queries = 0
            for waiting_lookup in waiting:
                taken += 1
                queries += len(waiting_lookup.queries)
                if queries >= self._batch_queries:
                    break
            if taken == len(waiting):
                batch, self._waiting[evidence] = waiting, []
            else:
                batch, self._waiting[evidence] = waiting[:taken], waiting[taken:]
            self._call(batch, evidence)

    def _call(self, batch: list[_Waiting], evidence: bool) -> None:
        """One script call for ``batch``."""
        self._in_flight[evidence] += 1
        self.calls += 1
        if self._address is None:
            self._start(self._call_redis_py(batch, evidence))
            return
        call = _Call(batch, evidence, self._argv(batch, evidence))
        call.timer = asyncio.get_running_loop().call_later(self._timeout, self._expired, call)
        connection = self._connection
        if connection is not None and connection.usable:
            self._send(connection, call)
        else:
            self._start(self._send_when_connected(call))

    def _start(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    def _argv(self, batch: list[_Waiting], evidence: bool) -> tuple[int, bytes]:
        """The script's arguments: how many, and in RESP."""
        parts = [self._constants_resp[evidence]]
        count = len(self._constants[evidence])
        for waiting in batch:
            queries = waiting.queries
            parts.append(_bulk(b"%d\x1f" % len(queries) + waiting.audit.packed))
            parts += [query.resp for query in queries]
            count += 1 + len(queries)
        return count, b"".join(parts)

    def _send(self, connection: _Connection, call: _Call) -> None:
        count, argv = call.argv
        head = _EVAL if call.evaluated else self._evalsha
        command = b"*%d\r\n%b$1\r\n0\r\n%b" % (count + 3, head, argv)
        connection.send(command, lambda reply: self._replied(call, reply))

    async def _send_when_connected(self, call: _Call) -> None:
        try:
            connection = await self._connected()
        except (OSError, TimeoutError, hiredis.HiredisError) as exc:
            # OSError: ConnectionError too. The call's timer may have ended it already.
            self._ended(call, StoreUnavailableError(type(exc).__name__))
            return
        except Exception as exc:  # noqa: BLE001 (a bug: answered 500 by the API, not left hanging)
            self._ended(call, exc)
            return
        if not call.done:
            self._send(connection, call)

    async def _connected(self) -> _Connection:
        """The connection, opened if needed; callers waiting meanwhile share one attempt."""
        if self._closed:
            raise ConnectionError("the store reader is closed")
        if self._opening is None or self._opening.done():
            self._opening = asyncio.ensure_future(self._open())
        return await asyncio.shield(self._opening)

    async def _open(self) -> _Connection:
        address = self._address
        assert address is not None
        loop = asyncio.get_running_loop()
        connection: _Connection | None = None
        try:
            async with asyncio.timeout(self._timeout):
                if address.path is not None:
                    transport, connection = await loop.create_unix_connection(
                        _Connection, address.path
                    )
                else:
                    transport, connection = await loop.create_connection(
                        _Connection, address.host, address.port
                    )
                connection.attach(transport)
                replies = await asyncio.gather(
                    *(connection.request(command) for command in address.handshake())
                )
            for reply in replies:
                if isinstance(reply, Exception):
                    # The reply's own text may name the user: give its kind only.
                    raise ConnectionError(f"Redis refused the connection: {type(reply).__name__}")
        except BaseException:
            if connection is not None:
                connection.close()
            raise
        self._evalsha = _command(b"EVALSHA", replies[-1])[4:]  # without the *N of the command
        self._connection = connection
        return connection

    def _replied(self, call: _Call, reply: Reply) -> None:
        if call.done:  # timed out: its lookups were answered already
            return
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            connection = self._connection
            if not call.evaluated and connection is not None and connection.usable:
                call.evaluated = True
                self._send(connection, call)
                return
        elif isinstance(reply, ConnectionError) and not call.reconnected and not self._closed:
            # As redis-py's one immediate retry: a connection that Redis closed (a restart)
            # and that this process had not noticed yet. Its timer still bounds the call.
            call.reconnected = True
            self._start(self._send_when_connected(call))
            return
        if isinstance(reply, Exception):
            self._ended(call, StoreUnavailableError(type(reply).__name__))
            return
        self._ended(call, None, reply)

    def _expired(self, call: _Call) -> None:
        if call.done:
            return
        self._ended(call, StoreUnavailableError("TimeoutError"))
        # Replies on this connection would come after the late one, if at all: start afresh.
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _ended(self, call: _Call, error: Exception | None, reply: Reply = None) -> None:
        if call.done:
            return
        call.done = True
        if call.timer is not None:
            call.timer.cancel()
        self._in_flight[call.evidence] -= 1
        if error is not None:
            _fail(call.batch, error)
        else:
            self._answer(call.batch, reply)
        self._schedule(call.evidence)

    async def _call_redis_py(self, batch: list[_Waiting], evidence: bool) -> None:
        """The script call through redis-py, for a client :class:`_Connection` cannot copy."""
        args: list[bytes] = list(self._constants[evidence])
        for waiting in batch:
            args.append(b"%d\x1f" % len(waiting.queries) + waiting.audit.packed)
            args += [query.packed for query in waiting.queries]
        try:
            async with asyncio.timeout(self._timeout):
                reply = await self._lookup(keys=[], args=args)
        except (RedisError, TimeoutError) as exc:
            _fail(batch, StoreUnavailableError(type(exc).__name__))
        else:
            self._answer(batch, reply)
        finally:
            self._in_flight[evidence] -= 1
            self._schedule(evidence)

    @staticmethod
    def _answer(batch: list[_Waiting], reply: Reply) -> None:
        """Hand each lookup of ``batch`` its answers from the script's ``reply``."""
        try:
            if int(reply[0]) != 1:
                _fail(batch, StoreNotReadyError("the store is loading"))
                return
            as_of, written_at, caught_up_at = _text(reply[1]), _text(reply[2]), _text(reply[3])
            row_number = 4
            results = []
            for waiting in batch:
                answers = []
                for query in waiting.queries:
                    answer, subjects, related_answers, history, histories = reply[row_number]
                    row_number += 1
                    related = (
                        tuple(
                            RelatedAnswer(
                                subject.decode(),
                                related_answers[n],
                                tuple(histories[n]) if histories else (),
                            )
                            for n, subject in enumerate(subjects)
                        )
                        if subjects
                        else ()
                    )
                    answers.append(
                        SubjectAnswer(query, answer, tuple(history) if history else (), related)
                    )
                results.append(Lookup(as_of, written_at, caught_up_at, tuple(answers)))
        except Exception as exc:  # noqa: BLE001 (a reply not as the script makes it: a bug)
            _fail(batch, exc)
            return
        for waiting, result in zip(batch, results, strict=True):
            if not waiting.future.done():
                waiting.future.set_result(result)

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
        """Close the Redis connections; lookups still waiting for Redis answer 503."""
        self._closed = True
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        await self._redis.aclose()

"""The law-enforcement query API: is a truck, its carrier or its driver on a list, and why.

Routes (OpenAPI 3 document at ``/openapi.json``):

- ``GET /v1/vehicles/{plate}?colour=YELLOW`` — a vehicle, its carrier and its recent drivers;
- ``GET /v1/carriers/{uscc}``, ``GET /v1/drivers/{id_number}``;
- ``POST /v1/lookup`` — up to 1,000 queries ``{"queries": [{"kind": "vehicle", "plate": ...,
  "colour": ...}, {"kind": "carrier", "uscc": ...}, {"kind": "driver", "id_number": ...}]}``;
- ``GET /v1/audit`` — the audit log (scope ``audit``);
- ``/metrics``, ``/health/live``, ``/health/ready`` (Redis answers PING and the store is loaded).

Every lookup is one Redis round trip (``api/store.py``) that also writes its audit entries. The
answers are documents the serving-store sink prepared per scope when it wrote the snapshot; the
API checks the key, the rate and the identifiers, and splices the documents into the response
(``orjson.Fragment``) without parsing them.

An unknown subject is a clean ``known: false`` answer. The API never answers "not listed" when it
cannot know: Redis down, or a store still loading, is a 503 with ``Retry-After``.

Nothing here logs an identifier: no access log (paths hold ID numbers), and errors are logged by
route template.

``run_api`` serves it with the lean HTTP/1.1 server of ``api/http.py`` and routes requests itself
(a dictionary look-up per request): aiohttp's web framework cost about half of a lookup's CPU
(BENCHMARKS.md, notes on the Lookup API). :func:`create_api_app` wraps the same handler in an
aiohttp application, for tests and for embedding.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import itertools
import logging
import os
import re
import signal
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from api.auth import ApiKey, KeyFileError, KeyRegistry, RateLimiter, Scope, presented_key
from api.http import JSON, Handler, HttpError, HttpRequest, HttpResponse, HttpServer
from api.metrics import ApiMetrics, CounterChild
from api.openapi import openapi_document
from api.queries import (
    BODY_INVALID,
    QUERY_CACHE_SIZE,
    BatchError,
    Kind,
    QueryError,
    SubjectQuery,
    carrier_query,
    china_today,
    driver_query,
    parse_batch,
    vehicle_query,
)
from api.store import (
    AuditContext,
    Lookup,
    StoreNotReadyError,
    StoreReader,
    StoreUnavailableError,
    SubjectAnswer,
)
from sinks.serving_store import LIST_FIELDS, NOT_LISTED, connect_redis, shown_subject
from streams.settings import Settings

__all__ = ["ROUTES", "SERVED", "create_api_app", "create_api_handler", "run_api"]

log = logging.getLogger(__name__)

VEHICLE_ROUTE = "/v1/vehicles/{plate}"
CARRIER_ROUTE = "/v1/carriers/{uscc}"
DRIVER_ROUTE = "/v1/drivers/{id_number}"
BATCH_ROUTE = "/v1/lookup"
AUDIT_ROUTE = "/v1/audit"
ROUTES = (VEHICLE_ROUTE, CARRIER_ROUTE, DRIVER_ROUTE, BATCH_ROUTE, AUDIT_ROUTE)

STORE_UNAVAILABLE_RETRY_AFTER = 1
"""Seconds a client should wait after a 503 because Redis is down."""
STORE_NOT_READY_RETRY_AFTER = 5
"""Seconds a client should wait after a 503 because the store is loading."""
MAX_AUDIT_PAGE = 1000
MAX_BODY = 1024**2
"""Bytes a request body may hold (1,000 queries take about 70 KB)."""

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
_UNKNOWN_LISTS = {
    name: {"listed": False, "status": NOT_LISTED, "rules": []} for name in LIST_FIELDS.values()
}


class _AuditClock:
    """Now, as the audit log records it (ISO 8601, UTC, milliseconds): formatted once per
    millisecond, not once per request."""

    __slots__ = ("_millisecond", "_text")

    def __init__(self) -> None:
        self._millisecond = -1
        self._text = ""

    def __call__(self) -> str:
        millisecond = time.time_ns() // 1_000_000
        if millisecond != self._millisecond:
            self._millisecond = millisecond
            seconds, part = divmod(millisecond, 1000)
            at = datetime.fromtimestamp(seconds, UTC).replace(microsecond=part * 1000)
            self._text = at.isoformat(timespec="milliseconds")
        return self._text


class _HttpError(Exception):
    """An error answer: status, reason code, message, and where it applies."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}
        body: dict[str, Any] = {"code": code, "message": message}
        if field is not None:
            body["field"] = field
        if errors is not None:
            body["errors"] = errors
        self.body = {"error": body}

    def response(self, request_id: str | None) -> HttpResponse:
        """The answer; with ``X-Request-ID`` when the request got an id."""
        headers = tuple(self.headers.items())
        if request_id is not None:
            headers = (("X-Request-ID", request_id), *headers)
        return HttpResponse(self.status, orjson.dumps(self.body), JSON, headers)


def _json(body: bytes, request_id: str) -> HttpResponse:
    """A 200 answer."""
    return HttpResponse(200, body, JSON, (("X-Request-ID", request_id),))


_NO_QUERY: dict[str, str] = {}


def _query(request: HttpRequest) -> dict[str, str]:
    """The query string's parameters, the first value of each (as aiohttp's ``query.get``)."""
    if not request.query_string:  # most lookups: parsing an empty one costs as much as a full one
        return _NO_QUERY
    parameters: dict[str, str] = {}
    for name, value in parse_qsl(request.query_string, keep_blank_values=True):
        parameters.setdefault(name, value)
    return parameters


def _unknown(subject: str, evidence: bool) -> dict[str, Any]:
    return {
        "subject": shown_subject(subject, evidence=evidence),
        "known": False,
        "listed": False,
        "lists_on": [],
        "lists": _UNKNOWN_LISTS,
    }


def _document(answer: bytes | None, subject: str, evidence: bool) -> Any:
    return orjson.Fragment(answer) if answer is not None else _unknown(subject, evidence)


def _answer_body(answer: SubjectAnswer, evidence: bool) -> dict[str, Any]:
    query = answer.query
    body: dict[str, Any] = {
        "query": query.shown,
        "subject": _document(answer.answer, query.subject, evidence),
    }
    if query.kind is Kind.VEHICLE:
        carrier = None
        drivers = []
        for related in answer.related:
            document = _document(related.answer, related.subject, evidence)
            if related.subject.startswith("CARRIER:"):
                carrier = document
            else:
                drivers.append(document)
        body["carrier"] = carrier
        body["drivers"] = drivers
    if evidence:
        triggers: dict[str, list[orjson.Fragment]] = {}
        if answer.history:
            triggers[query.subject] = [orjson.Fragment(t) for t in answer.history]
        for related in answer.related:
            if related.history:
                triggers[related.subject] = [orjson.Fragment(t) for t in related.history]
        body["triggers"] = triggers
    return body


def _freshness(lookup: Lookup, evidence: bool) -> dict[str, Any]:
    return {
        "as_of": lookup.as_of or None,
        "store": {
            "written_at": lookup.written_at or None,
            "caught_up_at": lookup.caught_up_at or None,
        },
        "scope": "evidence" if evidence else "basic",
    }


RouteHandler = Callable[[HttpRequest, str], Awaitable[HttpResponse]]
"""Answers a request to one route; gets the path's parameter ("" on routes without one)."""


class _Route(NamedTuple):
    """A route: its template, the methods it answers and its handler."""

    template: str
    methods: frozenset[str]
    handler: RouteHandler


@functools.lru_cache(maxsize=QUERY_CACHE_SIZE)
def _path_segment(raw: str) -> str:
    """A path segment, percent-decoded: plates hold a Chinese character, so most are encoded,
    and the same ones come back all day (``unquote`` took 4 % of a lookup's CPU)."""
    return unquote(raw)


class _Router:
    """Routes by path: a dictionary look-up for the fixed paths, and one for the prefix of the
    paths with a parameter in their last segment (``/v1/vehicles/{plate}``)."""

    def __init__(self, routes: list[_Route]) -> None:
        self.routes = tuple(routes)
        self._fixed: dict[str, _Route] = {}
        self._prefixed: dict[str, _Route] = {}
        for route in routes:
            prefix, _, last = route.template.rpartition("/")
            if last.startswith("{"):
                self._prefixed[prefix] = route
            else:
                self._fixed[route.template] = route

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path
        parameter = ""
        route = self._fixed.get(path)
        if route is None:
            prefix, _, last = path.rpartition("/")
            route = self._prefixed.get(prefix) if last else None
            if route is None:
                return _HttpError(404, "NOT_FOUND", "no such route").response(None)
            parameter = _path_segment(last) if "%" in last else last
        if request.method not in route.methods:
            allowed = ", ".join(sorted(route.methods))
            return _HttpError(
                405, "METHOD_NOT_ALLOWED", "method not allowed", headers={"Allow": allowed}
            ).response(None)
        return await route.handler(request, parameter)


class _Api:
    """The handlers, over their dependencies."""

    def __init__(
        self,
        store: StoreReader,
        keys: KeyRegistry,
        metrics: ApiMetrics,
        limiter: RateLimiter,
        today: Callable[[], date],
    ) -> None:
        self.store = store
        self.keys = keys
        self.metrics = metrics
        self.limiter = limiter
        self.today = today
        self._request_ids = itertools.count(1)
        self._request_prefix = os.urandom(4).hex()
        self._now = _AuditClock()
        self._counters: dict[tuple[str, int], CounterChild] = {}
        self._identifiers: dict[tuple[str, str], CounterChild] = {}

    # --- the wrapper every API route goes through ---

    def route(
        self,
        route: str,
        handler: Callable[[HttpRequest, str, str], Awaitable[HttpResponse]],
    ) -> RouteHandler:
        """``handler`` with request ids, error answers and metrics."""
        seconds = self.metrics.request_seconds.labels(route)

        async def handle(request: HttpRequest, parameter: str) -> HttpResponse:
            started = time.perf_counter()
            given = request.headers.get("X-Request-ID")
            if given is not None and _REQUEST_ID.fullmatch(given):
                request_id = given
            else:
                request_id = f"{self._request_prefix}-{next(self._request_ids)}"
            try:
                response = await handler(request, request_id, parameter)
            except _HttpError as exc:
                response = exc.response(request_id)
            except StoreUnavailableError:
                self.metrics.store_errors.labels("unavailable").inc()
                response = _HttpError(
                    503,
                    "STORE_UNAVAILABLE",
                    "the serving store does not answer; try again",
                    headers={"Retry-After": str(STORE_UNAVAILABLE_RETRY_AFTER)},
                ).response(request_id)
            except StoreNotReadyError:
                self.metrics.store_errors.labels("not_ready").inc()
                response = _HttpError(
                    503,
                    "STORE_NOT_READY",
                    "the serving store is loading; try again",
                    headers={"Retry-After": str(STORE_NOT_READY_RETRY_AFTER)},
                ).response(request_id)
            except HttpError as exc:  # the body: too long, or malformed
                code = re.sub(r"\W+", "_", exc.reason).upper()
                response = _HttpError(exc.status, code, exc.reason).response(request_id)
            except Exception as exc:  # noqa: BLE001 (answered 500, logged without its message)
                # Frames only: an exception's message may quote an identifier.
                frames = "".join(traceback.format_tb(exc.__traceback__))
                log.error("%s %s failed: %s\n%s", request.method, route, type(exc).__name__, frames)
                response = _HttpError(500, "INTERNAL", "internal error").response(request_id)
            counter = self._counters.get((route, response.status))
            if counter is None:
                counter = self.metrics.requests.labels(route, str(response.status))
                self._counters[(route, response.status)] = counter
            counter.inc()
            seconds.observe(time.perf_counter() - started)
            return response

        return handle

    def authorise(self, request: HttpRequest, scope: Scope) -> ApiKey:
        """The request's key, if it holds ``scope`` and is within its rate."""
        headers = request.headers
        key = self.keys.authenticate(
            presented_key(headers.get("Authorization"), headers.get("X-API-Key"))
        )
        if key is None:
            raise _HttpError(
                401,
                "UNAUTHENTICATED",
                "a valid API key is required (Authorization: Bearer <key> or X-API-Key)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not key.allows(scope):
            raise _HttpError(403, "FORBIDDEN", f"the key does not have the {scope} scope")
        wait = self.limiter.wait(key)
        if wait > 0:
            raise _HttpError(
                429,
                "RATE_LIMITED",
                f"at most {key.rate_per_second:g} requests per second for this key",
                headers={"Retry-After": str(max(1, int(wait + 0.999)))},
            )
        return key

    def lookup_key(self, request: HttpRequest, query: dict[str, str]) -> tuple[ApiKey, bool]:
        """The key and whether the answer includes evidence (``?detail=``, else its best)."""
        detail = query.get("detail")
        if detail == Scope.EVIDENCE:
            return self.authorise(request, Scope.EVIDENCE), True
        key = self.authorise(request, Scope.BASIC)
        if detail is None:
            return key, key.allows(Scope.EVIDENCE)
        if detail == Scope.BASIC:
            return key, False
        raise _HttpError(400, "DETAIL_INVALID", "detail must be basic or evidence", field="detail")

    async def lookup(
        self,
        key: ApiKey,
        route: str,
        request_id: str,
        queries: list[SubjectQuery],
        evidence: bool,
    ) -> Lookup:
        audit = AuditContext(self._now(), key.agency, key.key_id, route, request_id)
        result = await self.store.lookup(queries, evidence=evidence, audit=audit)
        for answer in result.answers:
            labels = (answer.query.kind, "true" if answer.answer is not None else "false")
            counter = self._identifiers.get(labels)
            if counter is None:
                counter = self._identifiers[labels] = self.metrics.identifiers.labels(*labels)
            counter.inc()
        return result

    async def single(
        self, route: str, request_id: str, key: ApiKey, query: SubjectQuery, evidence: bool
    ) -> HttpResponse:
        result = await self.lookup(key, route, request_id, [query], evidence)
        body = _freshness(result, evidence)
        body.update(_answer_body(result.answers[0], evidence))
        return _json(orjson.dumps(body), request_id)

    # --- routes ---

    async def vehicle(self, request: HttpRequest, request_id: str, plate: str) -> HttpResponse:
        query = _query(request)
        key, evidence = self.lookup_key(request, query)
        try:
            subject = vehicle_query(plate, query.get("colour"))
        except QueryError as exc:
            raise _HttpError(400, exc.code, exc.message, field=exc.field) from None
        return await self.single(VEHICLE_ROUTE, request_id, key, subject, evidence)

    async def carrier(self, request: HttpRequest, request_id: str, uscc: str) -> HttpResponse:
        key, evidence = self.lookup_key(request, _query(request))
        try:
            subject = carrier_query(uscc)
        except QueryError as exc:
            raise _HttpError(400, exc.code, exc.message, field=exc.field) from None
        return await self.single(CARRIER_ROUTE, request_id, key, subject, evidence)

    async def driver(self, request: HttpRequest, request_id: str, id_number: str) -> HttpResponse:
        key, evidence = self.lookup_key(request, _query(request))
        try:
            subject = driver_query(id_number, self.today())
        except QueryError as exc:
            raise _HttpError(400, exc.code, exc.message, field=exc.field) from None
        return await self.single(DRIVER_ROUTE, request_id, key, subject, evidence)

    async def batch(self, request: HttpRequest, request_id: str, _: str) -> HttpResponse:
        key, evidence = self.lookup_key(request, _query(request))
        try:
            body = orjson.loads(await request.body(MAX_BODY))
        except orjson.JSONDecodeError:
            raise _HttpError(400, BODY_INVALID, "the body is not JSON", field="body") from None
        try:
            queries = parse_batch(body, self.today())
        except BatchError as exc:
            errors = [error.as_dict() for error in exc.errors]
            first = exc.errors[0]
            raise _HttpError(
                400,
                first.code if len(errors) == 1 else "QUERIES_INVALID",
                first.message if len(errors) == 1 else f"{len(errors)} queries are invalid",
                field=first.field if len(errors) == 1 else "queries",
                errors=errors,
            ) from None
        result = await self.lookup(key, BATCH_ROUTE, request_id, queries, evidence)
        answer = _freshness(result, evidence) | {
            "answers": [_answer_body(a, evidence) for a in result.answers]
        }
        return _json(orjson.dumps(answer), request_id)

    async def audit(self, request: HttpRequest, request_id: str, _: str) -> HttpResponse:
        self.authorise(request, Scope.AUDIT)
        params = _query(request)
        try:
            count = int(params.get("count", "100"))
        except ValueError:
            count = 0
        if not 1 <= count <= MAX_AUDIT_PAGE:
            raise _HttpError(
                400, "COUNT_INVALID", f"count must be 1 to {MAX_AUDIT_PAGE}", field="count"
            )
        before = params.get("before")
        if before is not None and not _STREAM_ID.fullmatch(before):
            raise _HttpError(
                400, "BEFORE_INVALID", "before must be an entry id (next_before)", field="before"
            )
        page = await self.store.audit_log(
            count=count,
            before=before,
            agency=params.get("agency"),
            identifier=params.get("identifier"),
        )
        body = {"entries": list(page.entries), "next_before": page.next_before}
        return _json(orjson.dumps(body), request_id)


_GET = frozenset({"GET"})
_GET_AND_HEAD = frozenset({"GET", "HEAD"})
_POST = frozenset({"POST"})


def _routes(
    api: _Api, store: StoreReader, registry: CollectorRegistry, openapi: bytes
) -> list[_Route]:
    async def openapi_json(_: HttpRequest, __: str) -> HttpResponse:
        return HttpResponse(200, openapi)

    async def metrics(_: HttpRequest, __: str) -> HttpResponse:
        # As aiohttp served it: the type without the format version.
        return HttpResponse(200, generate_latest(registry), CONTENT_TYPE_LATEST.split(";")[0])

    async def live(_: HttpRequest, __: str) -> HttpResponse:
        return HttpResponse(200, orjson.dumps({"status": "live"}))

    async def ready(_: HttpRequest, __: str) -> HttpResponse:
        try:
            state = await store.readiness()
        except StoreUnavailableError:
            return HttpResponse(503, orjson.dumps({"status": "not ready", "redis": "down"}))
        is_ready = bool(state["store_ready"])
        body = {"status": "ready" if is_ready else "not ready", **state}
        return HttpResponse(200 if is_ready else 503, orjson.dumps(body))

    # No HEAD on lookups: it would be answered (and audited) without a body.
    return [
        _Route(VEHICLE_ROUTE, _GET, api.route(VEHICLE_ROUTE, api.vehicle)),
        _Route(CARRIER_ROUTE, _GET, api.route(CARRIER_ROUTE, api.carrier)),
        _Route(DRIVER_ROUTE, _GET, api.route(DRIVER_ROUTE, api.driver)),
        _Route(BATCH_ROUTE, _POST, api.route(BATCH_ROUTE, api.batch)),
        _Route(AUDIT_ROUTE, _GET, api.route(AUDIT_ROUTE, api.audit)),
        _Route("/openapi.json", _GET_AND_HEAD, openapi_json),
        _Route("/metrics", _GET_AND_HEAD, metrics),
        _Route("/health/live", _GET_AND_HEAD, live),
        _Route("/health/ready", _GET_AND_HEAD, ready),
    ]


SERVED = (
    *((route, "GET") for route in (VEHICLE_ROUTE, CARRIER_ROUTE, DRIVER_ROUTE, AUDIT_ROUTE)),
    (BATCH_ROUTE, "POST"),
    *((path, "GET") for path in ("/openapi.json", "/metrics", "/health/live", "/health/ready")),
)
"""Every route and method the API answers (HEAD aside), as ``(template, method)``."""


def create_api_handler(
    store: StoreReader,
    keys: KeyRegistry,
    registry: CollectorRegistry,
    *,
    limiter: RateLimiter | None = None,
    today: Callable[[], date] = china_today,
) -> Handler:
    """The API over ``store``, accepting ``keys``, with metrics on ``registry``: a handler for
    :class:`api.http.HttpServer`.

    :param store: the serving store; the caller owns it (and closes it).
    :param keys: the agencies' keys.
    :param registry: where the API's metrics go (and what /metrics serves).
    :param limiter: per-key rate limits; a fresh one when None.
    :param today: today's date in China, for the birth dates in ID numbers.
    """
    api = _Api(store, keys, ApiMetrics.create(registry), limiter or RateLimiter(), today)
    routes = _routes(api, store, registry, orjson.dumps(openapi_document()))
    router = _Router(routes)
    assert {(r.template, m) for r in routes for m in r.methods if m != "HEAD"} == set(SERVED)
    return router


def create_api_app(
    store: StoreReader,
    keys: KeyRegistry,
    registry: CollectorRegistry,
    *,
    limiter: RateLimiter | None = None,
    today: Callable[[], date] = china_today,
) -> web.Application:
    """:func:`create_api_handler`'s API as an aiohttp application (one route for every path),
    for tests and for embedding; ``run_api`` serves the handler with :class:`HttpServer`.
    Parameters as :func:`create_api_handler`'s."""
    handler = create_api_handler(store, keys, registry, limiter=limiter, today=today)

    async def serve(request: web.Request) -> web.Response:
        answer = await handler(
            HttpRequest(request.method, request.raw_path, request.headers, request.content)
        )
        headers = {"Content-Type": answer.content_type, **dict(answer.headers)}
        return web.Response(body=answer.body, status=answer.status, headers=headers)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_route("*", "/{path:.*}", serve)
    return app


def _event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # uvloop is not built for every platform
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_api(settings: Settings) -> None:
    """Serve the API on ``settings.bind_host:settings.api_port`` until SIGTERM or SIGINT.

    :raises KeyFileError: when ``settings.api_keys_file`` is unset or not valid.
    """
    if settings.api_keys_file is None:
        raise KeyFileError("no key file: set CREDIT_API_KEYS_FILE (see api/auth.py)")
    keys = KeyRegistry.from_file(
        settings.api_keys_file, default_rate=settings.api_default_rate_per_second
    )
    loop = _event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_serve(settings, keys))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def _serve(settings: Settings, keys: KeyRegistry) -> None:
    # A down Redis must turn into a 503 quickly, not hold officers' requests.
    store = StoreReader(
        connect_redis(settings.redis_url, timeout=0.5, bounded_reads=False), timeout=0.5
    )
    # No access log (the server has none): paths hold ID numbers.
    server = HttpServer(create_api_handler(store, keys, CollectorRegistry()))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    try:
        # A backlog of 128 (aiohttp's default) overflowed in a benchmark when the process
        # stalled for a moment; a dropped SYN costs the client a 1 s retransmission.
        await server.start(settings.bind_host, settings.api_port, backlog=1024)
        # What exists now (modules, routes, keys) lives as long as the process: keep it out of
        # the collector's full passes, which would otherwise pause every request in flight.
        gc.freeze()
        log.info(
            "query API on %s:%d with %d keys",
            settings.bind_host,
            settings.api_port,
            len(keys.keys),
        )
        await stop.wait()
    finally:
        await server.close()
        await store.close()

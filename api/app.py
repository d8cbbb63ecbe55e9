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
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import os
import re
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from api.auth import ApiKey, KeyFileError, KeyRegistry, RateLimiter, Scope, presented_key
from api.metrics import ApiMetrics, CounterChild
from api.openapi import openapi_document
from api.queries import (
    BODY_INVALID,
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

__all__ = ["ROUTES", "create_api_app", "run_api"]

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

_JSON = "application/json; charset=utf-8"
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

    def response(self, request_id: str) -> web.Response:
        return _json(orjson.dumps(self.body), self.status, request_id, self.headers)


def _json(
    body: bytes, status: int, request_id: str, extra: dict[str, str] | None = None
) -> web.Response:
    headers = {"Content-Type": _JSON, "X-Request-ID": request_id}
    if extra:
        headers.update(extra)
    return web.Response(body=body, status=status, headers=headers)


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

    # --- the wrapper every route goes through ---

    def route(
        self,
        route: str,
        handler: Callable[[web.Request, str], Awaitable[web.Response]],
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """``handler`` with request ids, error answers and metrics."""
        seconds = self.metrics.request_seconds.labels(route)

        async def handle(request: web.Request) -> web.Response:
            started = time.perf_counter()
            given = request.headers.get("X-Request-ID")
            if given is not None and _REQUEST_ID.fullmatch(given):
                request_id = given
            else:
                request_id = f"{self._request_prefix}-{next(self._request_ids)}"
            try:
                response = await handler(request, request_id)
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
            except web.HTTPException as exc:  # aiohttp's own, e.g. a body over the size limit
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

    def authorise(self, request: web.Request, scope: Scope) -> ApiKey:
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

    def lookup_key(self, request: web.Request) -> tuple[ApiKey, bool]:
        """The key and whether the answer includes evidence (``?detail=``, else its best)."""
        # Most lookups have no query string: parsing an empty one costs as much as a full one.
        detail = request.query.get("detail") if request.query_string else None
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
    ) -> web.Response:
        result = await self.lookup(key, route, request_id, [query], evidence)
        body = _freshness(result, evidence)
        body.update(_answer_body(result.answers[0], evidence))
        return _json(orjson.dumps(body), 200, request_id)

    # --- routes ---

    async def vehicle(self, request: web.Request, request_id: str) -> web.Response:
        key, evidence = self.lookup_key(request)
        colour = request.query.get("colour") if request.query_string else None
        try:
            query = vehicle_query(request.match_info["plate"], colour)
        except QueryError as exc:
            raise _HttpError(400, exc.code, exc.message, field=exc.field) from None
        return await self.single(VEHICLE_ROUTE, request_id, key, query, evidence)

    async def carrier(self, request: web.Request, request_id: str) -> web.Response:
        key, evidence = self.lookup_key(request)
        try:
            query = carrier_query(request.match_info["uscc"])
        except QueryError as exc:
            raise _HttpError(400, exc.code, exc.message, field=exc.field) from None
        return await self.single(CARRIER_ROUTE, request_id, key, query, evidence)

    async def driver(self, request: web.Request, request_id: str) -> web.Response:
        key, evidence = self.lookup_key(request)
        try:
            query = driver_query(request.match_info["id_number"], self.today())
        except QueryError as exc:
            raise _HttpError(400, exc.code, exc.message, field=exc.field) from None
        return await self.single(DRIVER_ROUTE, request_id, key, query, evidence)

    async def batch(self, request: web.Request, request_id: str) -> web.Response:
        key, evidence = self.lookup_key(request)
        try:
            body = orjson.loads(await request.read())
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
        return _json(orjson.dumps(answer), 200, request_id)

    async def audit(self, request: web.Request, request_id: str) -> web.Response:
        self.authorise(request, Scope.AUDIT)
        params = request.query
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
        return _json(orjson.dumps(body), 200, request_id)


def create_api_app(
    store: StoreReader,
    keys: KeyRegistry,
    registry: CollectorRegistry,
    *,
    limiter: RateLimiter | None = None,
    today: Callable[[], date] = china_today,
) -> web.Application:
    """The API over ``store``, accepting ``keys``, with metrics on ``registry``.

    :param store: the serving store; the caller owns it (and closes it).
    :param keys: the agencies' keys.
    :param registry: where the API's metrics go (and what /metrics serves).
    :param limiter: per-key rate limits; a fresh one when None.
    :param today: today's date in China, for the birth dates in ID numbers.
    """
    api = _Api(store, keys, ApiMetrics.create(registry), limiter or RateLimiter(), today)
    openapi = orjson.dumps(openapi_document())

    async def openapi_json(_: web.Request) -> web.Response:
        return web.Response(body=openapi, headers={"Content-Type": _JSON})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), content_type=CONTENT_TYPE_LATEST.split(";")[0]
        )

    async def live(_: web.Request) -> web.Response:
        return web.json_response({"status": "live"})

    async def ready(_: web.Request) -> web.Response:
        try:
            state = await store.readiness()
        except StoreUnavailableError:
            return web.json_response({"status": "not ready", "redis": "down"}, status=503)
        is_ready = bool(state["store_ready"])
        return web.json_response(
            {"status": "ready" if is_ready else "not ready", **state},
            status=200 if is_ready else 503,
        )

    app = web.Application()
    router = app.router
    # No HEAD on lookups: it would be answered (and audited) without a body.
    router.add_get(VEHICLE_ROUTE, api.route(VEHICLE_ROUTE, api.vehicle), allow_head=False)
    router.add_get(CARRIER_ROUTE, api.route(CARRIER_ROUTE, api.carrier), allow_head=False)
    router.add_get(DRIVER_ROUTE, api.route(DRIVER_ROUTE, api.driver), allow_head=False)
    router.add_post(BATCH_ROUTE, api.route(BATCH_ROUTE, api.batch))
    router.add_get(AUDIT_ROUTE, api.route(AUDIT_ROUTE, api.audit), allow_head=False)
    router.add_get("/openapi.json", openapi_json)
    router.add_get("/metrics", metrics)
    router.add_get("/health/live", live)
    router.add_get("/health/ready", ready)
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
    # A down Redis must turn into a 503 quickly, not hold officers' requests.
    store = StoreReader(
        connect_redis(settings.redis_url, timeout=0.5, bounded_reads=False), timeout=0.5
    )
    app = create_api_app(store, keys, CollectorRegistry())

    async def close_store(_: web.Application) -> None:
        await store.close()

    app.on_cleanup.append(close_store)
    # What exists now (modules, routes, keys) lives as long as the process: keep it out of the
    # collector's full passes, which would otherwise pause every request in flight.
    gc.freeze()
    log.info(
        "query API on %s:%d with %d keys", settings.bind_host, settings.api_port, len(keys.keys)
    )
    web.run_app(
        app,
        host=settings.bind_host,
        port=settings.api_port,
        access_log=None,  # paths hold ID numbers: never log them
        # aiohttp's default of 128 overflowed in a benchmark when the process stalled for a
        # moment; a dropped SYN costs the client a 1 s retransmission.
        backlog=1024,
        loop=loop,
        print=None,
    )

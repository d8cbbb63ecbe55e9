"""The query API end to end: snapshots streamed through the real broker into the serving store by
the sink, answered by the API over the real Redis (issue 5).

Covers the answer (a vehicle with its carrier and driver), a removal, authentication and scopes,
the rate limit, malformed identifiers, the audit log, and Redis down (503, never "not listed").
The API is served as ``run_api`` serves it (``api/http.py``'s server); one test checks that the
aiohttp application of ``create_api_app`` answers the same.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from api.app import create_api_app, create_api_handler
from api.auth import ApiKey, KeyRegistry, Scope, hash_key
from api.http import Handler, HttpServer
from api.store import StoreReader
from ops.services import LocalRedis
from processors.facts import ReviewFact
from processors.lists import ListAction
from processors.model import PlateColour
from processors.policy import PolicyBook
from processors.snapshot import snapshot as take_snapshot
from sinks.serving_store import ServingStoreLayout, connect_redis, stored_subject
from tests.conftest import KafkaService, RedisService
from tests.integration.serving_helpers import (
    RunningSink,
    Topics,
    TransactionalProducer,
    eventually,
    record,
    resident_id,
    snapshot,
    start_sink,
    store_ready,
    trigger,
    uscc,
)
from tests.unit.credit_support import DEFAULT_BOOK, Pipeline, instant, weighing

pytestmark = pytest.mark.integration

PLATE = "鲁P30566"
CARRIER = uscc(42)
DRIVER = resident_id(4242)
STRANGER_PLATE = "鲁P99901"

KEYS = {
    "police": ("police-key-0123456789abcdef", frozenset({Scope.BASIC}), 1000.0),
    "bureau": ("bureau-key-0123456789abcdef", frozenset({Scope.EVIDENCE, Scope.AUDIT}), 1000.0),
    "auditor": ("auditor-key-0123456789abcdef", frozenset({Scope.AUDIT}), 1000.0),
    "slow": ("slow-key-0123456789abcdef", frozenset({Scope.BASIC}), 1.0),
}


def _registry() -> KeyRegistry:
    return KeyRegistry(
        tuple(
            ApiKey(name, f"{name} agency 测试", hash_key(raw), scopes, rate)
            for name, (raw, scopes, rate) in KEYS.items()
        )
    )


def _auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name][0]}"}


@asynccontextmanager
async def _served(handler: Handler) -> AsyncIterator[aiohttp.ClientSession]:
    """A client of ``handler`` served by the API's HTTP server on a free loopback port."""
    server = HttpServer(handler)
    await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{server.port}") as client:
            yield client
    finally:
        await server.close()


@dataclass
class Env:
    client: aiohttp.ClientSession
    store: StoreReader
    redis: Redis
    layout: ServingStoreLayout
    topics: Topics
    bootstrap: str
    sink: RunningSink
    book: PolicyBook


def _real_case(as_of: datetime) -> Pipeline:
    """Five confirmed overloads of one truck in a year, with its driver and carrier named: the
    vehicle and the driver are blacklisted by the real rules."""
    today = as_of.date()
    pipeline = Pipeline(now=as_of - timedelta(days=40))  # proposed 40 days ago
    for k in range(5):
        day = (today - timedelta(days=30 * (5 - k))).isoformat()
        pipeline.feed(
            weighing(f"ev-{k}", instant(day), plate=PLATE, driver_id=DRIVER, carrier_uscc=CARRIER)
        )
    # The clock passes the 10 working days' notice: the entries are published (RULES.md §2).
    for subject in list(pipeline.files):
        pipeline.deliver(subject, ReviewFact("tick", as_of - timedelta(minutes=1)))
    return pipeline


@pytest.fixture
async def env(
    kafka: KafkaService, redis_service: RedisService, unique_name: str
) -> AsyncIterator[Env]:
    bootstrap = kafka.bootstrap_servers
    topics = await Topics.create(bootstrap, unique_name)
    layout = ServingStoreLayout(prefix=f"api-{uuid.uuid4().hex[:10]}:")
    redis = connect_redis(redis_service.url)
    sink = await start_sink(redis, bootstrap, topics, layout)
    store = StoreReader(connect_redis(redis_service.url, timeout=0.5), layout)
    try:
        async with _served(create_api_handler(store, _registry(), CollectorRegistry())) as client:
            yield Env(client, store, redis, layout, topics, bootstrap, sink, DEFAULT_BOOK)
    finally:
        await store.close()
        await sink.close()
        await redis.aclose()


async def _stream_real_case(env: Env) -> tuple[Pipeline, datetime]:
    """Produce the snapshots and triggers of the real case as the worker would; wait for them."""
    as_of = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    pipeline = _real_case(as_of)
    snapshots = [take_snapshot(f, env.book, as_of) for f in pipeline.files.values()]
    async with TransactionalProducer(env.bootstrap) as producer:
        await producer.send_all(env.topics.snapshots, [record(s) for s in snapshots])
        await producer.send_all(env.topics.triggers, [record(t) for t in pipeline.triggers])

    async def loaded() -> bool:
        if not await store_ready(env.redis, env.layout):
            return False
        # Snapshots and triggers are separate topics: wait for both, or the trigger history
        # may still be on its way when the test asks.
        keys = [env.layout.subject(str(s.subject)) for s in snapshots]
        keys += [env.layout.triggers(str(s)) for s in {t.subject for t in pipeline.triggers}]
        return bool(await env.redis.exists(*keys) == len(keys))

    await eventually(loaded)
    return pipeline, as_of


async def test_a_listed_truck_is_answered_with_its_carrier_and_driver(env: Env) -> None:
    """Stream → store → API: the truck and its driver are blacklisted; basic scope shows status,
    grade and rule ids with the driver masked, evidence scope adds reasons and evidence."""
    _, as_of = await _stream_real_case(env)
    response = await env.client.get(f"/v1/vehicles/{quote(PLATE)}", headers=_auth("police"))
    assert response.status == 200
    body = await response.json()
    print("GET /v1/vehicles/" + PLATE + " (basic):\n" + json.dumps(body, ensure_ascii=False))
    assert body["scope"] == "basic"
    assert body["as_of"] == as_of.isoformat()
    assert body["query"] == {"kind": "vehicle", "plate": PLATE, "colour": "YELLOW"}
    subject = body["subject"]
    assert subject["known"] is True and subject["listed"] is True
    assert subject["lists"]["blacklist"] == {
        "listed": True,
        "status": "published",
        "rules": [{"rule_id": "overload.vehicle", "status": "published", "disputed": False}],
    }
    assert subject["lists"]["watchlist"]["listed"] is False
    assert subject["grade"] and subject["policy_version"] and subject["as_of"]
    assert body["carrier"]["subject"] == f"CARRIER:{CARRIER}"
    assert body["carrier"]["known"] is True
    [driver] = body["drivers"]
    assert driver["listed"] is True and driver["lists"]["blacklist"]["rules"][0]["rule_id"] == (
        "overload.driver"
    )
    assert DRIVER not in await response.text()  # masked outside the evidence scope
    assert driver["subject"] == f"DRIVER:{DRIVER[:3]}{'*' * 13}{DRIVER[-2:]}"
    assert "triggers" not in body

    response = await env.client.get(f"/v1/vehicles/{quote(PLATE)}", headers=_auth("bureau"))
    assert response.status == 200
    body = await response.json()
    print("GET /v1/vehicles/" + PLATE + " (evidence):\n" + json.dumps(body, ensure_ascii=False))
    rule = body["subject"]["lists"]["blacklist"]["rules"][0]
    assert rule["evidence_event_ids"] == [f"ev-{k}" for k in range(5)]
    assert "overload violations" in rule["reason"]
    assert body["drivers"][0]["subject"] == f"DRIVER:{DRIVER}"
    history = body["triggers"][f"VEHICLE:{PLATE}|YELLOW"]
    assert history[0]["action"] == "ADD" and history[0]["rule_id"] == "overload.vehicle"

    # The same key can ask for less.
    response = await env.client.get(
        f"/v1/vehicles/{quote(PLATE)}?detail=basic", headers=_auth("bureau")
    )
    assert (await response.json())["scope"] == "basic"


async def test_a_removal_takes_the_subject_off_the_list(env: Env) -> None:
    """The worker's REMOVE trigger and its next snapshot without the entry: the API answers not
    listed, and the evidence scope shows the removal in the history."""
    pipeline, as_of = await _stream_real_case(env)
    vehicle_file = next(f for s, f in pipeline.files.items() if s.kind.value == "VEHICLE")
    [entry] = vehicle_file.entries.values()
    later = as_of + timedelta(minutes=1)
    removal = trigger(ListAction.REMOVE, entry, vehicle_file.subject, later)
    view = take_snapshot(vehicle_file, env.book, as_of)
    after = snapshot(
        vehicle_file.subject, later, carrier_of=view.carrier, drivers=view.recent_drivers
    )
    async with TransactionalProducer(env.bootstrap) as producer:
        await producer.send_all(env.topics.triggers, [record(removal)])
        await producer.send_all(env.topics.snapshots, [record(after)])

    async def off_the_list() -> bool:
        response = await env.client.get(f"/v1/vehicles/{quote(PLATE)}", headers=_auth("bureau"))
        return (await response.json())["subject"]["listed"] is False

    await eventually(off_the_list)
    response = await env.client.get(f"/v1/vehicles/{quote(PLATE)}", headers=_auth("bureau"))
    body = await response.json()
    assert body["subject"]["lists"]["blacklist"] == {
        "listed": False,
        "status": "not_listed",
        "rules": [],
    }
    history = body["triggers"][f"VEHICLE:{PLATE}|YELLOW"]
    assert [h["action"] for h in history] == ["REMOVE", "ADD"]
    assert body["drivers"][0]["listed"] is True  # the driver's own entry still stands


async def test_unknown_subjects_are_a_clean_not_listed_and_batches_answer_in_order(
    env: Env,
) -> None:
    """200 with known: false for a subject without a file; a batch mixes kinds in one call."""
    await _stream_real_case(env)
    response = await env.client.get(
        f"/v1/vehicles/{quote(STRANGER_PLATE)}", headers=_auth("police")
    )
    assert response.status == 200
    body = await response.json()
    assert body["subject"]["known"] is False and body["subject"]["listed"] is False
    assert body["carrier"] is None and body["drivers"] == []

    queries = [
        {"kind": "vehicle", "plate": PLATE, "colour": "YELLOW"},
        {"kind": "carrier", "uscc": CARRIER},
        {"kind": "driver", "id_number": DRIVER},
        {"kind": "vehicle", "plate": STRANGER_PLATE},
    ]
    response = await env.client.post(
        "/v1/lookup", json={"queries": queries}, headers=_auth("police")
    )
    assert response.status == 200
    answers = (await response.json())["answers"]
    assert [a["subject"]["listed"] for a in answers] == [True, False, True, False]
    assert [a["subject"]["known"] for a in answers] == [True, True, True, False]
    assert answers[0]["drivers"][0]["listed"] is True

    many = [{"kind": "vehicle", "plate": f"鲁P{n:05d}"} for n in range(1000)]
    response = await env.client.post("/v1/lookup", json={"queries": many}, headers=_auth("police"))
    assert response.status == 200
    assert len((await response.json())["answers"]) == 1000


async def test_keys_and_scopes_are_enforced(env: Env) -> None:
    """No key or an unknown key: 401; a key without the scope: 403."""
    path = f"/v1/vehicles/{quote(PLATE)}"
    response = await env.client.get(path)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert (await response.json())["error"]["code"] == "UNAUTHENTICATED"
    assert (await env.client.get(path, headers={"X-API-Key": "not-a-key"})).status == 401
    assert (await env.client.get(path, headers={"Authorization": "Basic abc"})).status == 401
    assert (await env.client.get(path, headers=_auth("auditor"))).status == 403
    response = await env.client.get(path + "?detail=evidence", headers=_auth("police"))
    assert response.status == 403
    assert (await env.client.get("/v1/audit", headers=_auth("police"))).status == 403
    response = await env.client.get(path, headers={"X-API-Key": KEYS["police"][0]})
    assert response.status in (200, 503)  # authenticated; the store may still be loading


async def test_the_rate_limit_answers_429_with_retry_after(env: Env) -> None:
    """A key limited to 1 request a second gets 429 on its second request in the same second."""
    await _stream_real_case(env)
    path = f"/v1/carriers/{CARRIER}"
    assert (await env.client.get(path, headers=_auth("slow"))).status == 200
    response = await env.client.get(path, headers=_auth("slow"))
    assert response.status == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert (await response.json())["error"]["code"] == "RATE_LIMITED"
    # Other keys are not affected.
    assert (await env.client.get(path, headers=_auth("police"))).status == 200


@pytest.mark.parametrize(
    ("path", "field", "code"),
    [
        ("/v1/vehicles/ABC123", "plate", "PLATE_INVALID"),
        (f"/v1/vehicles/{quote(PLATE)}?colour=PURPLE", "colour", "PLATE_COLOUR_INVALID"),
        # An ordinary plate cannot be green: that colour is for new-energy plates.
        (f"/v1/vehicles/{quote(PLATE)}?colour=GREEN", "colour", "PLATE_COLOUR_MISMATCH"),
        ("/v1/carriers/91371524MA3C000010", "uscc", "USCC_INVALID"),
        ("/v1/drivers/371524198001011230", "id_number", "RESIDENT_ID_INVALID"),
    ],
)
async def test_malformed_identifiers_are_400_naming_field_and_reason(
    env: Env, path: str, field: str, code: str
) -> None:
    """400 with the field and the reason code of processors.identifiers; nothing echoed in clear."""
    response = await env.client.get(path, headers=_auth("police"))
    assert response.status == 400
    error = (await response.json())["error"]
    assert (error["field"], error["code"]) == (field, code)
    assert "371524198001011230" not in await response.text()


async def test_a_batch_with_malformed_queries_lists_every_error(env: Env) -> None:
    """Every invalid query is named; nothing is looked up."""
    queries = [
        {"kind": "vehicle", "plate": PLATE},
        {"kind": "carrier", "uscc": "123"},
        {"kind": "driver"},
        {"kind": "ship", "name": "x"},
    ]
    response = await env.client.post(
        "/v1/lookup", json={"queries": queries}, headers=_auth("police")
    )
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "QUERIES_INVALID"
    assert [(e["field"], e["code"]) for e in error["errors"]] == [
        ("queries[1].uscc", "USCC_INVALID"),
        ("queries[2].id_number", "FIELD_REQUIRED"),
        ("queries[3].kind", "QUERY_KIND_INVALID"),
    ]
    too_many = {"queries": [{"kind": "vehicle", "plate": PLATE}] * 1001}
    response = await env.client.post("/v1/lookup", json=too_many, headers=_auth("police"))
    assert (await response.json())["error"]["code"] == "TOO_MANY_QUERIES"
    response = await env.client.post("/v1/lookup", data=b"{not json", headers=_auth("police"))
    assert (await response.json())["error"]["code"] == "BODY_INVALID"
    huge = b'{"queries": [' + b'{"kind": "vehicle", "plate": "' + b"x" * 2_000_000 + b'"}]}'
    response = await env.client.post("/v1/lookup", data=io.BytesIO(huge), headers=_auth("police"))
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "REQUEST_ENTITY_TOO_LARGE"
    # No HEAD on lookups: it would be audited without an answer.
    response = await env.client.head(f"/v1/vehicles/{quote(PLATE)}", headers=_auth("police"))
    assert response.status == 405


async def test_every_lookup_is_audited_with_driver_ids_masked(env: Env) -> None:
    """Who, what, when and the answer in short, readable at /v1/audit with the audit scope."""
    await _stream_real_case(env)
    await env.client.get(f"/v1/vehicles/{quote(PLATE)}", headers=_auth("police"))
    await env.client.get(f"/v1/drivers/{DRIVER}", headers=_auth("police"))
    await env.client.post(
        "/v1/lookup",
        json={"queries": [{"kind": "carrier", "uscc": CARRIER}]},
        headers=_auth("police"),
    )
    response = await env.client.get("/v1/audit?count=10", headers=_auth("auditor"))
    assert response.status == 200
    page = await response.json()
    assert DRIVER not in json.dumps(page, ensure_ascii=False)
    carrier_entry, driver_entry, vehicle_entry = page["entries"][:3]
    print("audit entries:\n" + json.dumps(page["entries"][:3], ensure_ascii=False))
    assert vehicle_entry["agency"] == "police agency 测试" and vehicle_entry["key"] == "police"
    assert vehicle_entry["route"] == "/v1/vehicles/{plate}"
    assert vehicle_entry["kind"] == "vehicle"
    assert vehicle_entry["identifier"] == f"{PLATE}|YELLOW"
    assert vehicle_entry["known"] == "1" and vehicle_entry["lists"] == "BLACKLIST"
    assert vehicle_entry["related_lists"] == "DRIVER=BLACKLIST"
    assert datetime.fromisoformat(vehicle_entry["at"]).tzinfo is not None
    assert driver_entry["identifier"] == f"{DRIVER[:3]}{'*' * 13}{DRIVER[-2:]}"
    assert carrier_entry["identifier"] == CARRIER and carrier_entry["route"] == "/v1/lookup"
    response = await env.client.get(
        f"/v1/audit?count=1&before={page['entries'][0]['id']}", headers=_auth("bureau")
    )
    assert (await response.json())["entries"][0]["id"] == driver_entry["id"]


async def test_openapi_metrics_and_health_are_served(env: Env) -> None:
    """/openapi.json documents every route; /metrics counts requests by route and status."""
    await _stream_real_case(env)
    await env.client.get(f"/v1/carriers/{CARRIER}", headers=_auth("police"))
    document = await (await env.client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    assert {"/v1/vehicles/{plate}", "/v1/lookup", "/v1/audit"} <= set(document["paths"])
    metrics = await (await env.client.get("/metrics")).text()
    assert 'credit_api_requests_total{route="/v1/carriers/{uscc}",status="200"}' in metrics
    assert "credit_api_request_seconds_bucket" in metrics
    assert (await env.client.get("/health/live")).status == 200
    assert (await env.client.get("/health/ready")).status == 200


async def test_redis_down_is_503_with_retry_after_never_not_listed(tmp_path: Path) -> None:
    """Kill Redis: lookups answer 503 with Retry-After; back but empty, still 503 (the store is
    not loaded), never a "not listed" 200."""
    server = LocalRedis(tmp_path / "redis").start()
    layout = ServingStoreLayout()
    redis = connect_redis(server.url)
    as_of = datetime(2026, 6, 1, tzinfo=UTC)
    view = take_snapshot(
        _real_case(as_of).files[next(iter(_real_case(as_of).files))], DEFAULT_BOOK, as_of
    )
    stored = stored_subject(json.loads(record(view)[1]))
    await redis.hset(
        layout.subject(stored.subject),
        mapping={
            "version": stored.version,
            "full": stored.full,
            "basic": stored.basic,
            "lists": stored.lists,
        },
    )
    await redis.hset(layout.meta, mapping={"ready": "1", "as_of": stored.as_of})
    store = StoreReader(connect_redis(server.url, timeout=0.5), layout)
    handler = create_api_handler(
        store, _registry(), CollectorRegistry(), today=lambda: date(2026, 6, 1)
    )
    path = f"/v1/vehicles/{quote(PLATE)}?colour={PlateColour.YELLOW.value}"
    try:
        async with _served(handler) as client:
            response = await client.get(path, headers=_auth("police"))
            assert response.status == 200 and (await response.json())["subject"]["listed"] is True

            server.kill()
            response = await client.get(path, headers=_auth("police"))
            assert response.status == 503
            assert response.headers["Retry-After"] == "1"
            assert (await response.json())["error"]["code"] == "STORE_UNAVAILABLE"
            response = await client.post(
                "/v1/lookup",
                json={"queries": [{"kind": "vehicle", "plate": PLATE}]},
                headers=_auth("police"),
            )
            assert response.status == 503
            assert (await client.get("/health/ready")).status == 503
            assert (await client.get("/health/live")).status == 200

            server = LocalRedis(tmp_path / "redis", port=server.port).start()
            response = await client.get(path, headers=_auth("police"))
            assert response.status == 503  # Redis is back, empty: the store must be loaded first
            assert (await response.json())["error"]["code"] == "STORE_NOT_READY"
            assert int(response.headers["Retry-After"]) >= 1
    finally:
        await store.close()
        await redis.aclose()
        server.stop()


async def test_the_aiohttp_application_answers_as_the_server_does(env: Env) -> None:
    """create_api_app (for tests and embedding) wraps the same handler: same statuses, headers
    and bodies, the router's 404 and 405 included."""
    await _stream_real_case(env)
    app = create_api_app(env.store, _registry(), CollectorRegistry())
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    requests: list[tuple[str, str, dict[str, str]]] = [
        ("GET", f"/v1/vehicles/{quote(PLATE)}", _auth("police")),
        ("GET", f"/v1/drivers/{DRIVER}?detail=basic", _auth("bureau")),
        ("GET", "/v1/carriers/91371524MA3C000010", _auth("police")),
        ("GET", f"/v1/carriers/{CARRIER}", {}),
        ("HEAD", f"/v1/vehicles/{quote(PLATE)}", _auth("police")),
        ("GET", "/v1/lookup", _auth("police")),
        ("GET", "/v1/nothing-here", _auth("police")),
    ]
    try:
        for method, path, headers in requests:
            headers = {**headers, "X-Request-ID": "same-id"}
            ours = await env.client.request(method, path, headers=headers)
            theirs = await client.request(method, path, headers=headers)
            assert ours.status == theirs.status, path
            for name in ("Content-Type", "X-Request-ID", "Allow", "WWW-Authenticate"):
                assert ours.headers.get(name) == theirs.headers.get(name), (path, name)
            body = await ours.read()
            if method == "HEAD" or ours.status != 200:
                assert body == await theirs.read(), path
            else:  # the same answer, bar the freshness of the store
                assert json.loads(body)["query"] == (await theirs.json())["query"]
    finally:
        await client.close()

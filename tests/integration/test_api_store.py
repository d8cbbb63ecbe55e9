"""The API's store reader (api/store.py) on a real Redis: its own pipelined connection and the
redis-py path answer alike, every query is audited, concurrent lookups share script calls, and
a Redis that is down, slow, restarted, password-protected or has lost the script is handled.

The HTTP side (routes, 503 with Retry-After, scopes) is tests/integration/test_api.py."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import Connection

from api.queries import SubjectQuery, carrier_query, driver_query, vehicle_query
from api.store import (
    AuditContext,
    StoreNotReadyError,
    StoreReader,
    StoreUnavailableError,
    _Address,
)
from ops.services import LocalRedis, free_port
from processors.identifiers import resident_id_check_digit, uscc_check_character
from sinks.serving_store import ServingStoreLayout, connect_redis
from tests.conftest import RedisService

TODAY = date(2026, 6, 1)
PLATE = "鲁P12345"
CARRIER = "91371524MA3C00001" + uscc_check_character("91371524MA3C00001")
DRIVER = "37152419800101001" + resident_id_check_digit("37152419800101001")
UNKNOWN_DRIVER = "37152419800101002" + resident_id_check_digit("37152419800101002")
VEHICLE_SUBJECT = f"VEHICLE:{PLATE}|YELLOW"


class _OtherConnection(Connection):
    """A connection class the reader cannot copy: its calls go through redis-py."""


def _client(url: str, *, own_connection: bool) -> Redis:
    if own_connection:
        return connect_redis(url, timeout=0.5, bounded_reads=False)
    host, port = url.removeprefix("redis://").split("/")[0].split(":")
    pool = ConnectionPool(connection_class=_OtherConnection, host=host, port=int(port))
    return Redis.from_pool(pool)  # closes the pool when closed


async def _fill(redis: Redis, layout: ServingStoreLayout, *, ready: bool = True) -> None:
    """A listed truck with its carrier and two drivers (one without a snapshot), as the sink
    lays them out; the driver has a trigger history."""
    for subject, lists, related in (
        (
            VEHICLE_SUBJECT,
            "BLACKLIST",
            f"CARRIER:{CARRIER}\nDRIVER:{DRIVER}\nDRIVER:{UNKNOWN_DRIVER}",
        ),
        (f"CARRIER:{CARRIER}", "", None),
        (f"DRIVER:{DRIVER}", "WATCHLIST", None),
    ):
        fields: dict[Any, Any] = {
            "basic": f'{{"subject":"{subject}","scope":"basic"}}',
            "full": f'{{"subject":"{subject}","scope":"full"}}',
            "lists": lists,
        }
        if related is not None:
            fields["related"] = related
        await redis.hset(layout.subject(subject), mapping=fields)
    await redis.zadd(layout.triggers(f"DRIVER:{DRIVER}"), {'{"action":"ADD"}': 1, '{"n":2}': 2})
    meta: dict[Any, Any] = {
        "as_of": "2026-06-01T00:00:00+00:00",
        "written_at": "w",
        "caught_up_at": "c",
    }
    if ready:
        meta["ready"] = "1"
    await redis.hset(layout.meta, mapping=meta)


async def _entries(redis: Redis, layout: ServingStoreLayout) -> list[dict[bytes, bytes]]:
    """The audit stream's entries, oldest first."""
    page: Any = await redis.xrange(layout.audit)
    return [fields for _, fields in page]


def _audit(request_id: str, route: str = "/v1/vehicles/{plate}") -> AuditContext:
    return AuditContext(
        "2026-06-01T08:00:00.123+00:00", "东阿县公安局", "police", route, request_id
    )


def _queries() -> list[SubjectQuery]:
    return [
        vehicle_query(PLATE, None),
        carrier_query(CARRIER),
        driver_query(UNKNOWN_DRIVER, TODAY),
    ]


@pytest.fixture
def layout() -> ServingStoreLayout:
    return ServingStoreLayout(prefix=f"store-{uuid.uuid4().hex[:10]}:")


@pytest.fixture
async def redis(redis_service: RedisService) -> AsyncIterator[Redis]:
    client = connect_redis(redis_service.url)
    yield client
    await client.aclose()


@pytest.mark.parametrize("own_connection", [True, False], ids=["own-connection", "redis-py"])
async def test_lookups_answer_and_audit_each_query(
    redis_service: RedisService, redis: Redis, layout: ServingStoreLayout, own_connection: bool
) -> None:
    """Answers for the scope, a vehicle's carrier and drivers in order, trigger history in the
    evidence scope, and one audit entry per query with the answer in short."""
    await _fill(redis, layout)
    store = StoreReader(_client(redis_service.url, own_connection=own_connection), layout)
    assert (_Address.of(store._redis) is not None) is own_connection
    try:
        basic = await store.lookup(_queries(), evidence=False, audit=_audit("req-basic"))
        full = await store.lookup(
            [driver_query(DRIVER, TODAY)], evidence=True, audit=_audit("req-full", "/v1/lookup")
        )
    finally:
        await store.close()
    assert (basic.as_of, basic.written_at, basic.caught_up_at) == (
        "2026-06-01T00:00:00+00:00",
        "w",
        "c",
    )
    vehicle, carrier, unknown = basic.answers
    assert vehicle.answer == f'{{"subject":"{VEHICLE_SUBJECT}","scope":"basic"}}'.encode()
    assert [r.subject for r in vehicle.related] == [
        f"CARRIER:{CARRIER}",
        f"DRIVER:{DRIVER}",
        f"DRIVER:{UNKNOWN_DRIVER}",
    ]
    assert [r.answer is not None for r in vehicle.related] == [True, True, False]
    assert vehicle.history == () and all(r.history == () for r in vehicle.related)
    assert carrier.answer is not None and carrier.related == ()
    assert unknown.answer is None and unknown.query.subject == f"DRIVER:{UNKNOWN_DRIVER}"
    [driver] = full.answers
    assert driver.answer == f'{{"subject":"DRIVER:{DRIVER}","scope":"full"}}'.encode()
    assert driver.history == (b'{"n":2}', b'{"action":"ADD"}')  # newest first

    entries = await _entries(redis, layout)
    assert [e[b"request"] for e in entries] == [b"req-basic"] * 3 + [b"req-full"]
    first = {k.decode(): v.decode() for k, v in entries[0].items()}
    assert first == {
        "at": "2026-06-01T08:00:00.123+00:00",
        "agency": "东阿县公安局",
        "key": "police",
        "route": "/v1/vehicles/{plate}",
        "request": "req-basic",
        "kind": "vehicle",
        "identifier": f"{PLATE}|YELLOW",
        "known": "1",
        "lists": "BLACKLIST",
        "related_lists": "DRIVER=WATCHLIST",
    }
    assert entries[2][b"known"] == b"0"
    assert (
        entries[2][b"identifier"] == f"{UNKNOWN_DRIVER[:3]}{'*' * 13}{UNKNOWN_DRIVER[-2:]}".encode()
    )
    assert entries[3][b"route"] == b"/v1/lookup"


async def test_concurrent_lookups_share_script_calls_and_each_is_audited(
    redis_service: RedisService, redis: Redis, layout: ServingStoreLayout
) -> None:
    """Hundreds of lookups at once, basic and evidence: each gets its own answers, fewer script
    calls than lookups are made, and the audit log has every query once."""
    await _fill(redis, layout)
    store = StoreReader(connect_redis(redis_service.url, timeout=0.5), layout, max_in_flight=2)
    try:
        results = await asyncio.gather(
            *(
                store.lookup(_queries()[: 1 + n % 3], evidence=n % 2 == 1, audit=_audit(f"req-{n}"))
                for n in range(300)
            )
        )
    finally:
        await store.close()
    for n, result in enumerate(results):
        assert [a.query for a in result.answers] == _queries()[: 1 + n % 3]
        scope = b"full" if n % 2 else b"basic"
        assert result.answers[0].answer is not None and scope in result.answers[0].answer
    assert store.calls < 300 / 4
    entries = await _entries(redis, layout)
    expected = sorted(f"req-{n}" for n in range(300) for _ in range(1 + n % 3))
    assert sorted(e[b"request"].decode() for e in entries) == expected


async def test_a_store_still_loading_is_not_ready(
    redis_service: RedisService, redis: Redis, layout: ServingStoreLayout
) -> None:
    """No ready mark: StoreNotReadyError, and nothing is audited (no answer left Redis)."""
    await _fill(redis, layout, ready=False)
    store = StoreReader(connect_redis(redis_service.url, timeout=0.5), layout)
    try:
        with pytest.raises(StoreNotReadyError):
            await store.lookup(_queries(), evidence=False, audit=_audit("req"))
    finally:
        await store.close()
    assert await redis.xlen(layout.audit) == 0


async def test_a_lost_script_a_restart_and_a_password_are_handled(tmp_path: Path) -> None:
    """SCRIPT FLUSH: the next lookup loads the script again. Redis killed: unavailable, at once.
    Redis back on its port with a password and the URL's database: answered again."""
    server = LocalRedis(tmp_path / "redis").start()
    layout = ServingStoreLayout()
    admin = connect_redis(server.url)
    store = StoreReader(connect_redis(server.url, timeout=0.5), layout)
    try:
        await _fill(admin, layout)
        assert (await store.lookup(_queries(), evidence=False, audit=_audit("1"))).answers
        await admin.script_flush()
        assert (await store.lookup(_queries(), evidence=False, audit=_audit("2"))).answers
        assert await admin.xlen(layout.audit) == 6

        await admin.aclose()
        server.kill()
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError):
            await store.lookup(_queries(), evidence=False, audit=_audit("3"))
        assert time.monotonic() - started < 0.5  # refused, not timed out
        await store.close()

        server = LocalRedis(tmp_path / "redis", port=server.port).start()
        admin = connect_redis(server.url)
        await admin.config_set("requirepass", "s3cret pass")
        await admin.aclose()
        url = f"redis://:s3cret%20pass@127.0.0.1:{server.port}/3"
        admin = connect_redis(url)
        await _fill(admin, layout)
        store = StoreReader(connect_redis(url, timeout=0.5), layout)
        result = await store.lookup(_queries(), evidence=True, audit=_audit("4"))
        assert result.answers[0].answer is not None
        assert await admin.xlen(layout.audit) == 3  # in database 3

        wrong = StoreReader(
            connect_redis(f"redis://:wrong@127.0.0.1:{server.port}/3", timeout=0.5), layout
        )
        with pytest.raises(StoreUnavailableError):
            await wrong.lookup(_queries(), evidence=False, audit=_audit("5"))
        await wrong.close()
    finally:
        await store.close()
        await admin.aclose()
        server.stop()


async def test_a_redis_that_does_not_answer_is_unavailable_within_the_timeout() -> None:
    """A server that accepts connections and never replies (a hung Redis): the lookup fails
    after the timeout, and so does the next one, each on a fresh connection."""
    accepted: list[asyncio.StreamWriter] = []

    async def hang(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    port = free_port()
    server = await asyncio.start_server(hang, "127.0.0.1", port)
    store = StoreReader(
        connect_redis(f"redis://127.0.0.1:{port}/0", timeout=0.2), ServingStoreLayout(), timeout=0.2
    )
    try:
        for attempt in range(2):
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError, match="TimeoutError"):
                await store.lookup(_queries(), evidence=False, audit=_audit(str(attempt)))
            assert 0.15 < time.monotonic() - started < 1.0
        assert len(accepted) == 2
    finally:
        await store.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()

"""The credit website on a real SQLite file: publication API, public pages, health and metrics.

Each test starts the real application (aiohttp test server on loopback) on a fresh database file
in a temporary folder and talks HTTP to it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from processors.identifiers import resident_id_check_digit
from website.app import create_website_app
from website.repository import SqliteRepository

TOKEN = "test-publisher-token"
UNMASKED_ID = "37152419900101123" + resident_id_check_digit("37152419900101123")


@dataclass
class Clock:
    """A clock the tests move: 2025-10-01 10:00 in China."""

    now: datetime = datetime(2025, 10, 1, 2, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Website:
    client: TestClient[Any, Any]
    db_path: Path
    clock: Clock
    keys: int = field(default=0)

    def next_key(self) -> str:
        self.keys += 1
        return f"key-{self.keys}"

    async def put(
        self,
        publication_id: str,
        body: dict[str, Any] | bytes,
        *,
        key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> ClientResponse:
        sent = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": key or self.next_key()}
        sent.update(headers or {})
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        return await self.client.put(
            f"/api/v1/publications/{publication_id}",
            data=data,
            headers={**sent, "Content-Type": "application/json"},
        )

    async def delete(
        self, publication_id: str, reason: str, revision: int, *, key: str | None = None
    ) -> ClientResponse:
        return await self.client.delete(
            f"/api/v1/publications/{publication_id}",
            data=orjson.dumps({"reason": reason, "revision": revision}),
            headers={
                "Authorization": f"Bearer {TOKEN}",
                "Idempotency-Key": key or self.next_key(),
                "Content-Type": "application/json",
            },
        )

    async def record(self, publication_id: str) -> dict[str, Any]:
        response = await self.client.get(
            f"/api/v1/publications/{publication_id}",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert response.status == 200, await response.text()
        result: dict[str, Any] = await response.json()
        return result

    async def page(self, path: str, status: int = 200) -> str:
        response = await self.client.get(path)
        text = await response.text()
        assert response.status == status, text
        return text

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db_path) as connection:
            return connection.execute(sql).fetchall()


def penalty(number: int = 1, **changes: Any) -> dict[str, Any]:
    """A masked penalty publication as the publisher sends it."""
    body: dict[str, Any] = {
        "kind": "penalty",
        "fields": {
            "CF_WSH": f"东交罚〔2025〕{number:04d}号",
            "CF_XDR_MC": "张*",
            "CF_XDR_ZJHM": "371***********123X",
            "CF_WFXW": "违法超限运输",
            "CF_SY": "货车超过规定的限载标准运输",
            "CF_YJ": "《公路安全保护条例》第六十四条",
            "CF_CFLB": "罚款",
            "CF_NR": "罚款2000元",
            "CF_NR_FK": "0.2",
            "CF_JDRQ": "2025-09-26",
            "CF_CFJG": "东阿县交通运输局",
            "CF_CFJGDM": "11371524004188012X",
        },
        "subject_name": "张*",
        "subject_code": "371***********123X",
        "plate": "鲁P12345",
        "decision_date": "2025-09-26",
        "publication_end": "2026-09-26",
        "revision": 1,
    }
    body.update(changes)
    return body


@pytest.fixture
async def website(tmp_path: Path) -> AsyncIterator[Website]:
    """The website on a fresh SQLite file, in a folder the repository has to create."""
    clock = Clock()
    db_path = tmp_path / "data" / "website.sqlite3"
    app = create_website_app(SqliteRepository(db_path), TOKEN, CollectorRegistry(), clock=clock)
    async with TestClient(TestServer(app)) as client:
        yield Website(client, db_path, clock)


# --- the publication API ------------------------------------------------------------------------


async def test_put_creates_and_a_replayed_key_returns_the_same_answer(website: Website) -> None:
    """First PUT 201; the same key again 200 with the same body, and no second record."""
    first = await website.put("pen-1", penalty(), key="k-1")
    assert first.status == 201
    created = await first.json()
    assert created["status"] == "created" and created["revision"] == 1

    again = await website.put("pen-1", penalty(), key="k-1")
    assert again.status == 200
    assert await again.json() == created
    assert again.headers["Idempotent-Replayed"] == "true"
    assert website.rows("SELECT COUNT(*) FROM publications") == [(1,)]
    assert website.rows("SELECT COUNT(*) FROM idempotency_keys") == [(1,)]


async def test_concurrent_replays_create_exactly_once(website: Website) -> None:
    """Ten simultaneous requests with one key: one 201, nine replays."""
    responses = await asyncio.gather(
        *(website.put("pen-1", penalty(), key="same") for _ in range(10))
    )
    assert sorted(r.status for r in responses) == [200] * 9 + [201]
    assert website.rows("SELECT COUNT(*) FROM publications") == [(1,)]


async def test_a_new_key_with_the_same_revision_replaces(website: Website) -> None:
    """The publisher resending revision 1 under a new key replaces the record (200)."""
    assert (await website.put("pen-1", penalty())).status == 201
    corrected = penalty(subject_name="张某")
    response = await website.put("pen-1", corrected)
    assert response.status == 200
    assert (await response.json())["status"] == "replaced"
    assert (await website.record("pen-1"))["subject_name"] == "张某"


async def test_a_lower_revision_is_acknowledged_as_stale_and_ignored(website: Website) -> None:
    """Revision 2 after 3: 200 stale (never 409), and the stored record stays at 3."""
    assert (await website.put("pen-1", penalty(revision=3, subject_name="三"))).status == 201
    response = await website.put("pen-1", penalty(revision=2, subject_name="二"))
    assert response.status == 200
    body = await response.json()
    assert (body["status"], body["revision"], body["received_revision"]) == ("stale", 3, 2)
    record = await website.record("pen-1")
    assert (record["revision"], record["subject_name"]) == (3, "三")


async def test_a_key_reused_for_another_request_is_refused(website: Website) -> None:
    """Same Idempotency-Key, different body: 422, and nothing changes."""
    assert (await website.put("pen-1", penalty(), key="k")).status == 201
    response = await website.put("pen-1", penalty(revision=2), key="k")
    assert response.status == 422
    assert (await response.json())["reason"] == "IDEMPOTENCY_KEY_REUSED"
    assert (await website.record("pen-1"))["revision"] == 1


async def test_delete_withdraws_and_the_public_pages_no_longer_show_it(website: Website) -> None:
    """Withdrawn: gone from lists, search and its page; kept in the database with the reason."""
    assert (await website.put("pen-1", penalty())).status == 201
    assert "东交罚〔2025〕0001号" in await website.page("/penalties")

    withdrawn = await website.delete("pen-1", "revoked", 2, key="del-1")
    assert withdrawn.status == 200
    body = await withdrawn.json()
    assert (body["status"], body["withdrawal_reason"]) == ("withdrawn", "revoked")
    replay = await website.delete("pen-1", "revoked", 2, key="del-1")
    assert (replay.status, await replay.json()) == (200, body)

    assert "东交罚〔2025〕0001号" not in await website.page("/penalties")
    assert "东交罚〔2025〕0001号" not in await website.page("/search?q=%E9%B2%81P12345")
    assert "页面不存在" in await website.page("/publications/pen-1", status=404)
    record = await website.record("pen-1")
    assert (record["status"], record["withdrawal_reason"]) == ("withdrawn", "revoked")
    assert website.rows("SELECT withdrawal_reason, withdrawn_at IS NOT NULL FROM publications") == [
        ("revoked", 1)
    ]


async def test_a_withdrawn_record_comes_back_only_with_a_higher_revision(website: Website) -> None:
    """After a withdrawal at 2, a PUT at 2 is stale and a PUT at 3 republishes."""
    await website.put("pen-1", penalty())
    await website.delete("pen-1", "objection_upheld", 2)
    stale = await website.put("pen-1", penalty(revision=2))
    assert (await stale.json())["status"] == "stale"
    again = await website.put("pen-1", penalty(revision=3))
    assert (again.status, (await again.json())["status"]) == (200, "republished")
    assert (await website.record("pen-1"))["status"] == "published"
    assert "东交罚〔2025〕0001号" in await website.page("/penalties")


async def test_stale_and_unknown_withdrawals(website: Website) -> None:
    """A DELETE below the stored revision is stale; of an unknown id, 404 not_found."""
    await website.put("pen-1", penalty(revision=5))
    stale = await website.delete("pen-1", "revoked", 4)
    assert (stale.status, (await stale.json())["status"]) == (200, "stale")
    assert (await website.record("pen-1"))["status"] == "published"
    unknown = await website.delete("nobody", "revoked", 1)
    assert (unknown.status, (await unknown.json())["status"]) == (404, "not_found")


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer", f"Bearer {TOKEN}x"],
)
async def test_the_api_needs_the_bearer_token(website: Website, authorization: str | None) -> None:
    """No token, a wrong one or another scheme: 401 for PUT, DELETE and GET."""
    headers = {"Idempotency-Key": "k"}
    if authorization is not None:
        headers["Authorization"] = authorization
    path = "/api/v1/publications/pen-1"
    put = await website.client.put(path, data=orjson.dumps(penalty()), headers=headers)
    assert put.status == 401
    assert put.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await put.json())["reason"] == "UNAUTHORISED"
    delete = await website.client.delete(path, data=b"{}", headers=headers)
    get = await website.client.get(path, headers=headers)
    assert (delete.status, get.status) == (401, 401)
    assert website.rows("SELECT COUNT(*) FROM publications") == [(0,)]


async def test_the_idempotency_key_is_required(website: Website) -> None:
    """PUT and DELETE without Idempotency-Key: 400."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    path = "/api/v1/publications/pen-1"
    put = await website.client.put(path, data=orjson.dumps(penalty()), headers=headers)
    assert (put.status, (await put.json())["reason"]) == (400, "IDEMPOTENCY_KEY_MISSING")
    delete = await website.client.delete(path, data=b"{}", headers=headers)
    assert delete.status == 400


@pytest.mark.parametrize(
    ("body", "reason", "field"),
    [
        (b"{not json", "MALFORMED_BODY", None),
        (b"", "MALFORMED_BODY", None),
        (b"[1, 2]", "MALFORMED_BODY", None),
        (penalty(kind="warning"), "UNKNOWN_KIND", "kind"),
        (penalty(revision="1"), "INVALID_FIELD", "revision"),
        (penalty(decision_date="26/09/2025"), "INVALID_DATE", "decision_date"),
        (penalty(fields={"CF_NR_FK": "2000元"}), "INVALID_AMOUNT", "fields.CF_NR_FK"),
        (
            penalty(fields={"CF_WSH": "东交罚1", "CF_XDR_ZJHM": UNMASKED_ID}),
            "UNMASKED_PERSONAL_DATA",
            "fields.CF_XDR_ZJHM",
        ),
        (
            penalty(fields={"CF_WSH": "东交罚1", "BZ": "联系电话 13812345678"}),
            "UNMASKED_PERSONAL_DATA",
            "fields.BZ",
        ),
        (penalty(subject_code=UNMASKED_ID), "UNMASKED_PERSONAL_DATA", "subject_code"),
    ],
)
async def test_bad_bodies_get_422_with_a_reason(
    website: Website, body: dict[str, Any] | bytes, reason: str, field: str | None
) -> None:
    """Malformed or unmasked publications are refused, named, and not stored."""
    response = await website.put("pen-1", body)
    assert response.status == 422
    answer = await response.json()
    assert (answer["reason"], answer.get("field")) == (reason, field)
    assert UNMASKED_ID not in answer["message"] and "13812345678" not in answer["message"]
    assert website.rows("SELECT COUNT(*) FROM publications") == [(0,)]


def body_of_size(size: int) -> bytes:
    """A valid penalty body of exactly ``size`` bytes, padded in fields of at most 9 000
    characters (each field holds at most 10 000)."""
    fields: dict[str, str] = {"CF_WSH": "东交罚1"}
    fields.update({f"PAD{n}": "x" * 9000 for n in range(7)})
    fields["PADLAST"] = ""
    missing = size - len(orjson.dumps(penalty(fields=fields)))
    fields["PADLAST"] = "x" * missing
    body = orjson.dumps(penalty(fields=fields))
    assert len(body) == size and missing <= 9000
    return body


async def test_a_body_over_64_kib_gets_413(website: Website) -> None:
    """65 536 bytes are accepted; 65 537 are one too many."""
    too_large = await website.put("pen-2", body_of_size(64 * 1024 + 1))
    assert too_large.status == 413
    assert (await too_large.json())["reason"] == "BODY_TOO_LARGE"
    assert (await website.put("pen-1", body_of_size(64 * 1024))).status == 201


async def test_expired_records_leave_the_pages_on_the_day_after_their_end(
    website: Website,
) -> None:
    """Shown up to and including publication_end (China date), hidden the day after."""
    await website.put("pen-1", penalty(publication_end="2025-10-01"))
    assert "东交罚〔2025〕0001号" in await website.page("/penalties")
    website.clock.now += timedelta(days=1)
    assert "东交罚〔2025〕0001号" not in await website.page("/penalties")
    await website.page("/publications/pen-1", status=404)
    assert (await website.record("pen-1"))["status"] == "expired"


# --- the public pages ---------------------------------------------------------------------------


async def test_a_script_in_a_subject_name_is_shown_as_text(website: Website) -> None:
    """HTML in published data is escaped on every page that shows it."""
    name = "东阿<script>alert('x')</script>运输"
    await website.put("pen-1", penalty(subject_name=name))
    escaped = "东阿&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;运输"
    for path in ("/penalties", "/publications/pen-1", "/search?q=%E4%B8%9C%E9%98%BF"):
        page = await website.page(path)
        assert escaped in page, path
        assert "<script>" not in page, path


async def test_the_detail_page_lists_the_standard_fields_in_chinese(website: Website) -> None:
    """Labels from RULES.md §1, the fine in 万元, masked values as sent."""
    await website.put("pen-1", penalty())
    page = await website.page("/publications/pen-1")
    for text in (
        "行政处罚决定书文号",
        "东交罚〔2025〕0001号",
        "罚款金额",
        "0.2000 万元",
        "违法事实",
        "处罚机关",
        "371***********123X",
        "信用东阿",
    ):
        assert text in page


async def test_lists_are_paginated_newest_first(website: Website) -> None:
    """45 penalties: pages of 20, 20 and 5, newest decision first; page 4 is 404."""
    start = datetime(2025, 1, 1, tzinfo=UTC).date()
    for number in range(1, 46):
        decided = (start + timedelta(days=number)).isoformat()
        body = penalty(number, decision_date=decided, publication_end=None)
        assert (await website.put(f"pen-{number}", body)).status == 201
    await website.put("lic-1", {**penalty(99), "kind": "licensing"})

    first = await website.page("/penalties")
    assert first.count('<tr><th scope="row">') == 20
    assert first.index("〔2025〕0045号") < first.index("〔2025〕0044号")
    assert "〔2025〕0025号" not in first and "〔2025〕0099号" not in first
    assert "第 1 / 3 页" in first and 'href="/penalties?page=2"' in first

    last = await website.page("/penalties?page=3")
    assert last.count('<tr><th scope="row">') == 5 and "〔2025〕0001号" in last
    await website.page("/penalties?page=4", status=404)
    await website.page("/penalties?page=abc", status=400)
    assert "〔2025〕0099号" in await website.page("/licences")


async def test_search_treats_percent_and_underscore_literally(website: Website) -> None:
    """ "100%" finds only the name containing "100%", not every "100…"."""
    await website.put("pen-1", penalty(1, subject_name="达标100%运输有限公司"))
    await website.put("pen-2", penalty(2, subject_name="达标1000运输有限公司"))
    await website.put("pen-3", penalty(3, subject_name="甲_乙物流", plate="鲁P99999"))

    percent = await website.page("/search?q=100%25")
    assert "达标100%运输有限公司" in percent and "达标1000运输有限公司" not in percent
    underscore = await website.page("/search?q=%E7%94%B2_")
    assert "甲_乙物流" in underscore and "达标" not in underscore
    by_plate = await website.page("/search?q=P99999")
    assert "甲_乙物流" in by_plate and "达标" not in by_plate
    assert "未找到" in await website.page("/search?q=%25%25%25")
    assert 'name="q"' in await website.page("/search")


async def test_home_counts_and_list_pages(website: Website) -> None:
    """The home page counts what each list shows; black and red lists show their entries."""
    await website.put("pen-1", penalty())
    entry = {
        "kind": "blacklist",
        "fields": {
            "list": "blacklist",
            "rule": "超限运输超过3次",
            "reason": "一年内违法超限运输4次",
        },
        "subject_name": "鲁P12345",
        "subject_code": "鲁P12345",
        "plate": "鲁P12345",
        "decision_date": "2025-09-30",
        "publication_end": "2027-09-30",
        "revision": 1,
    }
    await website.put("black-1", entry)
    await website.put("red-1", {**entry, "kind": "redlist", "subject_name": "东阿县守信运输公司"})
    home = await website.page("/")
    assert '<span class="tile-count">1</span>' in home
    assert "严重失信主体名单" in home and "守信激励名单" in home
    assert "一年内违法超限运输4次" in await website.page("/blacklist")
    assert "东阿县守信运输公司" in await website.page("/redlist")
    assert "严重失信主体名单" in await website.page("/publications/black-1")


async def test_every_response_has_the_security_headers(website: Website) -> None:
    """CSP, nosniff and Referrer-Policy on pages, errors and the API."""
    for path in ("/", "/no-such-page", "/api/v1/publications/x"):
        response = await website.client.get(path)
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "style-src 'sha256-" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert "aiohttp" not in response.headers["Server"]


async def test_unknown_pages_get_a_chinese_404_and_unknown_api_paths_json(website: Website) -> None:
    """404 page in Chinese; JSON errors under /api/."""
    page = await website.page("/no-such-page", status=404)
    assert "页面不存在" in page and 'lang="zh-CN"' in page
    response = await website.client.get("/api/v1/nothing")
    assert response.status == 404 and response.content_type == "application/json"
    wrong_method = await website.client.post("/api/v1/publications/pen-1")
    assert wrong_method.status == 405 and "PUT" in wrong_method.headers["Allow"]


# --- operations ---------------------------------------------------------------------------------


async def test_health_and_metrics(website: Website) -> None:
    """Live and ready answer 200; metrics count publications and requests by route."""
    assert (await website.client.get("/health/live")).status == 200
    ready = await website.client.get("/health/ready")
    assert (ready.status, (await ready.json())["status"]) == (200, "ready")
    await website.put("pen-1", penalty())
    await website.put("pen-1", penalty(revision=0))
    await website.put("pen-2", penalty(kind="warning"))
    await website.page("/publications/pen-1")
    metrics = await website.page("/metrics")
    assert 'credit_website_publications_total{action="created",kind="penalty"} 1.0' in metrics
    assert 'credit_website_publications_total{action="stale",kind="penalty"} 1.0' in metrics
    assert 'credit_website_publications_total{action="rejected",kind="unknown"} 1.0' in metrics
    assert (
        'credit_website_requests_total{route="/publications/{publication_id}",status="200"} 1.0'
        in metrics
    )


async def test_the_schema_is_versioned_and_data_survives_a_restart(
    website: Website, tmp_path: Path
) -> None:
    """Version 1 in schema_migrations, WAL mode, and records are there after a restart."""
    await website.put("pen-1", penalty())
    assert website.rows("SELECT version FROM schema_migrations") == [(1,)]
    assert website.rows("PRAGMA journal_mode") == [("wal",)]

    app = create_website_app(
        SqliteRepository(website.db_path), TOKEN, CollectorRegistry(), clock=website.clock
    )
    async with TestClient(TestServer(app)) as second:
        response = await second.get("/publications/pen-1")
        assert response.status == 200
    assert website.rows("SELECT COUNT(*) FROM schema_migrations") == [(1,)]


async def test_a_database_that_stops_answering_fails_readiness_and_pages(tmp_path: Path) -> None:
    """/health/ready answers 503 and pages a Chinese 500 page once the database is gone."""
    repository = SqliteRepository(tmp_path / "website.sqlite3")
    app = create_website_app(repository, TOKEN, CollectorRegistry(), clock=Clock())
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/health/ready")).status == 200
        await repository.close()
        ready = await client.get("/health/ready")
        assert (ready.status, (await ready.json())["status"]) == (503, "unavailable")
        page = await client.get("/penalties")
        assert page.status == 500 and "服务暂时不可用" in await page.text()
        api = await client.get(
            "/api/v1/publications/p1", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert (api.status, (await api.json())["reason"]) == (500, "INTERNAL_ERROR")

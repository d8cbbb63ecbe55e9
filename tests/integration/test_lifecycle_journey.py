"""Issue 7, item 6: one vehicle's whole journey on the real broker, Redis, API and website.

First violation → blacklist proposed (10 working days' notice) → objection filed, then rejected →
the clock passes the notice → published → another objection marks the public page until it is
rejected → credit repair approved → removed. At each step the law-enforcement API (via the
serving store in Redis) and the public website are checked, and at the end the audit topic gives
the vehicle's full history. The clock is the test's: the worker's
timer is off and the test sends ticks (``streams/clock.py``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from api.app import create_api_app
from api.auth import ApiKey, KeyRegistry, Scope, hash_key
from api.store import StoreReader
from processors.disclosure import publication_id_for
from processors.lifecycle import OBJECTION_MARK, list_publication_id
from processors.lists import ListName
from processors.model import (
    InputEvent,
    Objection,
    ObjectionAction,
    ObjectionTarget,
    PlateColour,
    RepairApplication,
    SubjectKind,
    SubjectRef,
    vehicle_key,
)
from sinks.serving_store import ServingStoreLayout, connect_redis
from streams.clock import tick_once
from streams.history import subject_history
from tests.conftest import KafkaService, RedisService
from tests.e2e.test_website_browser import TOKEN, RunningWebsite, website_process
from tests.integration.pipeline_support import (
    send_events,
    start_publisher,
    start_worker,
    stop_worker,
)
from tests.integration.serving_helpers import Topics, eventually, resident_id, start_sink, uscc
from tests.unit.credit_support import penalty
from website.pages import detail_path

pytestmark = pytest.mark.integration

__all__ = ["website_process"]  # the fixture, used by name below

PLATE = "鲁P70707"
VEHICLE = SubjectRef(SubjectKind.VEHICLE, vehicle_key(PLATE, PlateColour.YELLOW))
AGENCY = "东阿县交通运输局"
DRIVER, CARRIER, AUTHORITY = resident_id(7070), uscc(7070), uscc(1)
POLICE_KEY = "police-key-journey-0123456789"
PENALTY_DAYS = ("2026-05-06", "2026-06-10", "2026-07-15", "2026-08-19")
# The notice runs 10 working days from the day the worker proposes the entry (today); a tick
# well past it publishes, whatever today is.
PUBLISH_TICK = datetime(2027, 1, 20, 1, 0, tzinfo=UTC)


def _penalties() -> list[InputEvent]:
    """Four overload fines on the truck's driver, decided months ago; valid identifiers."""
    return [
        replace(
            penalty(
                f"journey-p{n}", day, plate=PLATE, subject_id_number=DRIVER, carrier_uscc=CARRIER
            ),
            event_id=f"journey-p{n}-{uuid.uuid4().hex[:6]}",
            authority_code=AUTHORITY,
        )
        for n, day in enumerate(PENALTY_DAYS, 1)
    ]


def _objection(
    action: ObjectionAction, at: datetime, objection_id: str = "journey-objection"
) -> Objection:
    return Objection(
        event_id=f"{objection_id}-{action.value}",
        objection_id=objection_id,
        action=action,
        subject_kind=SubjectKind.VEHICLE,
        target=ObjectionTarget.LIST_ENTRY,
        occurred_at=at,
        handled_by=AGENCY,
        plate_number=PLATE,
        plate_colour=PlateColour.YELLOW,
        list_name=ListName.BLACKLIST.value,
        rule_id="overload.vehicle",
        reason="当事人称第二次称重设备故障",
    )


LAST_ANSWER: list[object] = [None]


async def _poll(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 90.0) -> None:
    try:
        await eventually(check, timeout=timeout, every=0.3)
    except AssertionError:
        raise AssertionError(
            f"{what}: not seen within {timeout} s; the API's last answer: {LAST_ANSWER[0]}"
        ) from None


async def test_a_vehicle_from_first_violation_to_repair_and_removal(
    kafka: KafkaService,
    redis_service: RedisService,
    unique_name: str,
    tmp_path: Path,
    website_process: RunningWebsite,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bootstrap, prefix = kafka.bootstrap_servers, f"{unique_name}."
    monkeypatch.setenv("CREDIT_CLOCK_INTERVAL_SECONDS", "0")  # the test drives the clock
    first, *rest = _penalties()
    await send_events(bootstrap, prefix, [first])  # creates the topics too

    worker = start_worker(bootstrap, unique_name, prefix, tmp_path)
    publisher = start_publisher(
        bootstrap, unique_name, prefix, tmp_path, website_process.url, TOKEN
    )
    redis = connect_redis(redis_service.url)
    layout = ServingStoreLayout(prefix=f"journey-{uuid.uuid4().hex[:8]}:")
    topics = Topics(f"{prefix}credit-snapshots", f"{prefix}list-triggers", 6)
    sink = await start_sink(redis, bootstrap, topics, layout)
    store = StoreReader(connect_redis(redis_service.url, timeout=0.5), layout)
    keys = KeyRegistry(
        (
            ApiKey(
                "police",
                "东阿县公安局交警大队",
                hash_key(POLICE_KEY),
                frozenset({Scope.BASIC, Scope.EVIDENCE}),
                1000.0,
            ),
        )
    )
    client: TestClient[Any, Any] = TestClient(
        TestServer(create_api_app(store, keys, CollectorRegistry()))
    )
    await client.start_server()
    shown: list[str] = []

    async def vehicle_answer() -> dict[str, Any]:
        response = await client.get(
            f"/v1/vehicles/{quote(PLATE)}?colour=YELLOW",
            headers={"Authorization": f"Bearer {POLICE_KEY}"},
        )
        body = await response.json()
        LAST_ANSWER[0] = body
        assert isinstance(body, dict)
        return body

    async def blacklist() -> dict[str, Any]:
        answer = await vehicle_answer()
        lists: dict[str, Any] = answer["subject"].get("lists", {})
        return lists.get("blacklist", {})

    def website_status(publication_id: str) -> str | None:
        answer = httpx.get(
            f"{website_process.url}/api/v1/publications/{publication_id}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=2,
        )
        if answer.status_code != 200:
            return None
        status: str = answer.json().get("status")
        return status

    entry_id = list_publication_id(VEHICLE, ListName.BLACKLIST, "overload.vehicle")
    first_penalty_id = publication_id_for("CF", "东交罚〔journey-p1〕")
    try:
        # 1. The first violation: known, not listed; its decision is published (双公示).
        async def one_violation() -> bool:
            subject = (await vehicle_answer())["subject"]
            return (
                bool(subject.get("known"))
                and subject.get("violations_in_window", {}).get("OVERLOAD") == 1
            )

        await _poll(one_violation, "the first violation in the API")
        assert (await blacklist()).get("status") == "not_listed"
        await _poll(
            lambda: _async(website_status(first_penalty_id) == "published"),
            "the decision on the website",
        )
        shown.append("1 first violation: API known, not listed; website shows the decision")

        # 2. The fourth violation in 365 days: proposed, 10 working days' notice, not in force.
        await send_events(bootstrap, prefix, rest)

        async def proposed() -> bool:
            return (await blacklist()).get("status") == "proposed"

        await _poll(proposed, "the proposed entry")
        listed = await blacklist()
        assert listed["listed"] is False and listed["rules"][0]["notice_ends"]
        assert website_status(entry_id) is None, "nothing is published during the notice"
        notice_ends = listed["rules"][0]["notice_ends"]
        shown.append(
            f"2 fourth violation: API proposed, notice ends {notice_ends}; no entry online"
        )

        # 3. An objection during the notice: the entry is marked disputed; then rejected.
        now = datetime.now(UTC)
        await send_events(bootstrap, prefix, [_objection(ObjectionAction.FILED, now)])

        async def disputed() -> bool:
            return bool((await blacklist())["rules"][0].get("disputed"))

        await _poll(disputed, "the objection's mark")
        shown.append("3 objection filed: API proposed, disputed")
        await send_events(
            bootstrap, prefix, [_objection(ObjectionAction.REJECTED, datetime.now(UTC))]
        )

        async def answered() -> bool:
            return not (await blacklist())["rules"][0].get("disputed")

        await _poll(answered, "the objection's answer")
        assert (await blacklist())["status"] == "proposed", "the notice is not over yet"
        shown.append("3 objection rejected: API proposed, no longer disputed")

        # 4. The worker restarts (its due table comes back from the changelog), then the clock
        # passes the notice: published on the website, in force for the police.
        stop_worker(worker)
        worker = start_worker(bootstrap, unique_name, prefix, tmp_path, name="worker-restarted")
        await tick_once(bootstrap, f"{prefix}credit-facts", PUBLISH_TICK)

        async def published() -> bool:
            return (await blacklist()).get("status") == "published"

        await _poll(published, "the published entry in the API")
        assert (await blacklist())["listed"] is True
        await _poll(
            lambda: _async(website_status(entry_id) == "published"), "the entry on the website"
        )
        page = httpx.get(f"{website_process.url}/blacklist", timeout=5).text
        assert PLATE in page
        shown.append(
            "4 worker restarted, clock past the notice: API published, listed; "
            "website /blacklist shows the plate"
        )

        # 4b. An objection against the published entry: the public page carries the mark while
        # it is open (RULES.md §4, annotate and keep published), and loses it once rejected.
        def entry_page() -> str:
            return httpx.get(f"{website_process.url}{detail_path(entry_id)}", timeout=5).text

        await send_events(
            bootstrap,
            prefix,
            [_objection(ObjectionAction.FILED, datetime.now(UTC), "journey-objection-2")],
        )
        await _poll(lambda: _async(OBJECTION_MARK in entry_page()), "the website's objection mark")
        assert website_status(entry_id) == "published"
        await send_events(
            bootstrap,
            prefix,
            [_objection(ObjectionAction.REJECTED, datetime.now(UTC), "journey-objection-2")],
        )
        await _poll(
            lambda: _async(OBJECTION_MARK not in entry_page() and PLATE in entry_page()),
            "the mark taken off",
        )
        shown.append("4b objection against the published entry: website marks it, then not")

        # 5. Credit repair of the first decision (3 months of publication are over): removed.
        repair = RepairApplication(
            event_id="journey-repair",
            application_id="journey-repair-1",
            subject_kind=SubjectKind.VEHICLE,
            decision_number="东交罚〔journey-p1〕",
            applied_at=datetime.now(UTC),
            obligations_fulfilled=True,
            public_commitment=True,
            plate_number=PLATE,
            plate_colour=PlateColour.YELLOW,
            applicant_name="东阿某运输有限公司",
        )
        await send_events(bootstrap, prefix, [repair])

        async def removed() -> bool:
            return (await blacklist()).get("status") == "not_listed"

        await _poll(removed, "the removal in the API")
        await _poll(
            lambda: _async(website_status(entry_id) == "withdrawn"), "the entry's withdrawal"
        )
        await _poll(
            lambda: _async(website_status(first_penalty_id) == "withdrawn"),
            "the repaired decision's withdrawal",
        )
        assert PLATE not in httpx.get(f"{website_process.url}/blacklist", timeout=5).text
        shown.append("5 repair approved: API not listed; website entry and decision withdrawn")

        # 6. The audit topic holds the vehicle's whole history, in order.
        history = await subject_history(bootstrap, f"{prefix}audit-records", str(VEHICLE))
        expected = [
            ("entry:BLACKLIST:overload.vehicle", "proposed"),
            ("objection:journey-objection", "OPEN"),
            ("objection:journey-objection", "REJECTED"),
            ("entry:BLACKLIST:overload.vehicle", "published"),
            ("objection:journey-objection-2", "OPEN"),
            # Filed on today's date with the clock already at PUBLISH_TICK: its answer was due
            # ten working days after today, so it is overdue at once.
            ("objection:journey-objection-2", "OVERDUE"),
            ("objection:journey-objection-2", "REJECTED"),
            ("repair:journey-repair-1", "APPROVED"),
            ("decision:东交罚〔journey-p1〕", "set_aside"),
            ("entry:BLACKLIST:overload.vehicle", "removed"),
        ]
        assert [(h["record"], h["to_state"]) for h in history] == expected
        shown.append("6 audit: " + " → ".join(f"{r.split(':')[0]} {s}" for r, s in expected))
    finally:
        print("\n[journey]\n" + "\n".join(shown))
        await client.close()
        await store.close()
        await sink.close()
        await redis.aclose()
        stop_worker(publisher)
        stop_worker(worker)
    # Structured logs, and no personal data in them (the driver's ID number is in every decision).
    for name in ("worker.log", "worker-restarted.log", "publisher.log"):
        lines = (tmp_path / name).read_text(encoding="utf-8").splitlines()
        assert lines and all(json.loads(line)["level"] for line in lines if line.startswith("{"))
        assert not [line for line in lines if DRIVER in line], f"{name} shows an ID number"


async def _async(value: bool) -> bool:
    return value

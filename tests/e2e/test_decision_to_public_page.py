"""End to end (issue 6, item 5): a penalty decision on Kafka becomes a record on the public credit
website — worker (outbox) → publisher → website — checked in headless Chromium."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from ops.simulator import Simulation, Simulator
from processors.disclosure import PublicationRequest
from processors.model import InputEvent, PenaltyDecision
from processors.policy import parse_policy_book
from sinks.publisher import load_calendar
from streams.ingest import disclosure_for
from streams.settings import REPO_ROOT
from tests.conftest import KafkaService
from tests.e2e.test_website_browser import (
    ARTIFACTS,
    TOKEN,
    RunningWebsite,
    chromium,
    chromium_binary,
    website_process,
)
from tests.integration.pipeline_support import (
    send_events,
    start_publisher,
    start_worker,
    stop_worker,
)

pytestmark = pytest.mark.integration

__all__ = ["website_process"]  # the fixture, used by name below


def _first_penalty() -> tuple[list[InputEvent], PenaltyDecision]:
    simulator = Simulator(Simulation(seed=5, vehicles=40, carriers=4))
    while True:
        events = simulator.next_events()
        penalties = [event for event in events if isinstance(event, PenaltyDecision)]
        if penalties:
            return list(events), penalties[0]


async def test_a_penalty_decision_on_kafka_is_visible_on_the_public_page(
    kafka: KafkaService, unique_name: str, tmp_path: Path, website_process: RunningWebsite
) -> None:
    """Kafka → worker → outbox → publisher → website: the decision shows on its public page."""
    bootstrap, prefix = kafka.bootstrap_servers, f"{unique_name}."
    events, penalty = _first_penalty()
    book = parse_policy_book((REPO_ROOT / "config" / "policy.yaml").read_text(encoding="utf-8"))
    request = disclosure_for(penalty, load_calendar(REPO_ROOT / "config" / "calendar"), book)
    assert isinstance(request, PublicationRequest)
    started = time.monotonic()
    await send_events(bootstrap, prefix, events)

    worker = start_worker(bootstrap, unique_name, prefix, tmp_path)
    publisher = start_publisher(
        bootstrap, unique_name, prefix, tmp_path, website_process.url, TOKEN
    )
    try:
        api = f"{website_process.url}/api/v1/publications/{request.publication_id}"
        deadline = time.monotonic() + 90
        while True:
            answer = httpx.get(api, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=2)
            if answer.status_code == 200:
                break
            assert time.monotonic() < deadline, (
                f"not published after 90 s ({answer.status_code}); publisher log:\n"
                + (tmp_path / "publisher.log").read_text(errors="replace")[-3000:]
            )
            time.sleep(0.5)
        visible_after = time.monotonic() - started
        page = f"{website_process.url}/publications/{request.publication_id}"
        binary = chromium_binary()
        dom = chromium(binary, tmp_path / "profile-dom", "--dump-dom", page)
        ARTIFACTS.mkdir(exist_ok=True)
        screenshot = ARTIFACTS / "decision-to-public-page.png"
        chromium(
            binary,
            tmp_path / "profile-shot",
            f"--screenshot={screenshot}",
            "--window-size=1280,900",
            page,
        )
    finally:
        stop_worker(publisher)
        stop_worker(worker)
    print(f"\n[e2e] decision {penalty.decision_number} visible after {visible_after:.1f} s")
    assert penalty.decision_number in dom
    assert request.subject_name in dom
    assert screenshot.stat().st_size > 10_000

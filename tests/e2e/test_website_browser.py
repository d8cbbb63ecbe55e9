"""The credit website as the public sees it: a real server process and headless Chromium.

The website runs as ``python -m website`` (settings from ``CREDIT_*`` variables, as in
production) on a free loopback port with a fresh SQLite file. The test publishes a masked penalty
through the API, has the publisher's unmasked attempt refused, then loads the pages in Debian's
headless Chromium: the DOM must show the decision number and the masked subject code and must not
contain the unmasked ID number. Screenshots are kept in ``test-artifacts/`` for people to look at.

Needs the Debian packages ``chromium`` and ``fonts-noto-cjk`` (Chinese glyphs in screenshots);
the test fails, never skips, when either is missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ops.services import free_port
from processors.identifiers import resident_id_check_digit
from streams.settings import REPO_ROOT

TOKEN = "e2e-publisher-token"
ARTIFACTS = REPO_ROOT / "test-artifacts"
UNMASKED_ID = "37152419900101123" + resident_id_check_digit("37152419900101123")
MASKED_ID = "371***********1232"
DECISION_NUMBER = "东交罚〔2025〕0926号"
SITE_TITLE = "信用东阿 · 东阿县交通运输局信用信息公示"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # the test may run as root
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
CHROMIUM_TIMEOUT_SECONDS = 60
START_TIMEOUT_SECONDS = 15


def chromium_binary() -> str:
    """Debian's Chromium, or ``$CHROMIUM``; fails the test with the install command if absent."""
    binary = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(binary).exists():
        pytest.fail(
            "headless Chromium is needed for the website's browser test and is not installed: "
            "apt-get install -y chromium fonts-noto-cjk",
            pytrace=False,
        )
    return binary


def require_chinese_fonts() -> None:
    """Chinese must render in the screenshots; fails with the install command otherwise."""
    fc_list = shutil.which("fc-list")
    found = ""
    if fc_list is not None:
        found = subprocess.run(
            [fc_list, ":lang=zh", "family"], capture_output=True, text=True, check=False
        ).stdout
    if not found.strip():
        pytest.fail(
            "no font with Chinese glyphs is installed, so screenshots would show empty boxes: "
            "apt-get install -y fonts-noto-cjk",
            pytrace=False,
        )


@dataclass(frozen=True)
class RunningWebsite:
    url: str
    log: Path


@pytest.fixture
def website_process(tmp_path: Path) -> Iterator[RunningWebsite]:
    """``python -m website`` on a free port, ready; stopped with SIGTERM afterwards."""
    port = free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("CREDIT_")  # a developer's own settings must not leak in
    }
    env.update(
        CREDIT_BIND_HOST="127.0.0.1",
        CREDIT_WEBSITE_PORT=str(port),
        CREDIT_WEBSITE_DB=str(tmp_path / "website.sqlite3"),
        CREDIT_WEBSITE_API_TOKEN=TOKEN,
    )
    log = tmp_path / "website.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "website"],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"the website exited with {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/health/ready", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the website was not ready in {START_TIMEOUT_SECONDS} s:\n{log.read_text()}"
                )
            time.sleep(0.1)
        yield RunningWebsite(url, log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def publication(subject_code: str, personal_id: str) -> dict[str, Any]:
    return {
        "kind": "penalty",
        "fields": {
            "CF_WSH": DECISION_NUMBER,
            "CF_XDR_MC": "张*",
            "CF_XDR_LB": "自然人",
            "CF_XDR_ZJLX": "身份证",
            "CF_XDR_ZJHM": personal_id,
            "CF_WFXW": "违法超限运输",
            "CF_SY": (
                "2025年9月20日，鲁P12345货车在S325线东阿超限检测站经检测车货总质量超过限定标准"
            ),
            "CF_YJ": "《公路安全保护条例》第六十四条",
            "CF_CFLB": "罚款",
            "CF_NR": "罚款2000元",
            "CF_NR_FK": "0.2",
            "CF_JDRQ": "2025-09-26",
            "CF_CFJG": "东阿县交通运输局",
            "CF_CFJGDM": "11371524004188012X",
            "CF_GSJZQ": "2026-09-26",
        },
        "subject_name": "张*",
        "subject_code": subject_code,
        "plate": "鲁P12345",
        "decision_date": "2025-09-26",
        "publication_end": "2099-12-31",
        "revision": 1,
    }


def put(url: str, publication_id: str, body: dict[str, Any], key: str) -> httpx.Response:
    return httpx.put(
        f"{url}/api/v1/publications/{publication_id}",
        json=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": key},
        timeout=5.0,
    )


def chromium(binary: str, profile: Path, *arguments: str) -> str:
    """Run headless Chromium once with a fresh profile; its standard output."""
    completed = subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *arguments],
        capture_output=True,
        text=True,
        timeout=CHROMIUM_TIMEOUT_SECONDS,
        check=False,
    )
    if completed.returncode != 0:
        pytest.fail(f"chromium exited with {completed.returncode}:\n{completed.stderr[-4000:]}")
    return completed.stdout


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_a_published_penalty_is_visible_masked_in_the_browser(
    website_process: RunningWebsite, tmp_path: Path
) -> None:
    """Chromium shows the decision number and the masked code; the unmasked ID never appears."""
    binary = chromium_binary()
    require_chinese_fonts()
    url = website_process.url

    refused = put(url, "pen-e2e-unmasked", publication(UNMASKED_ID, UNMASKED_ID), "e2e-1")
    assert refused.status_code == 422, refused.text
    assert refused.json()["reason"] == "UNMASKED_PERSONAL_DATA"
    created = put(url, "pen-e2e-1", publication(MASKED_ID, MASKED_ID), "e2e-2")
    assert created.status_code == 201, created.text

    for path in ("/publications/pen-e2e-1", "/penalties", "/search?q=%E5%BC%A0"):
        dom = chromium(binary, tmp_path / "profile-dom", "--dump-dom", url + path)
        assert SITE_TITLE in " ".join(dom.replace("<strong>", "").replace("</strong>", "").split())
        assert DECISION_NUMBER in dom, path
        assert MASKED_ID in dom, path
        assert UNMASKED_ID not in dom, path
    assert "pen-e2e-unmasked" not in chromium(binary, tmp_path / "profile-dom", "--dump-dom", url)

    ARTIFACTS.mkdir(exist_ok=True)
    pages = (
        ("website-publication-detail", "/publications/pen-e2e-1"),
        ("website-penalties", "/penalties"),
        ("website-home", "/"),
    )
    for name, path in pages:
        screenshot = ARTIFACTS / f"{name}.png"
        screenshot.unlink(missing_ok=True)
        chromium(
            binary,
            tmp_path / f"profile-{name}",
            f"--screenshot={screenshot}",
            "--window-size=1280,900",
            url + path,
        )
        assert screenshot.exists(), f"chromium wrote no screenshot to {screenshot}"
        assert png_size(screenshot) == (1280, 900)
        assert screenshot.stat().st_size > 20_000, "the screenshot looks blank"

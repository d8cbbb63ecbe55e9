"""Make ``docs/dashboard.png`` from a real run: Prometheus scrapes the demo, then the dashboard is
drawn from what it recorded (``ops/render_dashboard.py``). ``bash ops/dashboard_run.sh`` runs this.

1. starts Prometheus (Debian's ``prometheus``) on loopback, scraping every 5 s the demo's
   processes under the job names of ``ops/prometheus/prometheus.yml`` (worker, serving-store,
   api, publisher, website) with the alert rules of ``ops/prometheus/alerts.yml``; its data goes
   to ``.run/prometheus/`` (a fresh TSDB each run);
2. runs ``credit-transport demo`` (a fresh Kafka, Redis and every process, fed by the simulator),
   and, once the query API is ready, a light law-enforcement query load on it (a few requests a
   second: vehicles, carriers, drivers, batches, the audit log, and now and then a mistyped plate,
   which the API answers 400), so that the API panels show a real API;
3. after ``--seconds`` of traffic, stops the demo as Ctrl-C does, draws the dashboard over the
   run (from the moment every process was started to the moment the traffic stopped), and stops
   Prometheus.

``--render-only`` draws the last run again from the kept TSDB (after a change to the renderer or
the dashboard), without a new run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import httpx

from ops import render_dashboard
from ops.demo import API_PORT, WEBSITE_PORT
from ops.simulator import Simulator, demo_simulation
from streams.cli import LOCAL_KAFKA_PORT, LOCAL_REDIS_PORT
from streams.settings import REPO_ROOT, Settings

RUN_DIR = REPO_ROOT / ".run" / "prometheus"
LAST_RUN = RUN_DIR / "last-run.json"
SCRAPE_INTERVAL = "5s"
RATE_INTERVAL = "1m"
"""For rate() and histogram quantiles: Grafana's $__rate_interval would be 20 s at this scrape
interval, which makes a few API requests a second look like noise; a minute reads better."""


def _targets() -> dict[str, int]:
    settings = Settings()
    return {
        "worker": settings.worker_web_port,
        "serving-store": settings.serving_store_metrics_port,
        "api": API_PORT,
        "publisher": settings.publisher_metrics_port,
        "website": WEBSITE_PORT,
    }


def prometheus_config(port: int) -> str:
    """Scrape the demo's processes on loopback, as ops/prometheus/prometheus.yml does in compose."""
    alerts = REPO_ROOT / "ops" / "prometheus" / "alerts.yml"
    lines = [
        "# Written by ops/dashboard_run.py for one run; ops/prometheus/prometheus.yml is the",
        "# compose stack's. Same job names, static loopback targets, a 5 s scrape interval.",
        "global:",
        f"  scrape_interval: {SCRAPE_INTERVAL}",
        f"  evaluation_interval: {SCRAPE_INTERVAL}",
        "  external_labels:",
        "    stack: credit-transport-demo",
        "rule_files:",
        f"  - {json.dumps(str(alerts))}",
        "scrape_configs:",
    ]
    for job, target_port in [*_targets().items(), ("prometheus", port)]:
        lines += [
            f"  - job_name: {job}",
            "    static_configs:",
            f"      - targets: ['127.0.0.1:{target_port}']",
        ]
    return "\n".join(lines) + "\n"


def _port_busy(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_http(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process serving {url} exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f} s")


class LocalPrometheus:
    """Debian's prometheus on loopback, its TSDB in .run/prometheus/data."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, fresh: bool) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not on PATH: apt-get install prometheus")
        if _port_busy(self.port):
            raise RuntimeError(f"port {self.port} is taken: pass --prometheus-port")
        if fresh:
            shutil.rmtree(RUN_DIR / "data", ignore_errors=True)
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        config = RUN_DIR / "prometheus.yml"
        config.write_text(prometheus_config(self.port), encoding="utf-8")
        with (RUN_DIR / "prometheus.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={RUN_DIR / 'data'}",
                    "--storage.tsdb.retention.time=30d",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_http(f"{self.url}/-/ready", 60, self.process)

    def version(self) -> str:
        result = subprocess.run(["prometheus", "--version"], capture_output=True, text=True)
        match = re.search(r"version (\S+)", result.stdout + result.stderr)
        return match.group(1) if match else "?"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Demo:
    """``credit-transport demo`` as a child: its output goes on to the terminal and a log."""

    def __init__(self, rate: float, seed: int) -> None:
        self.rate = rate
        self.seed = seed
        self.output = ""
        self.process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streams.cli",
                "demo",
                "--seconds",
                "0",
                "--rate",
                str(self.rate),
                "--seed",
                str(self.seed),
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C here reaches this script only, which then sends the
            # demo one SIGINT (a second one would cut its clean-up short).
            start_new_session=True,
        )
        log = (RUN_DIR / "demo.log").open("wb")
        self._reader = threading.Thread(target=self._copy, args=(log,), daemon=True)
        self._reader.start()

    def _copy(self, log: IO[bytes]) -> None:
        assert self.process is not None and self.process.stdout is not None
        with log:
            while chunk := os.read(self.process.stdout.fileno(), 4096):
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
                log.write(chunk)
                log.flush()
                self.output += chunk.decode("utf-8", errors="replace")

    def wait_ready(self, timeout: float) -> str:
        """The demo API key, once the demo has started every process."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            match = re.search(r"Bearer ([A-Za-z0-9_\-]+)'", self.output)
            if match and "ready after" in self.output:
                return match.group(1)
            if self.process.poll() is not None:
                raise RuntimeError(f"the demo exited with {self.process.returncode}")
            time.sleep(0.2)
        raise RuntimeError(f"the demo did not start within {timeout:.0f} s")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Ctrl-C: the demo stops every process it started (Kafka and Redis included)."""
        if not self.alive():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=180)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)
        if self._reader is not None:
            self._reader.join(timeout=5)


class QueryLoad(threading.Thread):
    """A few law-enforcement queries a second against the demo's API, for the API panels."""

    def __init__(self, api_key: str, per_second: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.vehicles = Simulator(demo_simulation(seed)).vehicles  # the demo's plates
        self.per_second = per_second
        self.rng = random.Random(seed)  # noqa: S311 - picks test queries
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{API_PORT}",
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=10,
        )
        self.statuses: Counter[str] = Counter()
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(1 / self.per_second):
            try:
                self.statuses[str(self.one().status_code)] += 1
            except httpx.HTTPError as exc:
                self.statuses[type(exc).__name__] += 1

    def one(self) -> httpx.Response:
        draw = self.rng.random()
        vehicle = self.rng.choice(self.vehicles)
        if draw < 0.55:
            return self.client.get(f"/v1/vehicles/{vehicle.plate}")
        if draw < 0.70:
            return self.client.get(f"/v1/carriers/{vehicle.carrier_uscc}")
        if draw < 0.80:
            return self.client.get(f"/v1/drivers/{vehicle.driver_id}")
        if draw < 0.92:
            plates = self.rng.sample(self.vehicles, 50)
            queries = [{"kind": "vehicle", "plate": v.plate} for v in plates]
            return self.client.post("/v1/lookup", json={"queries": queries})
        if draw < 0.95:
            return self.client.get("/v1/audit", params={"count": 20})
        return self.client.get(f"/v1/vehicles/{vehicle.plate[:-2]}")  # mistyped: 400

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=15)
        self.client.close()


def render(prometheus: LocalPrometheus, record: dict[str, object], output: Path) -> int:
    """Draw the recorded run (start, end, subtitle) from this Prometheus."""
    return render_dashboard.main(
        [
            "--prometheus",
            prometheus.url,
            "--start",
            str(record["start"]),
            "--end",
            str(record["end"]),
            "--scrape-interval",
            SCRAPE_INTERVAL,
            "--rate-interval",
            str(record.get("rate_interval", RATE_INTERVAL)),
            "--subtitle",
            str(record["subtitle"]),
            "--output",
            str(output),
        ]
    )


def run(args: argparse.Namespace) -> int:
    prometheus = LocalPrometheus(args.prometheus_port)
    if args.render_only:
        if not LAST_RUN.exists():
            print(f"no run recorded in {LAST_RUN}: run without --render-only first")
            return 1
        try:
            prometheus.start(fresh=False)
            return render(prometheus, json.loads(LAST_RUN.read_text()), args.output)
        finally:
            prometheus.stop()

    busy = [p for p in (*_targets().values(), LOCAL_KAFKA_PORT, LOCAL_REDIS_PORT) if _port_busy(p)]
    if busy:
        print(f"ports in use: {busy}; is a demo still running? Stop it first.", file=sys.stderr)
        return 1
    demo = Demo(args.rate, args.seed)
    load: QueryLoad | None = None
    try:
        print(f"== Prometheus on 127.0.0.1:{args.prometheus_port} (TSDB in {RUN_DIR})")
        prometheus.start(fresh=True)
        try:
            print(f"== credit-transport demo --rate {args.rate:g} --seed {args.seed}")
            demo.start()
            api_key = demo.wait_ready(timeout=600)
            start = time.time()
            if args.queries_per_second > 0:
                _wait_http(f"http://127.0.0.1:{API_PORT}/health/ready", 120)
                load = QueryLoad(api_key, args.queries_per_second, args.seed)
                load.start()
            while time.time() - start < args.seconds:
                if not demo.alive():
                    print("\nthe demo stopped early: see .run/*.log", file=sys.stderr)
                    return 1
                time.sleep(1)
            end = time.time()
        finally:
            if load is not None:
                load.stop()
            print("\n== stopping the demo (SIGINT, as Ctrl-C)", flush=True)
            demo.stop()
        queries = ""
        if load is not None:
            answered = ", ".join(f"{n} × {s}" for s, n in sorted(load.statuses.items()))
            print(f"== API queries answered: {answered}")
            queries = f", plus ~{args.queries_per_second:g} API queries/s from the run script"
        subtitle = (
            f"A real run: `bash ops/dashboard_run.sh` ran `credit-transport demo --rate "
            f"{args.rate:g} --seed {args.seed}` (simulated 东阿县 traffic; local Kafka, Redis and "
            f"every process) for {args.seconds:g} s{queries}; Prometheus {prometheus.version()} "
            f"scraped every {SCRAPE_INTERVAL} on loopback."
        )
        record = {"start": start, "end": end, "subtitle": subtitle, "rate_interval": RATE_INTERVAL}
        LAST_RUN.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
        print("== drawing the dashboard")
        return render(prometheus, record, args.output)
    finally:
        prometheus.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=240, help="traffic time (default 240)")
    parser.add_argument("--rate", type=float, default=200.0, help="demo events per second")
    parser.add_argument("--seed", type=int, default=7, help="the demo's seed")
    parser.add_argument(
        "--queries-per-second", type=float, default=4.0, help="API query load (0: none)"
    )
    parser.add_argument("--prometheus-port", type=int, default=19090)
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "dashboard.png")
    parser.add_argument(
        "--render-only", action="store_true", help="draw the last run again, no new run"
    )
    args = parser.parse_args(argv)
    try:
        return run(args)
    except RuntimeError as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

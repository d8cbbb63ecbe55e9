"""Throughput and latency of the law-enforcement query API over the Redis serving store.

Run from the repository root: ``python bench/bench_api.py [--subjects 100000] [--seconds 10]``

What it does, in one run:

1. starts a Redis of its own (``ops.services.LocalRedis``, free port, no persistence) and fills
   it with ``--subjects`` subjects through the serving-store sink's own write path
   (``StoreWriter``: the Lua compare-and-set script, one pipeline per batch of 500): 60 %
   vehicles (each with a carrier and two recent drivers), 20 % carriers, 20 % drivers, 5 % of
   them blacklisted;
2. starts the API in a subprocess, one process, through its entry point ``run_api`` (uvloop);
3. from this process (uvloop, garbage collector off) measures, each phase bounded by
   ``--seconds``:

   - **baseline**: a bare ``redis.asyncio`` loop, ``HGET`` of a subject's answer, 16 tasks;
   - **max single lookups/s**: ``GET /v1/vehicles/{plate}`` over 16 keep-alive connections,
     closed loop, with ``aiohttp.ClientSession``; and again with a minimal raw HTTP/1.1 client
     (a Python client spends more CPU per request than the server, and they share the cores);
     and again with ``wrk`` (C, one thread, its own process: ``apt-get install wrk``; the phase
     is left out when it is not on PATH) over ``--wrk-connections`` (64: many terminals at
     once), during the ingest below: on two cores this is the figure that shows the server
     rather than the client;
   - **paced**: single lookups at ``--rate`` requests/s, open loop (latency counted from the
     scheduled send time, so a stall is not hidden), p50/p99/p99.9;
   - **batch**: ``POST /v1/lookup`` of 100 identifiers (vehicles, carriers, drivers), 4
     connections, identifiers/s;

   with ``--ingest-rate`` snapshots/s written to the store in the background by another process
   through the same write path (the Kafka broker and the faust worker are not run: on the
   benchmark machine they would take the cores the API is measured on);
4. prints the figures and writes the ``## Lookup API`` section of BENCHMARKS.md (``--no-write``
   to leave it), keeping the other sections; with ``--json``, also one JSON line for
   ``bench/run_all.py`` (see its docstring).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import random
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from api.auth import hash_key  # noqa: E402
from ops.services import LocalRedis, free_port  # noqa: E402
from processors.identifiers import resident_id_check_digit, uscc_check_character  # noqa: E402
from sinks.serving_store import (  # noqa: E402
    ServingStoreLayout,
    ServingStoreMetrics,
    StoreWriter,
    connect_redis,
)

BENCH_KEY = "bench-key-0123456789abcdefghijklmnopqrstuvwxyz"
SECTION = "## Lookup API"
AS_OF = datetime(2026, 6, 1, tzinfo=UTC)


# --- the data --------------------------------------------------------------------------------


def uscc(n: int) -> str:
    first17 = f"91371524MA3C{n:05d}"
    return first17 + uscc_check_character(first17)


def resident_id(n: int) -> str:
    born = date(1970, 1, 1) + timedelta(days=n % 12000)
    first17 = f"371524{born:%Y%m%d}{n // 12000 % 1000:03d}"
    return first17 + resident_id_check_digit(first17)


def plate(n: int) -> str:
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    return f"鲁{letters[n // 100_000 % len(letters)]}{n % 100_000:05d}"


@dataclass(frozen=True)
class Population:
    vehicles: list[str]
    carriers: list[str]
    drivers: list[str]


def population(subjects: int) -> Population:
    n_vehicles = subjects * 6 // 10
    n_carriers = subjects // 5
    n_drivers = subjects - n_vehicles - n_carriers
    return Population(
        [plate(n) for n in range(n_vehicles)],
        [uscc(n) for n in range(n_carriers)],
        [resident_id(n) for n in range(n_drivers)],
    )


def _snapshot(subject: str, listed: bool, carrier: str | None, drivers: list[str]) -> bytes:
    memberships = []
    if listed:
        rule = "overload.vehicle" if subject.startswith("VEHICLE") else "overload.driver"
        memberships.append(
            {
                "list_name": "BLACKLIST",
                "rule_id": rule,
                "policy_version": "2026-04-01",
                "since": "2026-03-10T02:00:00+00:00",
                "evidence_event_ids": [f"ev-{i}" for i in range(4)],
                "evidence_violation_ids": [f"{subject}/det:ev-{i}" for i in range(4)],
                "reason": "4 overload violations within 365 days, more than 3 (公路安全保护条例 "
                "第66条; 交通运输部办公厅 2017 通知 item 1)",
            }
        )
    value = {
        "subject": subject,
        "as_of": AS_OF.isoformat(),
        "policy_version": "2026-04-01",
        "score": 50 if listed else 100,
        "grade": "C" if listed else "AA",
        "memberships": memberships,
        "violations_in_window": {"OVERLOAD": 4 if listed else 0, "INSTIGATION": 0, "OTHER": 0},
        "window_days": 365,
        "carrier": carrier,
        "recent_drivers": drivers,
        "stale_events": 0,
    }
    return orjson.dumps(value)


@dataclass(frozen=True)
class _Record:
    """What the writer reads of an aiokafka ConsumerRecord."""

    key: bytes
    value: bytes
    offset: int


def records(pop: Population, seed: int = 20260601) -> list[_Record]:
    rng = random.Random(seed)
    out: list[tuple[str, bytes]] = []
    for n, p in enumerate(pop.vehicles):
        subject = f"VEHICLE:{p}|YELLOW"
        carrier = f"CARRIER:{pop.carriers[n % len(pop.carriers)]}"
        drivers = [f"DRIVER:{pop.drivers[(2 * n + k) % len(pop.drivers)]}" for k in range(2)]
        out.append((subject, _snapshot(subject, rng.random() < 0.05, carrier, drivers)))
    for c in pop.carriers:
        out.append((f"CARRIER:{c}", _snapshot(f"CARRIER:{c}", rng.random() < 0.05, None, [])))
    for d in pop.drivers:
        out.append((f"DRIVER:{d}", _snapshot(f"DRIVER:{d}", rng.random() < 0.05, None, [])))
    return [_Record(s.encode(), v, i) for i, (s, v) in enumerate(out)]


async def fill(url: str, pop: Population) -> tuple[int, float]:
    """Write every subject through the sink's write path; (subjects, seconds)."""
    redis = connect_redis(url)
    writer = StoreWriter(
        redis,
        metrics=ServingStoreMetrics.create(CollectorRegistry()),
        layout=ServingStoreLayout(),
        snapshots_topic="credit-snapshots",
    )
    all_records = records(pop)
    tp = TopicPartition("credit-snapshots", 0)
    writer.expected[tp] = None
    never = asyncio.Event()
    started = time.perf_counter()
    for i in range(0, len(all_records), 500):
        await writer.write({tp: all_records[i : i + 500]}, never)
    assert await writer.mark_caught_up([tp])
    seconds = time.perf_counter() - started
    subjects = int(await redis.hget("credit:meta", "subjects") or 0)
    await redis.aclose()
    return subjects, seconds


async def ingest(url: str, subjects: int, rate: float, seconds: float) -> None:
    """Rewrite random vehicles' snapshots at ``rate`` per second (a background process)."""
    pop = population(subjects)
    redis = connect_redis(url)
    writer = StoreWriter(
        redis,
        metrics=ServingStoreMetrics.create(CollectorRegistry()),
        layout=ServingStoreLayout(),
        snapshots_topic="credit-snapshots",
    )
    tp = TopicPartition("credit-snapshots", 1)
    # Go on from where an earlier round's ingest left the partition: a writer that expects
    # none would have every batch refused ("Redis holds offset ...") and write nothing.
    stored = await redis.hget(ServingStoreLayout().offsets, f"{tp.topic}:{tp.partition}")
    offset = int(stored) if stored is not None else 0
    writer.expected[tp] = offset if stored is not None else None
    rng = random.Random(7)
    never = asyncio.Event()
    per_batch = max(1, int(rate / 20))
    deadline = time.monotonic() + seconds
    next_at = time.monotonic()
    while time.monotonic() < deadline:
        batch = []
        for _ in range(per_batch):
            n = rng.randrange(len(pop.vehicles))
            subject = f"VEHICLE:{pop.vehicles[n]}|YELLOW"
            carrier = f"CARRIER:{pop.carriers[n % len(pop.carriers)]}"
            value = _snapshot(subject, rng.random() < 0.05, carrier, [])
            batch.append(_Record(subject.encode(), value, offset))
            offset += 1
        await writer.write({tp: batch}, never)
        next_at += per_batch / rate
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    await redis.aclose()


# --- clients ------------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


class _RawConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time, Content-Length bodies."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._waiter: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self._buffer[:end])
        match = re.search(rb"(?i)content-length: *(\d+)", head)
        length = int(match.group(1)) if match else 0
        if len(self._buffer) < end + 4 + length:
            return
        status = int(head[9:12])
        del self._buffer[: end + 4 + length]
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("closed"))

    async def request(self, raw: bytes) -> int:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self._waiter


def raw_get(path: str, port: int) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {BENCH_KEY}\r\n\r\n"
    ).encode()


def vehicle_paths(pop: Population) -> list[str]:
    return [f"/v1/vehicles/{urllib.parse.quote(p)}" for p in pop.vehicles]


@dataclass
class Phase:
    name: str
    requests: int
    seconds: float
    latencies: list[float]
    errors: int
    extra: dict[str, float]
    others: float = float("nan")
    """Cores used meanwhile by processes outside the benchmark (other work on the machine)."""
    percentiles: dict[float, float] | None = None
    """Latency percentiles in seconds, when the client gave those and not ``latencies``."""

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def ms(self, q: float) -> float:
        if self.percentiles is not None:
            return self.percentiles[q] * 1000
        return percentile(self.latencies, q) * 1000


async def closed_loop(
    name: str,
    connections: int,
    seconds: float,
    one: Callable[[int, int], Awaitable[bool]],
) -> Phase:
    """``connections`` workers, each sending its next request when the last one is answered."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal errors
        i = w
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            ok = await one(w, i)
            latencies.append(time.perf_counter() - started)
            errors += not ok
            i += connections

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return Phase(name, len(latencies), elapsed, latencies, errors, {})


async def baseline(url: str, pop: Population, seconds: float, tasks: int) -> Phase:
    redis = connect_redis(url)
    keys = [f"credit:subject:VEHICLE:{p}|YELLOW" for p in pop.vehicles]
    rng = random.Random(1)
    order = [rng.randrange(len(keys)) for _ in range(1 << 16)]

    async def one(_: int, i: int) -> bool:
        return await redis.hget(keys[order[i & 0xFFFF]], "basic") is not None

    phase = await closed_loop("baseline: redis.asyncio HGET, 16 tasks", tasks, seconds, one)
    await redis.aclose()
    return phase


async def aiohttp_saturation(
    port: int, paths: list[str], seconds: float, connections: int
) -> Phase:
    connector = aiohttp.TCPConnector(limit=connections)
    headers = {"Authorization": f"Bearer {BENCH_KEY}"}
    rng = random.Random(2)
    order = [rng.randrange(len(paths)) for _ in range(1 << 16)]
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(base, connector=connector, headers=headers) as session:

        async def one(_: int, i: int) -> bool:
            async with session.get(paths[order[i & 0xFFFF]]) as response:
                await response.read()
                return response.status == 200

        return await closed_loop(
            f"single lookups, aiohttp client, {connections} connections",
            connections,
            seconds,
            one,
        )


async def raw_saturation(port: int, paths: list[str], seconds: float, connections: int) -> Phase:
    loop = asyncio.get_running_loop()
    conns = []
    for _ in range(connections):
        _, protocol = await loop.create_connection(_RawConnection, "127.0.0.1", port)
        conns.append(protocol)
    rng = random.Random(3)
    requests = [raw_get(paths[rng.randrange(len(paths))], port) for _ in range(1 << 14)]

    async def one(w: int, i: int) -> bool:
        return await conns[w].request(requests[i & 0x3FFF]) == 200

    phase = await closed_loop(
        f"single lookups, raw HTTP/1.1 client, {connections} connections",
        connections,
        seconds,
        one,
    )
    for protocol in conns:
        assert protocol.transport is not None
        protocol.transport.close()
    return phase


async def paced(port: int, paths: list[str], seconds: float, rate: float, *, client: str) -> Phase:
    """Open loop: request i is due at start + i/rate, whatever happened to the others; its
    latency counts from then, so a stall of the server (or of the client) is not hidden."""
    rng = random.Random(4)
    latencies: list[float] = []
    errors = 0
    total = int(rate * seconds)
    order = [paths[rng.randrange(len(paths))] for _ in range(total)]
    pending: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()

    async def drive(one: Callable[[float, str], Awaitable[None]]) -> float:
        start = time.perf_counter() + 0.05
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(due, order[i]))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        return time.perf_counter() - start

    if client == "raw":
        idle: list[_RawConnection] = []

        async def raw_one(due: float, path: str) -> None:
            nonlocal errors
            if idle:
                connection = idle.pop()
            else:
                _, connection = await loop.create_connection(_RawConnection, "127.0.0.1", port)
            status = await connection.request(raw_get(path, port))
            latencies.append(time.perf_counter() - due)
            errors += status != 200
            idle.append(connection)

        # Open the connections first, so that connection set-up is not measured.
        for _ in range(32):
            _, connection = await loop.create_connection(_RawConnection, "127.0.0.1", port)
            idle.append(connection)
        elapsed = await drive(raw_one)
        for connection in idle:
            assert connection.transport is not None
            connection.transport.close()
    else:
        connector = aiohttp.TCPConnector(limit=256)
        headers = {"Authorization": f"Bearer {BENCH_KEY}"}
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(base, connector=connector, headers=headers) as session:
            warm = [session.get("/health/live") for _ in range(32)]
            for response in await asyncio.gather(*warm):
                response.release()

            async def aiohttp_one(due: float, path: str) -> None:
                nonlocal errors
                async with session.get(path) as response:
                    await response.read()
                    errors += response.status != 200
                latencies.append(time.perf_counter() - due)

            elapsed = await drive(aiohttp_one)
    latencies.sort()
    return Phase(
        f"single lookups paced at {rate:,.0f} req/s (open loop, {client} client)",
        len(latencies),
        elapsed,
        latencies,
        errors,
        {},
    )


WRK_SCRIPT = """
paths = {%(paths)s}
wrk.headers["Authorization"] = "Bearer %(key)s"
local i = 0
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\n{"requests": %%d, "duration_us": %%d, "errors": %%d, '
    .. '"p50": %%d, "p99": %%d, "p999": %%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"""
"""wrk's Lua script: the bench key, vehicle paths in turn, and a JSON line of results."""


async def wrk_saturation(
    port: int, paths: list[str], seconds: float, connections: int, folder: Path
) -> Phase:
    """Single lookups from ``wrk`` (C, one thread, a process of its own), closed loop. Its CPU
    is in ``extra["client_cpu"]`` (cores), from the children's resource usage."""
    rng = random.Random(6)
    chosen = [paths[rng.randrange(len(paths))] for _ in range(1 << 14)]  # LuaJIT: < 65,536
    script = folder / "wrk.lua"
    script.write_text(
        WRK_SCRIPT % {"paths": ",".join(json.dumps(p) for p in chosen), "key": BENCH_KEY}
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = await asyncio.create_subprocess_exec(
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [line for line in out.decode().splitlines() if line.startswith('{"requests"')]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {out.decode()[-500:]}")
    result = json.loads(lines[-1])
    elapsed = result["duration_us"] / 1e6
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return Phase(
        f"single lookups, wrk (C, own process), {connections} connections",
        result["requests"],
        elapsed,
        [],
        result["errors"],
        {"client_cpu": cpu / elapsed},
        percentiles={q: result[k] / 1e6 for q, k in ((0.5, "p50"), (0.99, "p99"), (0.999, "p999"))},
    )


async def batches(port: int, pop: Population, seconds: float, connections: int, size: int) -> Phase:
    rng = random.Random(5)
    bodies = []
    for _ in range(64):
        queries: list[dict[str, str]] = []
        for _ in range(size):
            r = rng.random()
            if r < 0.6:
                queries.append({"kind": "vehicle", "plate": rng.choice(pop.vehicles)})
            elif r < 0.8:
                queries.append({"kind": "carrier", "uscc": rng.choice(pop.carriers)})
            else:
                queries.append({"kind": "driver", "id_number": rng.choice(pop.drivers)})
        bodies.append(orjson.dumps({"queries": queries}))
    connector = aiohttp.TCPConnector(limit=connections)
    headers = {"Authorization": f"Bearer {BENCH_KEY}", "Content-Type": "application/json"}
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(base, connector=connector, headers=headers) as session:

        async def one(_: int, i: int) -> bool:
            async with session.post("/v1/lookup", data=bodies[i % len(bodies)]) as response:
                await response.read()
                return response.status == 200

        phase = await closed_loop(
            f"batch lookups of {size} ids, {connections} connections", connections, seconds, one
        )
    phase.extra["ids_per_second"] = phase.rate * size
    return phase


# --- the API process ---------------------------------------------------------------------------


async def start_api(redis_url: str, keys_file: Path, port: int) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "CREDIT_REDIS_URL": redis_url,
        "CREDIT_API_PORT": str(port),
        "CREDIT_API_KEYS_FILE": str(keys_file),
        "CREDIT_BIND_HOST": "127.0.0.1",
        "PYTHONPATH": str(REPO),
    }
    code = "from api.app import run_api; from streams.settings import Settings; run_api(Settings())"
    return await asyncio.create_subprocess_exec(sys.executable, "-c", code, env=env, cwd=REPO)


async def wait_ready(port: int, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"http://127.0.0.1:{port}/health/ready") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the API did not become ready")


def machine_cpu_seconds() -> float:
    """CPU seconds every process of the machine used so far (Linux /proc/stat, all cores)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(v) for i, v in enumerate(fields[:8]) if i not in (3, 4))  # not idle, iowait
    return busy / os.sysconf("SC_CLK_TCK")


async def wait_until_quiet(max_busy: float, patience: float) -> float:
    """Wait (at most ``patience`` s) until the machine's other work uses less than ``max_busy``
    cores over 5 s; the busy cores measured last."""
    deadline = time.monotonic() + patience
    while True:
        before = machine_cpu_seconds()
        await asyncio.sleep(5)
        busy = (machine_cpu_seconds() - before) / 5
        if busy <= max_busy or time.monotonic() > deadline:
            return busy
        print(f"other processes use {busy:.2f} cores; waiting for a quieter machine")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- profile ------------------------------------------------------------------------------------

# Where a CPU sample of the API process is, by the function it was in (its leaf frame).
API_CODE = "the API's own code (keys, rate, identifiers, answers; with the C it calls)"
_NATIVE_IO = (
    "run_api (api/app.py",  # native code under the loop: uvloop, epoll, recv
    "run_app (aiohttp/web.py",  # the same, when the API ran on aiohttp's web server
    "_Connection._write (api/http.py",  # transport.write of a response: send()
    "StreamWriter._writelines (aiohttp/http_writer.py",  # the same, on aiohttp's web server
    "StreamWriter.writelines (asyncio/streams.py",  # a Redis command's send() (redis-py)
    "_Connection.send (api/store.py",  # a script call's send() (the API's own connection)
)
REDIS_CLIENT = (
    "Redis client (packing commands, parsing replies: api/store.py's connection, hiredis)"
)
HTTP_LAYER = "HTTP (api/http.py and aiohttp's C request parser under it; yarl URLs)"
_LAYERS = (
    ("api/store.py", REDIS_CLIENT, "_Connection."),  # its connection: hiredis parsing under it
    ("api/http.py", HTTP_LAYER, ""),
    ("api/", API_CODE, ""),
    ("processors/", API_CODE, ""),
    ("redis/", REDIS_CLIENT, ""),
    ("hiredis", REDIS_CLIENT, ""),
    ("prometheus_client/", "metrics", ""),
    ("aiohttp/", "aiohttp (parsing, routing, building responses)", ""),
    ("yarl/", HTTP_LAYER, ""),
    ("multidict/", "aiohttp (parsing, routing, building responses)", ""),
)
NATIVE_IO = "uvloop and socket system calls (sends of responses and Redis commands)"


def classify(leaf: str) -> str:
    if leaf.startswith(_NATIVE_IO):  # a sample in native code is charged to its caller
        return NATIVE_IO
    where = leaf[leaf.rfind("(") + 1 :]
    for prefix, layer, function in _LAYERS:
        in_file = where.startswith(prefix) or f"/{prefix}" in where or leaf.startswith(prefix)
        if in_file and leaf.startswith(function):
            return layer
    return "asyncio and the rest of Python"


async def profile(
    pid: int, run: Awaitable[Phase], seconds: float, folder: Path
) -> dict[str, float]:
    """Shares of the API process's CPU samples by layer while ``run`` loads it (py-spy)."""
    out = folder / "profile.txt"
    spy = await asyncio.create_subprocess_exec(
        "py-spy",
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        "250",
        "--format",
        "raw",
        "--output",
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.sleep(0.5)
    await run
    await spy.wait()
    counts: dict[str, float] = {}
    total = 0
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        layer = classify(stack.split(";")[-1])
        counts[layer] = counts.get(layer, 0) + int(n)
        total += int(n)
    return {layer: n / total for layer, n in sorted(counts.items(), key=lambda kv: -kv[1])}


# --- report -------------------------------------------------------------------------------------


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.release()} ({platform.machine()}), {cpu}, "
        f"os.cpu_count()={os.cpu_count()}; CPython {platform.python_version()}, "
        f"aiohttp {aiohttp.__version__}"
    )


def write_section(path: Path, section: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start = text.find(f"\n{SECTION}\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        following = text.find("\n## ", start + len(SECTION) + 2)
        tail = "" if following < 0 else text[following:]
        text = text[: start + 1] + section.rstrip("\n") + "\n" + tail
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    gc.disable()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-api-") as folder:
        tmp = Path(folder)
        redis = LocalRedis(tmp / "redis").start()
        api: asyncio.subprocess.Process | None = None
        ingest_proc: asyncio.subprocess.Process | None = None
        try:
            pop = population(args.subjects)
            subjects, fill_seconds = await fill(redis.url, pop)
            results["subjects"] = subjects
            results["fill_seconds"] = fill_seconds
            print(
                f"filled {subjects:,} subjects in {fill_seconds:.1f} s "
                f"({subjects / fill_seconds:,.0f} snapshots/s through the sink's write path)"
            )
            keys_file = tmp / "keys.json"
            keys_file.write_text(
                json.dumps(
                    {
                        "keys": [
                            {
                                "id": "bench",
                                "agency": "benchmark",
                                "sha256": hash_key(BENCH_KEY),
                                "scopes": ["basic"],
                                "rate_per_second": 1e9,
                            }
                        ]
                    }
                )
            )
            port = free_port()
            api = await start_api(redis.url, keys_file, port)
            await wait_ready(port)
            paths = vehicle_paths(pop)
            # Warm-up: caches of the identifier checks, connections, the script.
            await raw_saturation(port, paths, 1.0, args.connections)

            redis_pid = int(redis.pid_file.read_text())
            ours = [os.getpid(), api.pid, redis_pid]

            async def measured(phase: Awaitable[Phase]) -> Phase:
                """The phase, with the CPU of the API and of the client (this process, or wrk),
                and the CPU used outside the benchmark."""
                pids = ours + ([ingest_proc.pid] if ingest_proc is not None else [])
                api0 = cpu_seconds(api.pid)
                client0 = cpu_seconds(os.getpid())
                ours0 = sum(cpu_seconds(pid) for pid in pids)
                machine0 = machine_cpu_seconds()
                done = await phase
                ours1 = sum(cpu_seconds(pid) for pid in pids)
                done.extra["server_cpu"] = (cpu_seconds(api.pid) - api0) / done.seconds
                wrk_cpu = done.extra.get("client_cpu", 0.0) * done.seconds  # a child process
                others = (machine_cpu_seconds() - machine0) - (ours1 - ours0) - wrk_cpu
                done.others = max(0.0, others / done.seconds)
                if "client_cpu" not in done.extra:
                    done.extra["client_cpu"] = (cpu_seconds(os.getpid()) - client0) / done.seconds
                return done

            use_wrk = shutil.which("wrk") is not None
            if not use_wrk:
                print("wrk is not on PATH (apt-get install wrk): its phase is left out")

            rounds: list[list[Phase]] = []
            for number in range(1, args.rounds + 1):
                if args.quiet_patience > 0:  # before each round: the machine may be shared
                    busy = await wait_until_quiet(0.15, args.quiet_patience)
                    print(f"other processes use {busy:.2f} cores; starting")
                print(f"round {number} of {args.rounds}")
                phases = [
                    await measured(baseline(redis.url, pop, args.seconds, 16)),
                    await measured(aiohttp_saturation(port, paths, args.seconds, args.connections)),
                    await measured(raw_saturation(port, paths, args.seconds, args.connections)),
                ]
                if args.ingest_rate > 0:
                    ingest_proc = await asyncio.create_subprocess_exec(
                        sys.executable,
                        __file__,
                        "--ingest-only",
                        redis.url,
                        "--subjects",
                        str(args.subjects),
                        "--ingest-rate",
                        str(args.ingest_rate),
                        "--seconds",
                        str(10 * args.seconds + 60),  # ended below, after the paced phases
                        cwd=REPO,
                    )
                    await asyncio.sleep(1.0)
                wrk_phase = None
                if use_wrk:
                    wrk_phase = await measured(
                        wrk_saturation(port, paths, args.seconds, args.wrk_connections, tmp)
                    )
                    if ingest_proc is not None:
                        wrk_phase.name += ", during ingest"
                for client in ("raw", "aiohttp"):
                    phases.append(
                        await measured(paced(port, paths, args.seconds, args.rate, client=client))
                    )
                if ingest_proc is not None:
                    ingest_proc.terminate()
                    await asyncio.wait_for(ingest_proc.wait(), 60)
                    ingest_proc = None
                phases.append(
                    await measured(
                        batches(port, pop, args.seconds, args.batch_connections, args.batch)
                    )
                )
                if wrk_phase is not None:  # last, so that the first six keep their places
                    phases.append(wrk_phase)
                rounds.append(phases)
            results["rounds"] = rounds
            if args.profile and shutil.which("py-spy"):
                seconds = min(args.seconds, 8.0)
                results["profile"] = await profile(
                    api.pid,
                    wrk_saturation(port, paths, seconds, args.wrk_connections, tmp)
                    if use_wrk
                    else raw_saturation(port, paths, seconds, args.connections),
                    seconds,
                    tmp,
                )
                results["profile_client"] = "wrk" if use_wrk else "raw"
        finally:
            if ingest_proc is not None:
                ingest_proc.terminate()
                await ingest_proc.wait()
            if api is not None:
                api.terminate()
                await asyncio.wait_for(api.wait(), 20)
            redis.stop()
    return results


@dataclass(frozen=True)
class Summary:
    """One phase over the rounds: medians, and the best round."""

    name: str
    rate: float
    best_rate: float
    p50: float
    p99: float
    best_p99: float
    p999: float
    errors: int
    api_cpu: float | None
    others: float
    ids_per_second: float | None
    client_cpu: float | None = None

    @classmethod
    def of(cls, phases: Sequence[Phase]) -> Summary:
        median = statistics.median
        ids = [p.extra["ids_per_second"] for p in phases if "ids_per_second" in p.extra]
        cpu = [p.extra["server_cpu"] for p in phases if "server_cpu" in p.extra]
        client = [p.extra["client_cpu"] for p in phases if "client_cpu" in p.extra]
        return cls(
            name=phases[0].name,
            rate=median(p.rate for p in phases),
            best_rate=max(p.rate for p in phases),
            p50=median(p.ms(0.5) for p in phases),
            p99=median(p.ms(0.99) for p in phases),
            best_p99=min(p.ms(0.99) for p in phases),
            p999=median(p.ms(0.999) for p in phases),
            errors=sum(p.errors for p in phases),
            api_cpu=median(cpu) if cpu else None,
            others=median(p.others for p in phases),
            ids_per_second=median(ids) if ids else None,
            client_cpu=median(client) if client else None,
        )


def report(args: argparse.Namespace, results: dict[str, Any]) -> str:
    rounds: list[list[Phase]] = results["rounds"]
    summaries = [Summary.of([r[i] for r in rounds]) for i in range(len(rounds[0]))]
    base, aio, raw, paced_raw, paced_aiohttp, batch = summaries[:6]
    wrk = summaries[6] if len(summaries) > 6 else None
    shown = [base, aio, raw, *([wrk] if wrk else []), paced_raw, paced_aiohttp, batch]
    now = datetime.now(UTC)
    load = os.getloadavg()
    command = (
        f"python bench/bench_api.py --subjects {args.subjects} --seconds {args.seconds:g} "
        f"--rounds {args.rounds} --rate {args.rate:g} --ingest-rate {args.ingest_rate:g}"
        f" --wrk-connections {args.wrk_connections}"
        + (f" --quiet-patience {args.quiet_patience:g}" if args.quiet_patience else "")
    )
    lines = [
        SECTION,
        "",
        f"Reproduce from the repository root: `{command}`",
        "",
        f"- Date: {now:%Y-%m-%d}; machine: {machine()}; load average "
        f"{load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} when it ended.",
        f"- Store: {results['subjects']:,} subjects (60 % vehicles with a carrier and two "
        "drivers, 20 % carriers, 20 % drivers, 5 % blacklisted) in a Redis of its own, "
        f"written through the sink's write path in {results['fill_seconds']:.1f} s "
        f"({results['subjects'] / results['fill_seconds']:,.0f} snapshots/s).",
        "- API: one process (`run_api`: api/http.py's HTTP/1.1 server with aiohttp's C request "
        "parser, uvloop), `basic` scope; every lookup goes "
        "through the one Lua call that also appends its audit entry (concurrent lookups share "
        "a call, pipelined on the API's own Redis connection). Server, Redis and the load "
        "client share the 2 cores; the Python clients run in this benchmark's process (uvloop, "
        "garbage collector off) and spend more CPU per request than the server, wrk (C, one "
        "thread) runs in a process of its own and spends little: its phase is the one that "
        "shows what the server can do.",
        f"- Method: {args.rounds} rounds of the {len(shown)} phases in turn, {args.seconds:g} s "
        "each; figures are medians over the rounds, with the best round in brackets.",
        f"- Ingest during the {'wrk and ' if wrk else ''}paced phases: "
        f"{args.ingest_rate:,.0f} snapshots/s rewritten in "
        "the background through the sink's write path (another process). The Kafka broker and "
        "the worker were not run alongside: on this machine they would take the cores being "
        "measured."
        if args.ingest_rate > 0
        else "- No ingest ran during the phases.",
        "",
        "| phase | requests/s | p50 ms | p99 ms | p99.9 ms | errors | API CPU "
        "| API µs/request | client CPU | other load | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for summary in shown:
        note = ""
        if summary.ids_per_second is not None:
            note = f"**{summary.ids_per_second:,.0f} ids/s**"
        cpu = per_request = client = ""
        if summary.api_cpu is not None and summary is not base:
            cpu = f"{summary.api_cpu:.0%}"
            per_request = f"{summary.api_cpu / summary.rate * 1e6:,.0f}"
        if summary.client_cpu is not None:
            client = f"{summary.client_cpu:.0%}"
        lines.append(
            f"| {summary.name} | {summary.rate:,.0f} ({summary.best_rate:,.0f}) "
            f"| {summary.p50:.2f} | {summary.p99:.2f} ({summary.best_p99:.2f}) "
            f"| {summary.p999:.2f} | {summary.errors} | {cpu} | {per_request} | {client} "
            f"| {summary.others:.2f} | {note} |"
        )
    # The throughput target is judged on the median round of the best client.
    clients = [(aio, "aiohttp client"), (raw, "raw client"), *([(wrk, "wrk")] if wrk else [])]
    single, single_client = max(clients, key=lambda pair: pair[0].rate)
    wrk_ratio = f", {wrk.rate / base.rate:.2f} (wrk)" if wrk else ""
    lines += [
        "",
        "API CPU: the API process's CPU time over the phase, in cores; API µs/request: that "
        "per request answered (the figure least moved by other load). Client CPU: the load "
        "client's (in the baseline: the Redis loop's). Other load: cores used meanwhile by "
        "processes outside the benchmark (other work on the shared machine, out of 2); figures "
        "taken with other load well above 0 are pessimistic.",
        "",
        f"Ratios to the bare Redis loop ({base.rate:,.0f} HGET/s): single lookups "
        f"{aio.rate / base.rate:.2f} (aiohttp client), {raw.rate / base.rate:.2f} (raw client)"
        f"{wrk_ratio}; batch identifiers {(batch.ids_per_second or 0) / base.rate:.2f}.",
        "",
        f"Targets: p99 under 5 ms at {args.rate:,.0f} req/s — "
        f"**{'met' if paced_raw.p99 < 5.0 else 'missed'}** (median {paced_raw.p99:.2f} ms, best "
        f"round {paced_raw.best_p99:.2f} ms, raw client; {paced_aiohttp.p99:.2f} ms with the "
        f"aiohttp client); ≥ 10,000 single lookups/s per API process — "
        f"**{'met' if single.rate >= 10_000 else 'missed'}** (median {single.rate:,.0f} req/s, "
        f"best round {single.best_rate:,.0f}, {single_client}).",
    ]
    shares: dict[str, float] | None = results.get("profile")
    if shares:
        lines += [
            "",
            "Where the API process's CPU goes at saturation (py-spy, 250 samples/s, "
            f"{results.get('profile_client', 'raw')} client, leaf frames):",
            "",
            *(f"- {layer}: {share:.0%}" for layer, share in shares.items()),
        ]
    return "\n".join(lines) + "\n"


def json_summary(args: argparse.Namespace, results: dict[str, Any]) -> dict[str, Any]:
    """The machine-readable result: medians over the rounds, against the bare Redis loop."""
    rounds: list[list[Phase]] = results["rounds"]
    summaries = [Summary.of([r[i] for r in rounds]) for i in range(len(rounds[0]))]
    base, aio, raw, paced_raw, _, batch = summaries[:6]
    wrk = summaries[6] if len(summaries) > 6 else None
    hget = {"name": "redis.asyncio HGET, 16 tasks", "value": base.rate, "unit": "requests/s"}

    def row(name: str, value: float, unit: str, target: str | None, met: bool | None) -> Any:
        latency = unit == "ms"  # no baseline for a latency
        return {
            "name": name,
            "value": value,
            "unit": unit,
            "baseline": None if latency else hget,
            "ratio": None if latency else value / base.rate,
            "target": target,
            "met": met,
        }

    return {
        "benchmark": "api",
        "results": [
            row(
                "single lookups, raw client", raw.rate, "requests/s", "≥ 10,000/s", raw.rate >= 1e4
            ),
            row("single lookups, aiohttp client", aio.rate, "requests/s", None, None),
            row(
                f"p99 at {args.rate:,.0f} req/s, raw client",
                paced_raw.p99,
                "ms",
                "< 5 ms",
                paced_raw.p99 < 5.0,
            ),
            row(
                f"batch lookups of {args.batch} ids",
                batch.ids_per_second or 0.0,
                "ids/s",
                None,
                None,
            ),
            *(
                [row("single lookups, wrk", wrk.rate, "requests/s", "≥ 10,000/s", wrk.rate >= 1e4)]
                if wrk is not None
                else []
            ),
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--wrk-connections",
        type=int,
        default=64,
        help="connections of the wrk phase (as many officers' terminals at once)",
    )
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--batch-connections", type=int, default=4)
    parser.add_argument("--ingest-rate", type=float, default=500.0)
    parser.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md alone")
    parser.add_argument("--json", action="store_true", help="also print one JSON result line")
    parser.add_argument(
        "--no-profile",
        dest="profile",
        action="store_false",
        help="skip the py-spy profile of the API (taken when py-spy is on PATH)",
    )
    parser.add_argument(
        "--quiet-patience",
        type=float,
        default=0.0,
        help="before each round, wait up to this many seconds for other processes to use under"
        " 0.15 cores",
    )
    parser.add_argument("--ingest-only", metavar="REDIS_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        uvloop = None
    runner = uvloop.run if uvloop is not None else asyncio.run
    if args.ingest_only:
        runner(ingest(args.ingest_only, args.subjects, args.ingest_rate, args.seconds))
        return
    results = runner(run(args))
    section = report(args, results)
    print()
    print(section)
    if not args.no_write:
        write_section(REPO / "BENCHMARKS.md", section)
        print("wrote the Lookup API section of BENCHMARKS.md")
    if args.json:
        print(json.dumps(json_summary(args, results)))


if __name__ == "__main__":
    main()

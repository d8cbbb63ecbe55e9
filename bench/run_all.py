"""Run every benchmark in bench/ and write their summary at the top of BENCHMARKS.md.

Run from the repository root::

    python bench/run_all.py            # --quick: short settings, a few minutes
    python bench/run_all.py --full     # the documented commands (about an hour)
    python bench/run_all.py --only rules,decode_validate --no-write

Each benchmark runs as its own process (``python bench/<script> ... --json``) and ends its output
with one JSON line, the only thing this script reads from it::

    {"benchmark": "rules", "results": [{"name": "route + apply (first hop)", "value": 81000.0,
     "unit": "events/s", "baseline": {"name": "dict counter update", "value": 9.1e6,
     "unit": "events/s"}, "ratio": 0.0089, "target": null, "met": null}, ...]}

``baseline``, ``ratio``, ``target`` and ``met`` are null where a figure has none. Output goes to
the terminal as it comes and to ``.run/bench/<name>.log``.

What is written: only the block between ``<!-- bench:summary:start -->`` and
``<!-- bench:summary:end -->`` (inserted under the title when missing): the machine (CPU model,
cores, RAM, Python), the date, the mode, and per benchmark each figure with its baseline and
ratio. With ``--quick`` the scripts are told not to touch their own sections, so the hand-written
analysis and the documented figures stay as they are; with ``--full`` the scripts also rewrite
their own sections, as their documented commands do (``--summary-only`` prevents that).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parent.parent
BENCHMARKS_FILE = REPOSITORY / "BENCHMARKS.md"
LOG_DIR = REPOSITORY / ".run" / "bench"
START_MARKER = "<!-- bench:summary:start -->"
END_MARKER = "<!-- bench:summary:end -->"
SUMMARY_TITLE = "## Summary"


@dataclass(frozen=True)
class Benchmark:
    """One script of bench/ and how to run it in each mode."""

    name: str
    """The ``benchmark`` field of its JSON line."""
    title: str
    script: str
    quick: str
    """Arguments of the quick run."""
    full: str
    """Arguments of the documented run."""
    leave_section: str = ""
    """Flags that keep the script from rewriting its own section of BENCHMARKS.md."""
    write_section: str = ""
    """Flags that make it rewrite its section (for scripts that do not by default)."""

    def command(self, full: bool, sections: bool) -> list[str]:
        """The command line: the mode's settings, section handling and ``--json``."""
        args = (self.full if full else self.quick).split()
        args += (self.write_section if sections else self.leave_section).split()
        return [sys.executable, f"bench/{self.script}", *args, "--json"]


BENCHMARKS = (
    Benchmark(
        "decode_validate",
        "Decode and validate",
        "bench_decode_validate.py",
        quick="--records 5000 --rounds 3",
        full="--records 50000 --rounds 5",
        leave_section="--no-write",
    ),
    Benchmark(
        "rules",
        "Credit rules (no Kafka)",
        "bench_rules.py",
        quick="--events 20000 --vehicles 4000",
        full="--events 100000 --vehicles 20000",
    ),
    Benchmark(
        "worker",
        "Stream worker",
        "bench_worker.py",
        quick="--events 5000 --latency-rates 250 --latency-seconds 5 --fast-commit 0"
        " --skip-rocksdb --skip-variant --skip-profile --timeout 300",
        full="--events 50000",
        leave_section="--no-write",
    ),
    Benchmark(
        "api",
        "Lookup API",
        "bench_api.py",
        quick="--subjects 10000 --seconds 2 --rounds 1 --rate 500 --ingest-rate 100 --no-profile",
        full="--subjects 100000 --seconds 10 --rounds 3 --rate 2000 --ingest-rate 500"
        " --quiet-patience 1200",
        leave_section="--no-write",
    ),
    Benchmark(
        "publisher",
        "Publication",
        "bench_publisher.py",
        quick="--backlog 500 --rate 20 --seconds 5 --rounds 1",
        full="--backlog 5000 --rate 50 --seconds 30 --concurrency 8 --rounds 3",
        write_section="--update-benchmarks",
    ),
)
"""Quick settings take a few minutes in all on a 2-core machine; full ones are the commands
BENCHMARKS.md documents."""


@dataclass(frozen=True)
class Outcome:
    """What one benchmark run gave: its JSON results, or why there are none."""

    benchmark: Benchmark
    command: str
    seconds: float
    results: tuple[dict[str, Any], ...] = ()
    error: str | None = None


Runner = Callable[[Sequence[str], Path], tuple[int, str]]
"""Runs a command from the repository root, writing its output to a log; (exit code, stdout)."""


def run_streaming(command: Sequence[str], log: Path) -> tuple[int, str]:
    """Run ``command``, echoing its output as it comes and keeping it in ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    # The scripts import this checkout's packages, whatever copy is installed.
    paths = [str(REPOSITORY), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    with log.open("w", encoding="utf-8") as sink:
        process = subprocess.Popen(
            command,
            cwd=REPOSITORY,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
        )
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            sink.write(line)
            print(f"  {line}", end="", flush=True)
        return process.wait(), "".join(lines)


def parse_json_line(output: str, name: str) -> tuple[dict[str, Any], ...]:
    """The results of the last JSON line of ``output`` that names benchmark ``name``.

    :raises ValueError: when there is none, or its results are not what the docstring says.
    """
    for line in reversed(output.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(data, dict) or data.get("benchmark") != name:
            continue
        results = data.get("results")
        if not isinstance(results, list) or not results:
            raise ValueError(f"the JSON line of {name} has no results")
        for result in results:
            if not isinstance(result, dict) or not {"name", "value", "unit"} <= result.keys():
                raise ValueError(f"a result of {name} lacks name, value or unit: {result!r}")
        return tuple(results)
    raise ValueError(f"no JSON result line for {name} in its output")


def run_benchmark(benchmark: Benchmark, command: list[str], runner: Runner) -> Outcome:
    """Run one benchmark and read its JSON line; a failure becomes the outcome's error."""
    shown = " ".join(["python", *command[1:]])
    started = time.monotonic()
    code, output = runner(command, LOG_DIR / f"{benchmark.name}.log")
    seconds = time.monotonic() - started
    try:
        results = parse_json_line(output, benchmark.name)
    except ValueError as exc:
        reason = f"exit code {code}; {exc}" if code else str(exc)
        return Outcome(benchmark, shown, seconds, error=reason)
    if code:
        return Outcome(benchmark, shown, seconds, results, error=f"exit code {code}")
    return Outcome(benchmark, shown, seconds, results)


# --- the machine ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Machine:
    cpu: str
    cores: int
    usable_cores: int
    ram_bytes: int | None
    python: str
    system: str
    load: tuple[float, float, float]
    commit: str | None


def _first_value(path: Path, key: str) -> str | None:
    if not path.exists():
        return None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(key):
            return line.split(":", 1)[1].strip()
    return None


def _commit() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPOSITORY,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPOSITORY,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head} (with uncommitted changes)" if status.strip() else head


def describe_machine() -> Machine:
    """CPU model, cores, RAM, Python, OS, load average and commit of this run."""
    cpu = _first_value(Path("/proc/cpuinfo"), "model name") or platform.processor() or "unknown"
    memory = _first_value(Path("/proc/meminfo"), "MemTotal")  # "16316412 kB"
    ram = int(memory.split()[0]) * 1024 if memory else None
    cores = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return Machine(
        cpu=cpu,
        cores=cores,
        usable_cores=usable,
        ram_bytes=ram,
        python=f"{platform.python_implementation()} {platform.python_version()}",
        system=f"{platform.system()} {platform.release()} ({platform.machine()})",
        load=os.getloadavg(),
        commit=_commit(),
    )


# --- the summary ----------------------------------------------------------------------------------


def format_value(value: Any, unit: str) -> str:
    """``44,461 records/s``, ``7.16 ms``; a dash when there is no number."""
    if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
        return "–"
    if abs(value) >= 100:
        number = f"{value:,.0f}"
    elif abs(value) >= 10:
        number = f"{value:.1f}"
    else:
        number = f"{value:.2f}"
    return f"{number} {unit}"


def format_ratio(ratio: Any) -> str:
    """Two decimals, or two significant digits below 0.1 (``0.0071``)."""
    if not isinstance(ratio, int | float) or isinstance(ratio, bool) or math.isnan(ratio):
        return "–"
    return f"{ratio:.2f}" if abs(ratio) >= 0.1 else f"{ratio:.2g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row(title: str, result: dict[str, Any]) -> str:
    baseline = result.get("baseline")
    if isinstance(baseline, dict):
        against = f"{format_value(baseline.get('value'), str(baseline.get('unit', '')))} "
        against += f"({baseline.get('name', '')})"
    else:
        against = "–"
    target = result.get("target")
    met = result.get("met")
    verdict = "" if met is None else (": met" if met else ": **missed**")
    cells = [
        title,
        str(result["name"]),
        f"**{format_value(result['value'], str(result['unit']))}**",
        against,
        format_ratio(result.get("ratio")),
        f"{target}{verdict}" if target else "–",
    ]
    return "| " + " | ".join(_cell(cell) for cell in cells) + " |"


def render_summary(
    outcomes: Sequence[Outcome], machine: Machine, started: datetime, full: bool, seconds: float
) -> str:
    """The block between the markers, markers included."""
    mode = "--full" if full else "--quick"
    ram = f"{machine.ram_bytes / 2**30:.1f} GiB RAM" if machine.ram_bytes else "RAM unknown"
    cores = f"{machine.cores} cores"
    if machine.usable_cores != machine.cores:
        cores += f" ({machine.usable_cores} usable by this process)"
    load = ", ".join(f"{value:.2f}" for value in machine.load)
    caveat = (
        "The documented commands; each benchmark's section below was rewritten by the same run."
        if full
        else "Quick settings: short runs, figures indicative only. The sections below hold the "
        "documented figures (`--full`), their method and analysis."
    )
    lines = [
        START_MARKER,
        SUMMARY_TITLE,
        "",
        f"Generated by `python bench/run_all.py {mode}` on {started:%Y-%m-%d %H:%M} UTC "
        f"(took {seconds / 60:.1f} min). {caveat}",
        "",
        f"- Machine: {machine.cpu}, {cores}, {ram}; {machine.system}; {machine.python}.",
        f"- Load average when the suite started: {load} (the machine may be shared: figures "
        "vary with its load).",
    ]
    if machine.commit:
        lines.append(f"- Commit: {machine.commit}.")
    lines += [
        "",
        "| benchmark | figure | value | baseline | ratio | target |",
        "|---|---|---:|---|---:|---|",
    ]
    for outcome in outcomes:
        title = outcome.benchmark.title
        if outcome.error is not None and not outcome.results:
            lines.append(f"| {_cell(title)} | **failed**: {_cell(outcome.error)} | | | | |")
            continue
        lines += [_row(title, result) for result in outcome.results]
        if outcome.error is not None:
            lines.append(
                f"| {_cell(title)} | **failed** after its results: {_cell(outcome.error)} | | | | |"
            )
    lines += ["", "Commands (from the repository root):", ""]
    lines += [f"- {outcome.benchmark.title}: `{outcome.command}`" for outcome in outcomes]
    lines.append(END_MARKER)
    return "\n".join(lines) + "\n"


def replace_summary(text: str, block: str) -> str:
    """``text`` with the summary block replaced, or inserted under the title; nothing else moves.

    :raises ValueError: when only one of the markers is there, or they are out of order.
    """
    start, end = text.find(START_MARKER), text.find(END_MARKER)
    if start >= 0 and end > start:
        after = end + len(END_MARKER)
        if text[after : after + 1] == "\n":
            after += 1
        return text[:start] + block + text[after:]
    if start >= 0 or end >= 0:
        raise ValueError("BENCHMARKS.md has one summary marker without the other, or in reverse")
    if not text.strip():
        return "# Benchmarks\n\n" + block
    lines = text.splitlines(keepends=True)
    if not lines[0].startswith("# "):
        return block + "\n" + text
    # Under the title, before the first section: a section's script rewrites everything from its
    # title to the next "## ", so the summary must not sit inside one.
    head, rest = lines[0], "".join(lines[1:]).lstrip("\n")
    if not head.endswith("\n"):
        head += "\n"
    return head + "\n" + block + ("\n" + rest if rest else "")


def write_summary(path: Path, block: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    path.write_text(replace_summary(text, block), encoding="utf-8")


# --- the command ----------------------------------------------------------------------------------


def select(only: str | None) -> tuple[Benchmark, ...]:
    """The benchmarks named in ``only`` (comma separated), in suite order; all when None."""
    if not only:
        return BENCHMARKS
    names = {name.strip() for name in only.split(",") if name.strip()}
    unknown = names - {b.name for b in BENCHMARKS}
    if unknown:
        known = ", ".join(b.name for b in BENCHMARKS)
        raise SystemExit(f"unknown benchmark(s) {', '.join(sorted(unknown))}; known: {known}")
    return tuple(b for b in BENCHMARKS if b.name in names)


def run_suite(
    benchmarks: Sequence[Benchmark],
    *,
    full: bool,
    sections: bool,
    runner: Runner = run_streaming,
    benchmarks_file: Path | None = BENCHMARKS_FILE,
    machine: Machine | None = None,
) -> tuple[list[Outcome], str]:
    """Run ``benchmarks`` one after another; write the summary to ``benchmarks_file`` unless
    None. Returns the outcomes and the summary block."""
    machine = machine or describe_machine()
    started = datetime.now(UTC)
    began = time.monotonic()
    outcomes = []
    for number, benchmark in enumerate(benchmarks, 1):
        command = benchmark.command(full, sections)
        print(
            f"[{number}/{len(benchmarks)}] {benchmark.title}: {' '.join(command[1:])}", flush=True
        )
        outcome = run_benchmark(benchmark, command, runner)
        state = "failed: " + outcome.error if outcome.error else "done"
        print(f"[{number}/{len(benchmarks)}] {benchmark.title}: {state} ({outcome.seconds:.0f} s)")
        outcomes.append(outcome)
    block = render_summary(outcomes, machine, started, full, time.monotonic() - began)
    if benchmarks_file is not None:
        write_summary(benchmarks_file, block)
    return outcomes, block


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="short settings (the default)")
    mode.add_argument("--full", action="store_true", help="the documented commands")
    parser.add_argument("--only", metavar="NAMES", help="comma separated, e.g. rules,api")
    parser.add_argument(
        "--summary-only",
        action="store_true",
        help="with --full: leave each benchmark's own section of BENCHMARKS.md alone",
    )
    parser.add_argument("--no-write", action="store_true", help="print the summary only")
    args = parser.parse_args(argv)
    benchmarks = select(args.only)
    outcomes, block = run_suite(
        benchmarks,
        full=args.full,
        sections=args.full and not args.summary_only and not args.no_write,
        benchmarks_file=None if args.no_write else BENCHMARKS_FILE,
    )
    print("\n" + block)
    if not args.no_write:
        print(f"summary written to {BENCHMARKS_FILE}")
    return 1 if any(outcome.error for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())

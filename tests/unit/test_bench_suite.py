"""bench/run_all.py on fake outputs: reading each script's JSON line and rewriting only the summary
block of BENCHMARKS.md. No benchmark runs here."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str) -> ModuleType:
    """A script of bench/ as a module (bench/ is not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


suite = _load("run_all")

MACHINE = suite.Machine(
    cpu="Intel(R) Xeon(R) Processor",
    cores=2,
    usable_cores=2,
    ram_bytes=8 * 2**30,
    python="CPython 3.11.7",
    system="Linux 6.18 (x86_64)",
    load=(1.41, 1.40, 1.34),
    commit="c14b679",
)

BENCHMARKS_MD = """# Benchmarks

## Decode and validate

Reproduce from the repository root: `python bench/bench_decode_validate.py --records 50000`

| path | median records/s |
|---|---:|
| (a) baseline | 73,101 |

## Notes on the decode-and-validate figures

Hand-written: what cProfile showed, and what changed.

## Stream worker

**What was tried**: bigger batches.
"""


def _line(name: str, *results: dict[str, Any]) -> str:
    return json.dumps({"benchmark": name, "results": list(results)})


def _result(
    name: str,
    value: float,
    unit: str,
    baseline: float | None = None,
    target: str | None = None,
    met: bool | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "baseline": None if baseline is None else {"name": "base", "value": baseline, "unit": unit},
        "ratio": None if baseline is None else value / baseline,
        "target": target,
        "met": met,
    }


DECODE = _result("decode → map → validate", 44_461.0, "records/s", 73_101.0, "ratio ≥ 0.5", True)
WORKER = _result("input events fully judged", 413.0, "events/s", 57_903.0, "≥ 20,000", False)
LATENCY = _result("send → snapshot p99", 26_126.0, "ms", None, "< 1,000 ms", False)


def _fake_runner(outputs: dict[str, tuple[int, str]]) -> Any:
    """A runner that answers each script with a canned (exit code, output)."""
    calls: list[list[str]] = []

    def run(command: Sequence[str], log: Path) -> tuple[int, str]:
        calls.append(list(command))
        script = Path(command[1]).name
        return outputs[script]

    run.calls = calls  # type: ignore[attr-defined]
    return run


@pytest.mark.parametrize(
    ("output", "expected_names"),
    [
        # Progress lines, a table and a stray JSON object before the result line.
        (
            'building 5,000 events ...\n| a | b |\n{"other": 1}\n'
            + _line("decode_validate", DECODE)
            + "\nwritten to BENCHMARKS.md\n",
            ["decode → map → validate"],
        ),
        # Two result lines: the last one counts.
        (
            _line("decode_validate", _result("old", 1.0, "records/s"))
            + "\n"
            + _line("decode_validate", DECODE),
            ["decode → map → validate"],
        ),
        # Indented, as a logger or a wrapper might print it.
        ("   " + _line("decode_validate", DECODE) + "   \n", ["decode → map → validate"]),
    ],
)
def test_the_last_json_line_of_the_benchmark_is_read(
    output: str, expected_names: list[str]
) -> None:
    """The suite reads the last JSON line naming the benchmark, whatever else was printed."""
    results = suite.parse_json_line(output, "decode_validate")
    assert [r["name"] for r in results] == expected_names


@pytest.mark.parametrize(
    "output",
    [
        "",
        "done in 3 s\n",
        _line("rules", DECODE),  # another benchmark's line
        '{"benchmark": "decode_validate", "results": []}',
        '{"benchmark": "decode_validate", "results": [{"name": "x"}]}',  # no value, no unit
        '{"benchmark": "decode_validate", "results": [',  # cut off by a crash
    ],
)
def test_output_without_a_valid_result_line_is_an_error(output: str) -> None:
    """No (valid) JSON line for the benchmark is an error, never an empty row."""
    with pytest.raises(ValueError):
        suite.parse_json_line(output, "decode_validate")


@pytest.mark.parametrize(
    ("value", "unit", "shown"),
    [
        (44_461.4, "records/s", "44,461 records/s"),
        (7.164, "ms", "7.16 ms"),
        (26_126.0, "ms", "26,126 ms"),
        (12.34, "ms", "12.3 ms"),
        (float("nan"), "ms", "–"),  # a phase too short to measure
        (None, "ms", "–"),
    ],
)
def test_values_are_formatted_for_the_table(value: float | None, unit: str, shown: str) -> None:
    """Thousands separators for rates, two decimals for small figures, a dash for none."""
    assert suite.format_value(value, unit) == shown


@pytest.mark.parametrize(
    ("ratio", "shown"),
    [(0.6482, "0.65"), (1.58, "1.58"), (0.00713, "0.0071"), (None, "–"), (float("nan"), "–")],
)
def test_ratios_keep_two_significant_digits_when_small(ratio: float | None, shown: str) -> None:
    """A worker at 0.7 % of its baseline does not show as 0.00."""
    assert suite.format_ratio(ratio) == shown


def test_summary_lists_machine_and_each_figure_with_baseline_and_ratio(tmp_path: Path) -> None:
    """The block names the machine, the mode, and every figure with its baseline and ratio."""
    runner = _fake_runner(
        {
            "bench_decode_validate.py": (0, "…\n" + _line("decode_validate", DECODE)),
            "bench_worker.py": (0, _line("worker", WORKER, LATENCY)),
        }
    )
    chosen = suite.select("worker,decode_validate")
    outcomes, block = suite.run_suite(
        chosen, full=False, sections=False, runner=runner, benchmarks_file=None, machine=MACHINE
    )
    assert [o.error for o in outcomes] == [None, None]
    assert block.startswith(suite.START_MARKER) and block.rstrip().endswith(suite.END_MARKER)
    assert "Intel(R) Xeon(R) Processor, 2 cores, 8.0 GiB RAM" in block
    assert "CPython 3.11.7" in block and "--quick" in block and "c14b679" in block
    rows = [line for line in block.splitlines() if line.startswith("| Decode") or "Stream" in line]
    assert rows[0] == (
        "| Decode and validate | decode → map → validate | **44,461 records/s** | "
        "73,101 records/s (base) | 0.61 | ratio ≥ 0.5: met |"
    )
    assert "| **413 events/s** | 57,903 events/s (base) | 0.0071 | ≥ 20,000: **missed** |" in block
    assert "| **26,126 ms** | – | – | < 1,000 ms: **missed** |" in block
    # Quick mode: the scripts are told to leave their sections alone, and to print JSON.
    decode_call, worker_call = runner.calls
    assert " ".join(decode_call[1:]) == (
        "bench/bench_decode_validate.py --records 5000 --rounds 3 --no-write --json"
    )
    assert "--no-write" in worker_call and "--skip-profile" in worker_call


def test_full_mode_lets_each_script_rewrite_its_section() -> None:
    """--full runs the documented commands, with the flag that writes each section."""
    by_name = {b.name: b.command(full=True, sections=True)[1:] for b in suite.BENCHMARKS}
    assert " ".join(by_name["decode_validate"]) == (
        "bench/bench_decode_validate.py --records 50000 --rounds 5 --json"
    )
    assert "--update-benchmarks" in by_name["publisher"]
    assert "--no-write" not in by_name["api"] and "--quiet-patience" in by_name["api"]
    summary_only = suite.BENCHMARKS[0].command(full=True, sections=False)
    assert "--no-write" in summary_only


def test_a_failed_benchmark_gets_a_row_saying_why_and_the_others_still_run(
    tmp_path: Path,
) -> None:
    """A crash without a JSON line is reported in its row; the suite goes on and says it failed."""
    runner = _fake_runner(
        {
            "bench_decode_validate.py": (0, _line("decode_validate", DECODE)),
            "bench_rules.py": (1, "Traceback (most recent call last):\n  ...\nKeyError: 'x'\n"),
        }
    )
    target = tmp_path / "BENCHMARKS.md"
    target.write_text(BENCHMARKS_MD, encoding="utf-8")
    outcomes, block = suite.run_suite(
        suite.select("rules,decode_validate"),
        full=False,
        sections=False,
        runner=runner,
        benchmarks_file=target,
        machine=MACHINE,
    )
    assert [o.benchmark.name for o in outcomes] == ["decode_validate", "rules"]
    assert outcomes[1].error is not None and "exit code 1" in outcomes[1].error
    assert "| Credit rules (no Kafka) | **failed**: exit code 1; no JSON result line" in block
    assert "44,461 records/s" in target.read_text(encoding="utf-8")


def test_the_summary_goes_under_the_title_and_every_section_stays_byte_for_byte() -> None:
    """Inserted before the first section (a script rewrites its section up to the next '## ')."""
    block = f"{suite.START_MARKER}\n## Summary\n\nfigures\n{suite.END_MARKER}\n"
    written = suite.replace_summary(BENCHMARKS_MD, block)
    assert written.startswith("# Benchmarks\n\n" + block + "\n## Decode and validate\n")
    assert written.endswith(BENCHMARKS_MD.split("\n\n", 1)[1])


def test_a_second_run_replaces_only_what_is_between_the_markers() -> None:
    """Rewriting is idempotent and leaves the hand-written sections untouched."""
    first = f"{suite.START_MARKER}\n## Summary\n\nold figures\n{suite.END_MARKER}\n"
    second = f"{suite.START_MARKER}\n## Summary\n\nnew figures\n{suite.END_MARKER}\n"
    once = suite.replace_summary(BENCHMARKS_MD, first)
    twice = suite.replace_summary(once, second)
    assert twice == suite.replace_summary(BENCHMARKS_MD, second)
    assert "old figures" not in twice and twice.count(suite.START_MARKER) == 1
    assert suite.replace_summary(twice, second) == twice
    outside = twice.replace(second, "")
    assert outside == once.replace(first, "")
    assert "Hand-written: what cProfile showed" in twice


@pytest.mark.parametrize(
    "text",
    [
        f"# Benchmarks\n\n{suite.START_MARKER}\n## Summary\n",  # start without end
        f"# Benchmarks\n\n{suite.END_MARKER}\n{suite.START_MARKER}\n",  # reversed
    ],
)
def test_a_broken_marker_pair_is_not_guessed_at(text: str) -> None:
    """One marker alone (a hand edit gone wrong) stops the rewrite instead of eating sections."""
    with pytest.raises(ValueError):
        suite.replace_summary(text, f"{suite.START_MARKER}\nx\n{suite.END_MARKER}\n")


def test_an_empty_file_gets_a_title_and_the_summary() -> None:
    """A missing BENCHMARKS.md starts with the title."""
    block = f"{suite.START_MARKER}\nx\n{suite.END_MARKER}\n"
    assert suite.replace_summary("", block) == "# Benchmarks\n\n" + block


def test_unknown_benchmark_names_are_refused() -> None:
    """--only with a typo stops before anything runs."""
    with pytest.raises(SystemExit, match="unknown benchmark"):
        suite.select("rules,wroker")


# --- each script's JSON line, as the suite reads it ---------------------------------------------


def _round_trip(name: str, summary: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    results: tuple[dict[str, Any], ...] = suite.parse_json_line(json.dumps(summary), name)
    return results


def test_rules_json_line_has_both_paths_against_the_baseline() -> None:
    """bench_rules.py --json: first hop and whole pipeline, each with its ratio."""
    results = _round_trip("rules", _load("bench_rules").json_summary(1e6, 2e5, 5e4))
    assert [(r["value"], r["ratio"]) for r in results] == [(2e5, 0.2), (5e4, 0.05)]


def test_decode_validate_json_line_uses_the_per_round_ratio() -> None:
    """bench_decode_validate.py --json: the ratio the section reports, not a ratio of medians."""
    module = _load("bench_decode_validate")
    summary = module.json_summary({"a": 73_101.0, "b": 44_461.0, "c": 52_638.0}, 0.65)
    (result,) = _round_trip("decode_validate", summary)
    assert result["ratio"] == 0.65 and result["met"] is True
    assert result["baseline"]["value"] == 73_101.0


def test_publisher_json_line_reports_throughput_and_p99() -> None:
    """bench_publisher.py --json: no baseline; the p99 in ms against the 10 s target."""
    module = _load("bench_publisher")
    results = _round_trip(
        "publisher", module.json_summary({"rate": 266.0}, {"p99": 0.107, "p50": 0.03})
    )
    assert [r["value"] for r in results] == [266.0, 107.0]
    assert results[1]["met"] is True and results[0]["baseline"] is None


def test_api_json_line_reports_medians_against_the_redis_loop() -> None:
    """bench_api.py --json: single lookups and batch ids against HGET/s; the paced p99 in ms."""
    module = _load("bench_api")

    def phase(name: str, requests: int, latency: float, **extra: float) -> Any:
        return module.Phase(name, requests, 1.0, [latency] * 10, 0, dict(extra))

    rounds = [
        [
            phase("baseline", 10_000, 0.001),
            phase("aiohttp", 4_000, 0.003),
            phase("raw", 6_000, 0.002),
            phase("paced raw", 2_000, 0.007),
            phase("paced aiohttp", 2_000, 0.006),
            phase("batch", 200, 0.02, ids_per_second=20_000.0),
        ]
    ]
    args = argparse.Namespace(rate=2000.0, batch=100)
    results = _round_trip("api", module.json_summary(args, {"rounds": rounds}))
    by_name = {r["name"]: r for r in results}
    assert by_name["single lookups, raw client"]["ratio"] == pytest.approx(0.6)
    assert by_name["single lookups, raw client"]["met"] is False
    assert by_name["p99 at 2,000 req/s, raw client"]["value"] == pytest.approx(7.0)
    assert by_name["batch lookups of 100 ids"]["ratio"] == pytest.approx(2.0)


def test_worker_json_line_reports_the_default_run_and_the_first_latency() -> None:
    """bench_worker.py --json: the first worker run against the consume+decode baseline."""
    module = _load("bench_worker")
    results = module.Results(argparse.Namespace(), "1.0", None)
    results.baselines = [module.BaselineRun(50_000, 1.0, 0), module.BaselineRun(60_000, 1.0, 0)]
    results.runs = [SimpleNamespace(judged_rate=413.0, store="memory")]
    results.latencies = [SimpleNamespace(rate=1000.0, latencies=[0.5] * 98 + [2.0, 3.0])]
    worker, latency = _round_trip("worker", module.json_summary(results))
    assert worker["ratio"] == pytest.approx(413 / 55_000) and worker["met"] is False
    assert latency["value"] == pytest.approx(2000.0) and latency["met"] is False

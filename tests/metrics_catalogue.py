"""The metrics catalogue of docs/metrics.md, read for the tests, and the naming rules it states.

Used by ``tests/unit/test_metrics_declarations.py`` (what each process declares) and
``tests/integration/test_metrics_catalogue.py`` (what each running process serves).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

CATALOGUE_FILE = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
PROCESSES = ("worker", "serving-store", "api", "publisher", "website")
STANDARD_PREFIXES = ("process_", "python_")
"""prometheus_client's own collectors: named by Prometheus, not by the product."""


@dataclass(frozen=True)
class CatalogueEntry:
    """One row of the catalogue."""

    name: str
    """As exposed: a counter's ``_total`` included."""
    type: str
    labels: tuple[str, ...]
    processes: tuple[str, ...]
    meaning: str


def load_catalogue(path: Path = CATALOGUE_FILE) -> dict[str, CatalogueEntry]:
    """The rows of the "## Catalogue" table, by metric name.

    :raises ValueError: on a row that does not have the table's five cells, or a duplicate.
    """
    text = path.read_text(encoding="utf-8")
    start = text.index("\n## Catalogue\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end >= 0 else len(text)]
    entries: dict[str, CatalogueEntry] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if len(cells) != 5:
            raise ValueError(f"a catalogue row needs 5 cells: {line}")
        name, kind, labels, processes, meaning = cells
        name = name.strip("`")
        if name in entries:
            raise ValueError(f"{name} is in the catalogue twice")
        entries[name] = CatalogueEntry(
            name=name,
            type=kind,
            labels=tuple(
                label.strip().strip("`") for label in labels.split(",") if label.strip() != "–"
            ),
            processes=tuple(p.strip() for p in processes.split(",")),
            meaning=meaning,
        )
    return entries


def catalogue_of(process: str, catalogue: dict[str, CatalogueEntry]) -> dict[str, CatalogueEntry]:
    """The rows that ``process`` registers."""
    return {name: e for name, e in catalogue.items() if process in e.processes}


# --- what a process serves ---------------------------------------------------------------------


@dataclass
class Family:
    """One metric as served: its exposed name, type, and samples (name, labels)."""

    name: str
    type: str
    samples: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def label_sets(self) -> set[frozenset[str]]:
        """The label names of each series (``le`` and ``quantile`` left out)."""
        return {
            frozenset(labels) - {"le", "quantile"}
            for sample, labels in self.samples
            if not sample.endswith("_created")
        }


def parse_exposition(text: str) -> dict[str, Family]:
    """The families of a /metrics page, by exposed name (from its ``# TYPE`` lines).

    prometheus_client serves a counter's or histogram's ``_created`` series as a gauge family of
    its own; those companions are left out.
    """
    families: dict[str, Family] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            families[name] = Family(name, kind.strip())
    for name in [n for n in families if n.endswith("_created")]:
        base = name.removesuffix("_created")
        if any(
            families.get(candidate, Family("", "")).type in {"counter", "histogram", "summary"}
            for candidate in (base, f"{base}_total")
        ):
            del families[name]
    for parsed in text_string_to_metric_families(text):
        exposed = f"{parsed.name}_total" if parsed.type == "counter" else parsed.name
        family = families.get(exposed)
        if family is None:
            continue
        family.samples += [(sample.name, dict(sample.labels)) for sample in parsed.samples]
    return families


# --- naming rules (docs/metrics.md, "Naming rules") ----------------------------------------------

_SNAKE = re.compile(r"[a-z_][a-z0-9_]*")
DURATION_WORDS = frozenset(
    {"latency", "duration", "delay", "elapsed", "time", "age", "uptime", "wait", "interval"}
    | {"timeout"}
)
SIZE_WORDS = frozenset({"size", "bytes", "memory", "payload"})
RATIO_WORDS = frozenset(
    {"ratio", "percent", "percentage", "fraction", "share", "proportion", "usage"}
    | {"utilisation", "utilization"}
)
OTHER_UNITS = frozenset(
    {"ms", "millis", "milliseconds", "us", "micros", "microseconds", "ns", "nanoseconds"}
    | {"minutes", "hours", "days", "kb", "mb", "gb", "kib", "mib", "gib"}
    | {"kilobytes", "megabytes", "gigabytes", "pct"}
)


def naming_problems(name: str, kind: str, labels: frozenset[str] = frozenset()) -> list[str]:
    """What is wrong with a metric's name and label names; empty when it follows the rules."""
    problems = []
    if not _SNAKE.fullmatch(name):
        problems.append(f"{name}: not snake_case")
    if not name.startswith(("credit_", *STANDARD_PREFIXES)):
        problems.append(f"{name}: a product metric starts with credit_")
    for label in sorted(labels):
        if not _SNAKE.fullmatch(label) or label.startswith("__"):
            problems.append(f"{name}: label {label!r} is not snake_case or is reserved")
    if kind == "counter" and not name.endswith("_total"):
        problems.append(f"{name}: a counter ends in _total")
    if kind != "counter" and name.endswith("_total"):
        problems.append(f"{name}: only a counter ends in _total ({kind})")
    stem = name.removesuffix("_total")
    words = set(stem.split("_"))
    if kind in {"histogram", "summary"} and not stem.endswith(("_seconds", "_bytes", "_ratio")):
        problems.append(f"{name}: a {kind} ends in _seconds, _bytes or _ratio")
    if words & DURATION_WORDS and not stem.endswith("_seconds"):
        problems.append(f"{name}: a duration is in seconds, ending in _seconds")
    if words & SIZE_WORDS and not stem.endswith("_bytes"):
        problems.append(f"{name}: a size is in bytes, ending in _bytes")
    if words & RATIO_WORDS and not stem.endswith("_ratio"):
        problems.append(f"{name}: a unit-less ratio ends in _ratio")
    for unit in sorted(words & OTHER_UNITS):
        problems.append(f"{name}: {unit!r} is not a base unit (seconds, bytes)")
    return problems


def catalogue_problems(
    process: str,
    families: dict[str, Family],
    catalogue: dict[str, CatalogueEntry],
    series_expected: set[str] | frozenset[str] = frozenset(),
) -> list[str]:
    """How what ``process`` serves differs from its catalogue rows and the naming rules.

    :param families: what it serves (:func:`parse_exposition`).
    :param series_expected: metrics that must have at least one series by now.
    """
    rows = catalogue_of(process, catalogue)
    problems = []
    for name, row in sorted(rows.items()):
        family = families.get(name)
        if family is None:
            problems.append(f"{process}: {name} is not served")
            continue
        if family.type != row.type:
            problems.append(f"{process}: {name} is a {family.type}, the catalogue says {row.type}")
        for labels in sorted(family.label_sets(), key=sorted):
            if labels != set(row.labels):
                problems.append(
                    f"{process}: {name} has a series labelled {sorted(labels)}, "
                    f"the catalogue says {list(row.labels)}"
                )
        if name in series_expected and not family.samples:
            problems.append(f"{process}: {name} has no series after the traffic")
    for name, family in sorted(families.items()):
        if name.startswith("credit_") and name not in rows:
            where = ", ".join(catalogue[name].processes) if name in catalogue else "nowhere"
            problems.append(f"{process}: serves {name}, catalogued for {where}: add it")
        labels = frozenset[str]().union(*family.label_sets())
        problems += [f"{process}: {p}" for p in naming_problems(name, family.type, labels)]
    return problems

"""Draw a Grafana dashboard's panels from a real Prometheus into one PNG, with matplotlib.

This is not a Grafana screenshot (there is no Grafana on the machines this project is built on):
the script reads the dashboard JSON (``ops/grafana/dashboards/credit-transport.json``), sends
every panel's PromQL ``expr`` to Prometheus' HTTP API (``/api/v1/query_range``) over one time
range, and draws the panels where their ``gridPos`` puts them: rows as headings, stat panels as
a big number (reduced as ``reduceOptions.calcs`` says, coloured by the panel's thresholds, with
its sparkline), timeseries as lines (stacked where the panel stacks) with the panel's legend
table. The picture says so in its header.

Grafana's variables are replaced as Grafana would: ``$__interval`` is the query step,
``$__rate_interval`` is ``max($__interval + scrape interval, 4 × scrape interval)`` (or
``--rate-interval``), ``$__range`` the whole range. A panel with no data says why: which metric of
its expression had no series in Prometheus, or did not change during the range.

    python ops/render_dashboard.py --prometheus http://127.0.0.1:19090 \\
        --start 2026-11-26T21:00:00Z --end 2026-11-26T21:05:00Z --scrape-interval 5s \\
        --output docs/dashboard.png

``bash ops/dashboard_run.sh`` makes ``docs/dashboard.png`` this way from a real demo run.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import httpx
import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DASHBOARD = REPO_ROOT / "ops" / "grafana" / "dashboards" / "credit-transport.json"
SCRIPT = "ops/render_dashboard.py"

# Grafana's grid: 24 columns; a row unit is 30 px high with 8 px between panels.
COLUMNS = 24
COLUMN_PX = 80
ROW_PX = 30
GAP_PX = 8
MARGIN_PX = 16
HEADER_PX = 104
DPI = 100

# Grafana's dark theme and classic palette.
BACKGROUND = "#111217"
PANEL = "#181b1f"
BORDER = "#2c3235"
TEXT = "#ccccdc"
MUTED = "#8e8e9e"
GRID = "#2c3235"
PALETTE = (
    "#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9", "#705da0",
    "#508642", "#cca300", "#447ebc", "#c15c17", "#890f02", "#0a437c", "#6d1f62", "#584477",
)  # fmt: skip
NAMED_COLOURS = {
    "green": "#73bf69",
    "red": "#f2495c",
    "orange": "#ff9830",
    "yellow": "#fade2a",
    "blue": "#5794f2",
    "purple": "#b877d9",
    "dark-green": "#37872d",
    "dark-red": "#c4162a",
    "dark-orange": "#fa6400",
    "text": TEXT,
    "transparent": PANEL,
}

# Words of PromQL that are not metric names.
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan", "le", "atan2",
}  # fmt: skip
CALC_NAMES = {
    "lastNotNull": "Last *",
    "last": "Last",
    "max": "Max",
    "min": "Min",
    "mean": "Mean",
    "sum": "Total",
    "firstNotNull": "First *",
}


# --------------------------------------------------------------------------------------------
# Prometheus
# --------------------------------------------------------------------------------------------


class PrometheusError(RuntimeError):
    """Prometheus could not be reached or refused a query."""


@dataclass
class Series:
    """One series of a query's answer: its labels and its points (NaN where Prometheus had none)."""

    labels: dict[str, str]
    times: np.ndarray  # seconds since the epoch
    values: np.ndarray

    @property
    def empty(self) -> bool:
        return not bool(np.isfinite(self.values).any())


class Prometheus:
    """The few calls of Prometheus' HTTP API the renderer needs."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise PrometheusError(f"not an http(s) URL: {url}")
        self.url = url.rstrip("/")
        self.client = httpx.Client(timeout=timeout)

    def _get(self, path: str, params: dict[str, Any] | list[tuple[str, Any]]) -> Any:
        try:
            response = self.client.get(self.url + path, params=params)
        except httpx.HTTPError as exc:
            raise PrometheusError(f"{self.url}{path}: {exc}") from exc
        try:
            body = response.json()
        except ValueError:
            raise PrometheusError(
                f"{self.url}{path}: HTTP {response.status_code}, not JSON"
            ) from None
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('error', body)}")
        return body["data"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        data = self._get(
            "/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step}
        )
        result = []
        for item in data["result"]:
            points = item["values"]
            result.append(
                Series(
                    labels=dict(item["metric"]),
                    times=np.array([float(t) for t, _ in points]),
                    values=np.array([float(v) for _, v in points]),
                )
            )
        return result

    def query(self, expr: str, at: float) -> list[tuple[dict[str, str], float]]:
        data = self._get("/api/v1/query", {"query": expr, "time": at})
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(dict(i["metric"]), float(i["value"][1])) for i in data["result"]]

    def series_count(self, selector: str, start: float, end: float) -> int:
        data = self._get("/api/v1/series", [("match[]", selector), ("start", start), ("end", end)])
        return len(data)


# --------------------------------------------------------------------------------------------
# Dashboard model
# --------------------------------------------------------------------------------------------


@dataclass
class Target:
    ref: str
    expr: str
    legend: str | None


@dataclass
class Panel:
    kind: str
    title: str
    x: int
    y: int
    w: int
    h: int
    targets: list[Target]
    unit: str
    raw: dict[str, Any]
    nested: int = 0

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.raw.get("options") or {})

    @property
    def defaults(self) -> dict[str, Any]:
        return dict((self.raw.get("fieldConfig") or {}).get("defaults") or {})


def load_panels(dashboard: dict[str, Any]) -> list[Panel]:
    """Every panel with a position; a collapsed row's panels stay hidden, as in Grafana."""
    panels = []
    for raw in dashboard.get("panels", []):
        grid = raw.get("gridPos") or {}
        targets = [
            Target(t.get("refId", "A"), t["expr"], t.get("legendFormat"))
            for t in raw.get("targets", [])
            if t.get("expr") and not t.get("hide")
        ]
        panels.append(
            Panel(
                kind=raw.get("type", "timeseries"),
                title=raw.get("title", ""),
                x=int(grid.get("x", 0)),
                y=int(grid.get("y", 0)),
                w=int(grid.get("w", 12)),
                h=int(grid.get("h", 8)),
                targets=targets,
                unit=str(((raw.get("fieldConfig") or {}).get("defaults") or {}).get("unit", "")),
                raw=raw,
                nested=len(raw.get("panels") or []) if raw.get("collapsed") else 0,
            )
        )
    return panels


def substitute(expr: str, step: float, rate_interval: float, range_seconds: float) -> str:
    """Grafana's built-in variables, as Grafana would fill them for this query."""
    values = {
        "__rate_interval": duration(rate_interval),
        "__interval": duration(step),
        "__interval_ms": str(int(step * 1000)),
        "__range": duration(range_seconds),
        "__range_s": str(int(range_seconds)),
        "__range_ms": str(int(range_seconds * 1000)),
    }

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise ValueError(f"unsupported Grafana variable ${name} in {expr!r}")
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", replace, expr)


def metric_selectors(expr: str) -> list[str]:
    """The metric selectors of a PromQL expression (name and label matchers), in order."""
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    found: list[str] = []
    pattern = r"([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?(\s*\()?|(\{[^}]*\})|\"[^\"]*\"|'[^']*'"
    for match in re.finditer(pattern, text):
        name, matchers, call = match.group(1), match.group(2), match.group(3)
        if not name or call or name.lower() in PROMQL_WORDS:
            continue
        if re.fullmatch(r"\d+(\.\d+)?[smhdwy]?", name):
            continue
        selector = name + (matchers or "")
        if selector not in found:
            found.append(selector)
    return found


# --------------------------------------------------------------------------------------------
# Values and units
# --------------------------------------------------------------------------------------------


def parse_duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 5s, 1m, 1h30m)")
    for number, unit in parts:
        total += float(number) * units[unit]
    return total


def duration(seconds: float) -> str:
    """A PromQL duration: whole seconds, or minutes when they divide evenly."""
    whole = max(1, round(seconds))
    if whole % 3600 == 0:
        return f"{whole // 3600}h"
    if whole % 60 == 0:
        return f"{whole // 60}m"
    return f"{whole}s"


def parse_time(text: str, now: datetime) -> datetime:
    """``now``, ``now-15m``, unix seconds, or ISO 8601 (UTC when it names no offset)."""
    match = re.fullmatch(r"now(?:-(\w+))?", text)
    if match:
        return now - timedelta(seconds=parse_duration(match.group(1)) if match.group(1) else 0)
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return datetime.fromtimestamp(float(text), UTC)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _number(value: float, digits: int = 3) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    decimals = max(0, digits - 1 - math.floor(math.log10(magnitude)))
    return f"{value:.{min(decimals, 4)}f}".rstrip("0").rstrip(".")


def _short(value: float) -> str:
    magnitude = abs(value)
    for limit, suffix in ((1e12, " T"), (1e9, " B"), (1e6, " M"), (1e3, " K")):
        if magnitude >= limit:
            return _number(value / limit) + suffix
    return _number(value)


def format_value(value: float, unit: str) -> str:
    """A value as Grafana shows it for the panel's unit (the units this dashboard uses)."""
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    if unit == "s":
        magnitude = abs(value)
        if magnitude == 0:
            return "0 s"
        if magnitude < 1e-3:
            return _number(value * 1e6) + " µs"
        if magnitude < 1:
            return _number(value * 1e3) + " ms"
        if magnitude < 60:
            return _number(value) + " s"
        if magnitude < 3600:
            return _number(value / 60) + " min"
        if magnitude < 86400:
            return _number(value / 3600) + " hour"
        return _number(value / 86400) + " day"
    if unit == "ms":
        return format_value(value / 1000, "s")
    if unit == "reqps":
        return _short(value) + " req/s"
    if unit == "ops":
        return _short(value) + " ops/s"
    if unit == "percentunit":
        return _number(value * 100) + "%"
    if unit == "percent":
        return _number(value) + "%"
    if unit == "bytes":
        for limit, suffix in ((2**40, " TiB"), (2**30, " GiB"), (2**20, " MiB"), (2**10, " KiB")):
            if abs(value) >= limit:
                return _number(value / limit) + suffix
        return _number(value) + " B"
    return _short(value)


def reduce(values: np.ndarray, calc: str) -> float:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan
    if calc in ("lastNotNull", "last"):
        return float(finite[-1])
    if calc == "firstNotNull":
        return float(finite[0])
    if calc == "max":
        return float(finite.max())
    if calc == "min":
        return float(finite.min())
    if calc == "mean":
        return float(finite.mean())
    if calc == "sum":
        return float(finite.sum())
    raise ValueError(f"unsupported reducer {calc!r}")


def legend_name(target: Target, series: Series) -> str:
    if target.legend and target.legend != "__auto":
        return re.sub(
            r"\{\{\s*(\w+)\s*\}\}", lambda m: series.labels.get(m.group(1), ""), target.legend
        ).strip()
    labels = {k: v for k, v in series.labels.items() if k != "__name__"}
    name = series.labels.get("__name__", "")
    if not labels:
        return name or target.expr
    return name + "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def threshold_colour(panel: Panel, value: float) -> str:
    steps = (panel.defaults.get("thresholds") or {}).get("steps") or [
        {"color": "green", "value": None},
        {"color": "red", "value": 80},
    ]
    colour = str(steps[0]["color"])
    for step in steps:
        if step.get("value") is None or (math.isfinite(value) and value >= step["value"]):
            colour = str(step["color"])
    return NAMED_COLOURS.get(colour, colour)


# --------------------------------------------------------------------------------------------
# Data of a panel, and why it is empty
# --------------------------------------------------------------------------------------------


@dataclass
class PanelData:
    series: list[tuple[Target, Series]] = field(default_factory=list)
    empty_targets: dict[str, str] = field(default_factory=dict)  # legend or ref -> reason
    error: str | None = None

    @property
    def empty(self) -> bool:
        return not self.series


@dataclass
class Query:
    prometheus: Prometheus
    start: float
    end: float
    step: float
    rate_interval: float

    def expr(self, target: Target) -> str:
        return substitute(target.expr, self.step, self.rate_interval, self.end - self.start)

    def why_empty(self, expr: str) -> str:
        """Which of the expression's metrics explains that it has no data in the range."""
        reasons = []
        range_ = duration(self.end - self.start)
        for selector in metric_selectors(expr):
            if self.prometheus.series_count(selector, self.start, self.end) == 0:
                name = selector.split("{")[0]
                if selector != name and self.prometheus.series_count(name, self.start, self.end):
                    reasons.append(
                        f"no series of {name} has {selector[len(name) :]} in this range: "
                        "nothing was counted with those labels"
                    )
                else:
                    reasons.append(f"{selector} was not exported by any scraped process")
                continue
            name = selector.split("{")[0]
            if name.endswith(("_total", "_bucket", "_count", "_sum")):
                answer = self.prometheus.query(f"sum(increase({selector}[{range_}]))", self.end)
                if not answer or answer[0][1] == 0:
                    what = "observed nothing" if name.endswith("_bucket") else "did not grow"
                    reasons.append(f"{selector} {what} in this range")
        if not reasons:
            return "the metrics exist but the expression has no value in this range"
        return "; ".join(reasons)

    def panel(self, panel: Panel) -> PanelData:
        data = PanelData()
        try:
            for target in panel.targets:
                expr = self.expr(target)
                answer = [s for s in self.prometheus.query_range(expr, *self.window) if not s.empty]
                if answer:
                    data.series.extend((target, s) for s in answer)
                else:
                    label = target.legend if target.legend else target.ref
                    label = re.sub(r"\{\{\s*\w+\s*\}\}", "", label).strip() or target.ref
                    data.empty_targets[label] = self.why_empty(expr)
        except PrometheusError as exc:
            data.error = str(exc)
        return data

    @property
    def window(self) -> tuple[float, float, float]:
        return self.start, self.end, self.step


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------


def cjk_font() -> str | None:
    """A font of fonts-noto-cjk for Chinese titles (found through matplotlib's font manager)."""
    names = {f.name for f in font_manager.fontManager.ttflist}
    for preferred in ("Noto Sans CJK SC", "Noto Sans CJK TC", "Noto Sans CJK JP"):
        if preferred in names:
            return preferred
    return next((n for n in sorted(names) if "CJK" in n), None)


@dataclass
class Canvas:
    figure: Figure
    width: float
    height: float
    start: float
    """The time range, seconds since the epoch: every time axis spans it."""
    end: float

    def rect(
        self, left: float, top: float, width: float, height: float
    ) -> tuple[float, float, float, float]:
        """Figure coordinates of a box given in pixels from the top left corner."""
        return (
            left / self.width,
            1 - (top + height) / self.height,
            width / self.width,
            height / self.height,
        )

    def box(self, left: float, top: float, width: float, height: float, colour: str) -> Axes:
        axes = self.figure.add_axes(self.rect(left, top, width, height))
        axes.set_xlim(0, width)
        axes.set_ylim(height, 0)  # pixels, from the top
        axes.set_facecolor(colour)
        axes.set_xticks([])
        axes.set_yticks([])
        for spine in axes.spines.values():
            spine.set_color(BORDER)
        return axes


def _place(panel: Panel, header: float) -> tuple[float, float, float, float]:
    left = MARGIN_PX + panel.x * COLUMN_PX
    top = header + panel.y * (ROW_PX + GAP_PX)
    width = panel.w * COLUMN_PX - GAP_PX
    height = panel.h * ROW_PX + (panel.h - 1) * GAP_PX
    return left, top, width, height


def _wrap(text: str, width_px: float, font_px: float) -> str:
    per_line = max(12, int(width_px / (font_px * 0.55)))
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            if line and len(line) + 1 + len(word) > per_line:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        lines.append(line)
    return "\n".join(lines)


def _no_data(axes: Axes, data: PanelData, width: float, height: float, top: float) -> None:
    if data.error:
        why = f"query failed: {data.error}"
    else:
        why = "\n".join(
            f"{label}: {reason}" if len(data.empty_targets) > 1 else reason
            for label, reason in data.empty_targets.items()
        )
    middle = top + (height - top) / 2
    axes.text(width / 2, middle - 6, "No data", color=MUTED, fontsize=15, ha="center", va="bottom")
    axes.text(
        width / 2,
        middle + 4,
        _wrap(why, width - 40, 11),
        color=MUTED,
        fontsize=8.5,
        ha="center",
        va="top",
        linespacing=1.4,
    )


def draw_row(canvas: Canvas, panel: Panel, header: float) -> None:
    left, top, _, height = _place(panel, header)
    title = panel.title + (f"  (collapsed: {panel.nested} panels)" if panel.nested else "")
    canvas.figure.text(
        left / canvas.width,
        1 - (top + height / 2) / canvas.height,
        title,
        color=TEXT,
        fontsize=12.5,
        fontweight="bold",
        va="center",
    )


def draw_stat(canvas: Canvas, panel: Panel, data: PanelData, header: float) -> None:
    left, top, width, height = _place(panel, header)
    calcs = (panel.options.get("reduceOptions") or {}).get("calcs") or ["lastNotNull"]
    value = math.nan
    series = data.series[0][1] if data.series else None
    if series is not None:
        value = reduce(series.values, calcs[0])
    colour_mode = panel.options.get("colorMode", "value")
    colour = threshold_colour(panel, value)
    background = colour if colour_mode == "background" and series is not None else PANEL
    axes = canvas.box(left, top, width, height, background)
    text_colour = "#ffffff" if background != PANEL else TEXT
    axes.text(10, 8, panel.title, color=text_colour, fontsize=10.5, va="top", fontweight="bold")
    if series is None:
        _no_data(axes, data, width, height, 26)
        return
    if panel.options.get("graphMode", "area") == "area" and np.isfinite(series.values).sum() > 1:
        spark = canvas.figure.add_axes(
            canvas.rect(left + 1, top + height * 0.55, width - 2, height * 0.45 - 1)
        )
        spark.set_axis_off()
        finite = np.isfinite(series.values)
        times, values = series.times[finite], series.values[finite]
        line = "#ffffff" if background != PANEL else colour
        spark.fill_between(times, values, min(0.0, float(values.min())), color=line, alpha=0.18)
        spark.plot(times, values, color=line, alpha=0.55, linewidth=1.2)
        low, high = float(values.min()), float(values.max())
        spark.set_ylim(min(0.0, low), high + (high - min(0.0, low)) * 0.15 or 1)
        spark.set_xlim(series.times[0], series.times[-1])
    shown = format_value(value, panel.unit)
    size = min(44.0, height * 0.28, width / max(4, len(shown)) * 1.2)
    # On the figure, so that it is drawn over the sparkline's axes.
    canvas.figure.text(
        (left + width / 2) / canvas.width,
        1 - (top + 26 + (height - 26) * 0.42) / canvas.height,
        shown,
        zorder=10,
        color=text_colour if colour_mode == "background" else colour,
        fontsize=size,
        fontweight="bold",
        ha="center",
        va="center",
    )


def draw_timeseries(
    canvas: Canvas, panel: Panel, data: PanelData, header: float, tz: tzinfo
) -> None:
    left, top, width, height = _place(panel, header)
    axes = canvas.box(left, top, width, height, PANEL)
    axes.text(10, 8, panel.title, color=TEXT, fontsize=10.5, va="top", fontweight="bold")
    if data.empty:
        _no_data(axes, data, width, height, 26)
        return

    legend = panel.options.get("legend") or {}
    calcs = [c for c in legend.get("calcs", []) if c in CALC_NAMES]
    show_legend = legend.get("showLegend", True)
    row_px = 14.0
    # Keep at least 100 px of plot; the legend gets what is left (Grafana would scroll).
    max_rows = int((height - 26 - 22 - 100) // row_px) - 1
    entries = [(target, s) for target, s in data.series]
    notes = list(data.empty_targets.items())
    rows = len(entries) + len(notes)
    shown_rows = min(rows, max_rows) if show_legend else 0
    hidden = rows - shown_rows if show_legend else 0
    legend_px = (shown_rows + 1 + (1 if hidden else 0)) * row_px + 4 if show_legend else 0

    plot_left, plot_top = left + 64, top + 30
    plot_width = width - 64 - 14
    plot_height = height - 30 - 22 - legend_px
    plot = canvas.figure.add_axes(canvas.rect(plot_left, plot_top, plot_width, plot_height))
    plot.set_facecolor(PANEL)
    for spine in plot.spines.values():
        spine.set_visible(False)
    plot.grid(True, color=GRID, linewidth=0.7)
    plot.tick_params(colors=MUTED, labelsize=8, length=0)

    stacking = ((panel.defaults.get("custom") or {}).get("stacking") or {}).get("mode", "none")
    fill = ((panel.defaults.get("custom") or {}).get("fillOpacity", 10)) / 100
    line_width = (panel.defaults.get("custom") or {}).get("lineWidth", 1) * 1.3
    grid_times = np.unique(np.concatenate([s.times for _, s in entries]))
    baseline = np.zeros(grid_times.size)
    low, high = math.inf, -math.inf
    colours = []
    for index, (_, series) in enumerate(entries):
        colour = PALETTE[index % len(PALETTE)]
        colours.append(colour)
        values = np.full(grid_times.size, np.nan)
        values[np.searchsorted(grid_times, series.times)] = series.values
        dates = _date_numbers(grid_times)
        if stacking == "normal":
            top_line = baseline + np.nan_to_num(values)
            shown = np.where(np.isfinite(values), top_line, np.nan)
            plot.fill_between(
                dates,
                baseline,
                top_line,
                where=np.isfinite(values),
                color=colour,
                alpha=max(fill, 0.1),
                linewidth=0,
            )
            plot.plot(dates, shown, color=colour, linewidth=line_width)
            baseline = top_line
            values = shown
        else:
            plot.plot(dates, values, color=colour, linewidth=line_width)
            if fill:
                plot.fill_between(
                    dates,
                    values,
                    0,
                    where=np.isfinite(values),
                    color=colour,
                    alpha=fill,
                    linewidth=0,
                )
        finite = values[np.isfinite(values)]
        if finite.size:
            low, high = min(low, float(finite.min())), max(high, float(finite.max()))
    plot.set_xlim(*_date_numbers(np.array([canvas.start, canvas.end])))
    minimum = panel.defaults.get("min")
    maximum = panel.defaults.get("max")
    if minimum is None and low >= 0:
        minimum = 0
    if maximum is None and high <= (minimum if minimum is not None else low):
        maximum = (minimum or 0) + 1
    plot.set_ylim(bottom=minimum, top=maximum)
    if maximum is None:
        plot.set_ylim(top=high + (high - (minimum or 0)) * 0.08)
    plot.yaxis.set_major_locator(MaxNLocator(4))
    plot.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_value(v, panel.unit)))
    locator = mdates.AutoDateLocator(minticks=4, maxticks=8, tz=tz)  # type: ignore[no-untyped-call]
    plot.xaxis.set_major_locator(locator)
    plot.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=tz))  # type: ignore[no-untyped-call]

    if not show_legend:
        return
    legend_top = height - legend_px + 2
    columns = [width - 12 - 78 * (len(calcs) - 1 - i) for i in range(len(calcs))]
    for x, calc in zip(columns, calcs, strict=True):
        axes.text(
            x, legend_top, CALC_NAMES[calc], color="#6e9fff", fontsize=8, ha="right", va="top"
        )
    name_width = (columns[0] - 90 if columns else width - 20) - 24
    y = legend_top + row_px
    lines = 0
    for (target, series), colour in zip(entries, colours, strict=True):
        if lines >= shown_rows:
            break
        axes.plot([10, 22], [y + 6, y + 6], color=colour, linewidth=3, solid_capstyle="butt")
        axes.text(
            28,
            y,
            _clip(legend_name(target, series), name_width, 7.5),
            color=TEXT,
            fontsize=8,
            va="top",
        )
        for x, calc in zip(columns, calcs, strict=True):
            axes.text(
                x,
                y,
                format_value(reduce(series.values, calc), panel.unit),
                color=TEXT,
                fontsize=8,
                ha="right",
                va="top",
            )
        y += row_px
        lines += 1
    for label, reason in notes:
        if lines >= shown_rows:
            break
        axes.text(
            28,
            y,
            _clip(f"{label}: no data ({reason})", width - 40, 7.5),
            color=MUTED,
            fontsize=8,
            va="top",
            style="italic",
        )
        y += row_px
        lines += 1
    if hidden:
        axes.text(
            28,
            y,
            f"… {hidden} more series (Grafana would scroll the legend)",
            color=MUTED,
            fontsize=8,
            va="top",
            style="italic",
        )


def _date_numbers(times: np.ndarray) -> np.ndarray:
    """Matplotlib's date numbers of seconds since the epoch (the axis formats them in ``tz``)."""
    moments = [datetime.fromtimestamp(float(t), UTC) for t in times]
    return np.asarray(mdates.date2num(moments), dtype=float)  # type: ignore[no-untyped-call]


def _clip(text: str, width_px: float, font_px: float) -> str:
    limit = max(8, int(width_px / (font_px * 0.95)))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render(
    dashboard: dict[str, Any],
    query: Query,
    output: Path,
    tz: tzinfo,
    subtitle: str | None,
    source: str = "the dashboard",
) -> list[tuple[str, str]]:
    """Draw the dashboard; returns (panel title, why) for each panel drawn without data."""
    font = cjk_font()
    plt.rcParams["font.family"] = [font, "DejaVu Sans"] if font else ["DejaVu Sans"]
    plt.rcParams["axes.unicode_minus"] = False
    plt.rcParams["text.parse_math"] = False  # "$__rate_interval" is text, not TeX

    panels = load_panels(dashboard)
    header = HEADER_PX + (18 if subtitle else 0)
    width = 2 * MARGIN_PX + COLUMNS * COLUMN_PX - GAP_PX
    bottom = max((p.y + p.h for p in panels), default=0)
    height = header + bottom * (ROW_PX + GAP_PX) + MARGIN_PX
    figure = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor=BACKGROUND)
    canvas = Canvas(figure, width, height, query.start, query.end)

    start = datetime.fromtimestamp(query.start, tz)
    end = datetime.fromtimestamp(query.end, tz)
    zone = start.tzname() or str(tz)

    def line(y: float, text: str, **style: Any) -> None:
        figure.text(MARGIN_PX / width, 1 - y / height, text, va="top", **style)

    line(14, dashboard.get("title", "dashboard"), color="#ffffff", fontsize=19, fontweight="bold")
    line(
        46,
        f"Rendered from Prometheus data by {SCRIPT} (matplotlib): not a Grafana screenshot. "
        f"Panels, queries and layout are those of {source}.",
        color="#fade2a",
        fontsize=10.5,
    )
    line(
        68,
        f"{start:%Y-%m-%d %H:%M:%S} to {end:%H:%M:%S} {zone} "
        f"({duration(query.end - query.start)}), step {duration(query.step)}, "
        f"$__rate_interval = {duration(query.rate_interval)}, Prometheus {query.prometheus.url}",
        color=MUTED,
        fontsize=9.5,
    )
    if subtitle:
        line(88, subtitle, color=MUTED, fontsize=9.5)

    empty: list[tuple[str, str]] = []
    for panel in panels:
        if panel.kind == "row":
            draw_row(canvas, panel, header)
            continue
        data = query.panel(panel)
        if data.empty:
            empty.append((panel.title, data.error or "; ".join(data.empty_targets.values())))
        if panel.kind == "stat":
            draw_stat(canvas, panel, data, header)
        else:
            # timeseries, and any other kind drawn as one (graph, the old panel type, included)
            draw_timeseries(canvas, panel, data, header, tz)

    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=DPI, facecolor=BACKGROUND)
    plt.close(figure)
    return empty


def _timezone(name: str) -> tzinfo:
    if name == "local":
        local = datetime.now().astimezone().tzinfo
        return local if local is not None else UTC
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dashboard", type=Path, default=DEFAULT_DASHBOARD)
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090", help="base URL")
    parser.add_argument("--start", help="ISO 8601, unix seconds or now-1h (default: dashboard)")
    parser.add_argument("--end", help="as --start (default: the dashboard's, usually now)")
    parser.add_argument(
        "--scrape-interval",
        type=parse_duration,
        default=parse_duration("15s"),
        help="Prometheus' scrape interval, for $__rate_interval (default 15s)",
    )
    parser.add_argument("--step", type=parse_duration, help="query step (default: range/600)")
    parser.add_argument(
        "--rate-interval", type=parse_duration, help="$__rate_interval (default: as Grafana)"
    )
    parser.add_argument("--timezone", default="local", help="IANA name, or local")
    parser.add_argument("--subtitle", help="one more header line, e.g. what the run was")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "dashboard.png")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    dashboard = json.loads(args.dashboard.read_text(encoding="utf-8"))
    now = datetime.now(UTC)
    span = dashboard.get("time") or {}
    start = parse_time(args.start or span.get("from", "now-1h"), now)
    end = parse_time(args.end or span.get("to", "now"), now)
    if end <= start:
        print(f"the range is empty: {start} to {end}", file=sys.stderr)
        return 2
    seconds = (end - start).total_seconds()
    step = args.step or max(args.scrape_interval, math.ceil(seconds / 600))
    rate_interval = args.rate_interval or max(step + args.scrape_interval, 4 * args.scrape_interval)
    query = Query(
        Prometheus(args.prometheus), start.timestamp(), end.timestamp(), step, rate_interval
    )
    try:
        path = args.dashboard.resolve()
        source = str(path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path)
        empty = render(
            dashboard, query, args.output, _timezone(args.timezone), args.subtitle, source
        )
    except PrometheusError as exc:
        print(f"Prometheus: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}")
    for title, why in empty:
        print(f"  no data: {title}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

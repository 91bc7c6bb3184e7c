"""The plots of the HTML report: matplotlib figures rendered to SVG text, ready to inline.

Figures are built from :class:`matplotlib.figure.Figure` directly, never through pyplot, so no
backend is chosen and no figure is registered anywhere: nothing global changes and nothing is
left open. rcParams are set only inside :func:`matplotlib.rc_context` for the time of a render.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from shipyard.core.exceptions import InvalidArgumentError
from shipyard.statistics.drift import ColumnDrift
from shipyard.statistics.report import MonitoringReport

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

REFERENCE_COLOR = "#4c78a8"
CURRENT_COLOR = "#f58518"
ALERT_COLOR = "#c92a2a"
SERIES_COLORS = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#72b7b2")
MAX_CATEGORIES = 20
MAX_SCORE_LINES = 6
MAX_METRIC_PLOTS = 12

# fonttype "none" keeps text as <text> (small, fast, selectable); no metadata keeps the SVG free
# of a date (reproducible) and of the RDF block's URLs.
_RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",
    "font.size": 9.0,
    "axes.titlesize": 10.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "svg.hashsalt": "shipyard",  # same input, same bytes
}
_NO_METADATA = {"Format": None, "Type": None, "Creator": None, "Date": None}
_ID = re.compile(r'\bid="([^"]+)"')


def plain(text: object, limit: int = 40) -> str:
    """``text`` for matplotlib: ``$`` escaped (no mathtext), cut to ``limit`` characters."""
    value = str(text)
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return value.replace("$", r"\$")


def distribution_svg(ident: str, column: str, distribution: Mapping[str, Any], caption: str) -> str:
    """Reference vs current shares of one column: histogram steps or grouped bars."""
    kind = distribution.get("kind")
    reference = _counts(column, distribution, "reference")
    current = _counts(column, distribution, "current")
    if len(reference) != len(current):
        raise InvalidArgumentError(
            f"distributions[{column!r}] must have as many reference as current counts "
            f"but got {len(reference)} and {len(current)}"
        )
    with matplotlib.rc_context(_RC):
        figure = Figure(figsize=(5.6, 3.0))
        axes = figure.subplots()
        if kind == "numeric":
            _numeric(axes, column, distribution, _shares(reference), _shares(current))
        elif kind == "categorical":
            _categorical(axes, column, distribution, _shares(reference), _shares(current))
        else:
            raise InvalidArgumentError(
                f"distributions[{column!r}]['kind'] must be 'numeric' or 'categorical' "
                f"but got {kind!r}"
            )
        axes.set_title(plain(column, 60), loc="left")
        axes.set_ylabel("share of rows")
        axes.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        axes.legend(loc="best")
        _margins(figure, bottom=1.05 if kind == "categorical" and _rotated(axes) else 0.4)
        return _render(figure, ident, f"{column}: {caption}")


def drift_share_svg(
    ident: str,
    times: Sequence[datetime],
    shares: Sequence[float],
    drifted: Sequence[bool],
    threshold: float,
) -> str:
    """The share of drifted columns over time, the dataset-drift threshold as a dashed line."""
    with matplotlib.rc_context(_RC):
        figure = Figure(figsize=(11.0, 3.0))
        axes = figure.subplots()
        axes.plot(
            _moments(times), shares, color=REFERENCE_COLOR, marker="o", markersize=3, label="share"
        )
        hot = [(t, s) for t, s, d in zip(times, shares, drifted, strict=True) if d]
        if hot:
            hot_times, hot_shares = zip(*hot, strict=True)
            axes.plot(
                _moments(hot_times), hot_shares, "o", color=ALERT_COLOR, label="dataset drift"
            )
        axes.axhline(threshold, color="black", linestyle="--", linewidth=1, label="threshold")
        axes.set_ylim(0.0, max(1.0, *shares) * 1.05)
        axes.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        axes.set_title("Share of drifted columns", loc="left")
        _date_axis(axes)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
        _margins(figure, right=1.6)
        return _render(
            figure, ident, f"share of drifted columns over time, threshold {threshold:.0%}"
        )


def scores_svg(
    ident: str,
    method: str,
    times: Sequence[datetime],
    series: Mapping[str, Sequence[float | None]],
    thresholds: Sequence[float],
) -> str:
    """Per-column drift scores of one method over time (missing points leave gaps)."""
    with matplotlib.rc_context(_RC):
        figure = Figure(figsize=(11.0, 3.0))
        axes = figure.subplots()
        for color, (column, values) in zip(
            itertools.cycle(SERIES_COLORS), series.items(), strict=False
        ):
            ys = [math.nan if v is None else float(v) for v in values]
            axes.plot(
                _moments(times), ys, color=color, marker="o", markersize=3, label=plain(column, 24)
            )
        for threshold in sorted(set(thresholds)):
            axes.axhline(threshold, color="black", linestyle="--", linewidth=1)
        axes.set_title(plain(f"Drift scores ({method}; dashed: threshold)", 60), loc="left")
        _date_axis(axes)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
        _margins(figure, right=1.9)
        return _render(figure, ident, f"{method} drift scores over time")


def metric_svg(
    ident: str,
    metric: str,
    times: Sequence[datetime],
    values: Sequence[float],
    baseline: float | None,
) -> str:
    """One performance metric over time, its baseline (if any) as a dashed line."""
    with matplotlib.rc_context(_RC):
        figure = Figure(figsize=(4.6, 2.4))
        axes = figure.subplots()
        axes.plot(
            _moments(times),
            values,
            color=REFERENCE_COLOR,
            marker="o",
            markersize=3,
            label="current",
        )
        if baseline is not None:
            axes.axhline(baseline, color="black", linestyle="--", linewidth=1, label="baseline")
            axes.legend(loc="best", fontsize=8)
        axes.set_title(plain(metric, 50), loc="left")
        _date_axis(axes)
        _margins(figure, left=0.75)
        return _render(figure, ident, f"{metric} over time")


def _counts(column: str, distribution: Mapping[str, Any], key: str) -> np.ndarray[Any, Any]:
    try:
        counts = np.asarray(distribution[key], dtype=float)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidArgumentError(
            f"distributions[{column!r}][{key!r}] must be a list of counts "
            f"but got {distribution.get(key)!r:.80}"
        ) from exc
    if counts.ndim != 1:
        raise InvalidArgumentError(
            f"distributions[{column!r}][{key!r}] must be a flat list of counts "
            f"but got an array of shape {counts.shape}"
        )
    return counts


def _shares(counts: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts)


def _numeric(
    axes: Axes,
    column: str,
    distribution: Mapping[str, Any],
    reference: np.ndarray[Any, Any],
    current: np.ndarray[Any, Any],
) -> None:
    edges = np.asarray(distribution.get("edges", ()), dtype=float)
    if edges.ndim != 1 or len(edges) != len(reference) + 1 or len(edges) < 2:
        raise InvalidArgumentError(
            f"distributions[{column!r}]['edges'] must hold one more value than the counts "
            f"({len(reference) + 1}) but got {edges.size}"
        )
    edges = _finite_edges(edges)
    axes.stairs(reference, edges, fill=True, color=REFERENCE_COLOR, alpha=0.35, label="reference")
    axes.stairs(current, edges, color=CURRENT_COLOR, linewidth=1.8, label="current")


def _finite_edges(edges: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Open-ended outer bins (±inf edges) drawn as wide as their neighbour, so they show."""
    edges = edges.copy()
    finite = np.isfinite(edges)
    if not finite.any():
        return np.arange(len(edges), dtype=float)
    if finite.sum() == 1:
        value = edges[finite][0]
        return np.where(finite, edges, np.arange(len(edges)) - np.argmax(finite) + value)
    if not np.isfinite(edges[0]):
        edges[0] = edges[1] - (edges[2] - edges[1] if len(edges) > 2 else 1.0)
    if not np.isfinite(edges[-1]):
        edges[-1] = edges[-2] + (edges[-2] - edges[-3] if len(edges) > 2 else 1.0)
    return edges


def _categorical(
    axes: Axes,
    column: str,
    distribution: Mapping[str, Any],
    reference: np.ndarray[Any, Any],
    current: np.ndarray[Any, Any],
) -> None:
    categories = ["(missing)" if c is None else str(c) for c in distribution.get("categories", ())]
    if len(categories) != len(reference):
        raise InvalidArgumentError(
            f"distributions[{column!r}] must have one count per category "
            f"({len(categories)} categories) but got {len(reference)} counts"
        )
    # The categories that matter most in either sample; the rest summed in one bar.
    order = np.argsort(-np.maximum(reference, current), kind="stable")
    if len(order) > MAX_CATEGORIES:
        keep, rest = order[: MAX_CATEGORIES - 1], order[MAX_CATEGORIES - 1 :]
        labels = [categories[i] for i in keep] + [f"(other {len(rest)})"]
        reference = np.append(reference[keep], reference[rest].sum())
        current = np.append(current[keep], current[rest].sum())
    else:
        labels = [categories[i] for i in order]
        reference, current = reference[order], current[order]
    x = np.arange(len(labels))
    width = 0.4
    axes.bar(x - width / 2, reference, width, color=REFERENCE_COLOR, label="reference")
    axes.bar(x + width / 2, current, width, color=CURRENT_COLOR, label="current")
    axes.set_xticks(x, [plain(label, 18) for label in labels])
    axes.grid(False, axis="x")
    if len(labels) > 6 or max((len(label) for label in labels), default=0) > 8:
        axes.tick_params(axis="x", labelrotation=35)
        for tick in axes.get_xticklabels():
            tick.set_horizontalalignment("right")


def _rotated(axes: Axes) -> bool:
    return any(tick.get_rotation() for tick in axes.get_xticklabels())


def _moments(times: Sequence[datetime]) -> np.ndarray[Any, Any]:
    """Timestamps as UTC ``datetime64`` (naive ones taken as UTC): one time axis for all."""
    utc = [t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t for t in times]
    return np.array(utc, dtype="datetime64[us]")


def _date_axis(axes: Axes) -> None:
    # matplotlib.dates has no annotations: its calls are untyped to mypy.
    locator = AutoDateLocator(minticks=3, maxticks=7)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]


def _margins(
    figure: Figure, left: float = 0.6, right: float = 0.15, top: float = 0.35, bottom: float = 0.4
) -> None:
    """Fixed margins, in inches: a layout engine would draw every figure twice."""
    width, height = figure.get_size_inches()
    figure.subplots_adjust(
        left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height
    )


def _render(figure: Figure, ident: str, label: str) -> str:
    """The figure as an ``<svg>`` element: no XML prolog, ids prefixed with ``ident``."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata=_NO_METADATA)
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    # Every SVG says id="figure_1", "axes_1", …: scoped by a prefix so ids stay unique in the page.
    prefix = f"{ident}-"
    ids = set(_ID.findall(text))
    if ids:
        names = "|".join(re.escape(i) for i in sorted(ids, key=len, reverse=True))
        text = re.sub(rf'(id="|#)({names})(?=["\)])', rf"\g<1>{prefix}\g<2>", text)
    title = escape(label, quote=True)
    opening = text.index(">")
    return (
        f'<svg role="img" aria-label="{title}"{text[4:opening]}><title>{title}</title>'
        f"{text[opening + 1 :]}"
    ).strip()


def trend_plots(
    report: MonitoringReport, history: Sequence[Mapping[str, Any]], ids: Iterator[str]
) -> list[tuple[str, bool]]:
    """The plots over time, each as ``(svg, wide)``: drift share, drift scores, metrics.

    ``history`` (oldest first) needs at least two points; a metric plot needs two values.
    """
    times = [_timestamp(entry.get("computed_at"), index) for index, entry in enumerate(history)]
    share = drift_share_svg(
        next(ids),
        times,
        [number(e.get("drift_share")) or 0.0 for e in history],
        [bool(e.get("dataset_drift")) for e in history],
        report.drift.share_threshold,
    )
    plots = [(share, True), *((svg, True) for svg in _score_plots(report, history, times, ids))]
    comparison = report.performance.comparison if report.performance is not None else {}
    metrics = list(dict.fromkeys(m for e in history for m in (e.get("performance") or {})))
    for metric in metrics[:MAX_METRIC_PLOTS]:
        points = [
            (t, value)
            for t, e in zip(times, history, strict=True)
            if (value := number((e.get("performance") or {}).get(metric))) is not None
        ]
        if len(points) >= 2:
            baseline = number((comparison.get(metric) or {}).get("baseline"))
            xs, ys = zip(*points, strict=True)
            plots.append((metric_svg(next(ids), str(metric), xs, ys, baseline), False))
    return plots


def severity(column: ColumnDrift) -> float:
    """How far past its threshold a drifted column is, whichever way its method drifts.

    Distances drift above the threshold, p-values below it: the ratio, taken the way that is
    ≥ 1 for a drifted column, ranks both kinds. A score that is not a number ranks as 0.
    """
    score = column.score if math.isfinite(column.score) else None
    threshold = number(column.threshold)
    if score is None or threshold is None or threshold <= 0:
        return 0.0 if score is None else abs(score)
    if score >= threshold:
        return score / threshold
    return threshold / score if score > 0 else math.inf


def number(value: Any) -> float | None:
    """``value`` as a float, or None when it is missing, not a number or NaN."""
    if value is None or isinstance(value, bool):
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(result) else result


def _score_plots(
    report: MonitoringReport,
    history: Sequence[Mapping[str, Any]],
    times: Sequence[datetime],
    ids: Iterator[str],
) -> Iterator[str]:
    """Scores over time of the columns that drift most now, one plot per method."""
    drifted = sorted((c for c in report.drift.columns if c.drifted), key=severity, reverse=True)
    by_method: dict[str, list[ColumnDrift]] = {}
    for column in drifted:
        by_method.setdefault(column.method, []).append(column)
    for method, columns in by_method.items():
        shown = columns[:MAX_SCORE_LINES]
        series = {
            name: values
            for name, values in (
                (c.column, [number((e.get("columns") or {}).get(c.column)) for e in history])
                for c in shown
            )
            if sum(v is not None for v in values) >= 2
        }
        if series:
            thresholds = [t for c in shown if (t := number(c.threshold)) is not None]
            yield scores_svg(next(ids), method, times, series, thresholds)


def _timestamp(value: Any, index: int) -> datetime:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise InvalidArgumentError(
            f"history[{index}]['computed_at'] must be an ISO 8601 timestamp but got {value!r}"
        ) from exc

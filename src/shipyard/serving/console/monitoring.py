"""Monitoring: every model's newest report and alerts, one model's health over time, live figures.

- ``/ui/monitoring`` — the newest report of every model (drift share, drifted columns,
  performance), the alert states, and the server's live figures;
- ``/ui/monitoring/{model}?points=&offset=&limit=`` — drift share, per-column drift scores
  and performance from feedback over the newest ``points`` reports (default
  :data:`DEFAULT_POINTS`) as uPlot charts with a table beside each for reading without
  JavaScript, the report history (paged), the model's alerts and its newest report embedded;
- ``/ui/monitoring/{model}/reports/{id}`` — one stored report as a page of its own, served
  with a sandboxing Content-Security-Policy (no script, nothing fetched) for the ``iframe``;
- ``/ui/monitoring/_live`` — the live serving figures (requests, errors, latency quantiles
  per model) read from the server's own Prometheus metrics; pages reload it every 5 s.

Only what is shown is read: the history a page at a time, the charts' values from the
first report they show on (:meth:`~shipyard.datasets.monitor_results.MonitorResults.series`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from shipyard.core.exceptions import InvalidArgumentError, NotFoundError
from shipyard.core.refs import NAME_RE
from shipyard.datasets.monitor_results import SeriesPoint
from shipyard.serving.console.data import fragment_for, is_admin, redacted_text
from shipyard.serving.console.deps import reader
from shipyard.serving.console.render import Paging, page
from shipyard.serving.console.session import Session
from shipyard.serving.console.state import console_state
from shipyard.serving.metrics import ServingMetrics

router = APIRouter()

#: Reports the charts show unless ``?points=`` says otherwise, and the most they may show.
DEFAULT_POINTS = 200
MAX_POINTS = 2000
#: Columns charted in the per-column drift chart (the most drifted of the newest report).
MAX_COLUMNS = 12
#: The report page's own policy: no script, nothing fetched, a sandbox of its own.
REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)
QUANTILES = (0.5, 0.95, 0.99)
#: The business value figures charted (amounts per period, in the value's currency).
MONEY = ("net_per_period", "ebitda_low", "ebitda_mid", "ebitda_high")

Viewer = Annotated[Session | None, Depends(reader)]


@router.get("/monitoring")
def overview(request: Request, session: Viewer) -> Response:
    """Every model's newest report and the alert states."""
    state = console_state(request)
    models = []
    for summary in state.monitor_results.newest_summaries():
        report = state.monitor_results.result(summary.id).report
        models.append(
            {
                "summary": summary,
                "drifted": [c["column"] for c in report.get("columns", []) if c.get("drifted")],
                "performance": (report.get("performance") or {}).get("metrics") or {},
            }
        )
    context = {
        "models": models,
        "alerts": state.alerts.states(limit=100),
        "live": live_figures(state.server.metrics),
        "admin": is_admin(session),
    }
    return page(request, "monitoring.html", context)


@router.get("/monitoring/_live")
def live(request: Request, session: Viewer) -> Response:
    """The live serving figures alone (what ``hx-trigger="every 5s"`` reloads)."""
    del session
    context = {"live": live_figures(console_state(request).server.metrics)}
    return page(request, "_live.html", context)


@router.get("/monitoring/{model}")
def model_page(request: Request, model: str, session: Viewer) -> Response:
    """One model's drift, performance and alerts over time, and its newest report."""
    _check_model(model)
    paging = Paging.from_request(request)
    points = _points(request)
    results = console_state(request).monitor_results
    history, total = results.summaries(model, offset=paging.offset, limit=paging.limit)
    if total == 0:
        raise NotFoundError(
            f"model {model!r} has no monitoring report; 'shipyard monitor {model}@production "
            "--current FILE' computes one"
        )
    newest = results.summaries(model, limit=1)[0][0] if paging.offset else history[0]
    report = results.result(newest.id).report
    drift_scores = results.series(model, "drift", "score", points=points)
    charts = [
        _chart(
            "drift-share",
            "Drift share (share of drifted columns)",
            results.series(model, "dataset", "drift_share", points=points)
            + _renamed(results.series(model, "dataset", "prediction_drift_share", points=points)),
            log=False,
            blank="inputs",
        ),
        _chart(
            "drift-scores",
            "Drift score per column (p-value or distance)",
            _most_drifted(drift_scores, report),
            log=True,
        ),
    ]
    measured = _metric_series(results, model, report, points)
    performance = [p for p in measured if not p.column.startswith("value:")]
    worth = [
        SeriesPoint(p.result_id, p.computed_at, p.column.removeprefix("value:"), p.value)
        for p in measured
        if p.column.startswith("value:")
    ]
    if performance:
        charts.append(_chart("performance", "Performance from feedback", performance, log=False))
    if worth:
        charts.append(_chart("value", "Business value from feedback", worth, log=False))
    context = {
        "model": model,
        "newest": newest,
        "report": report,
        "charts": charts,
        "points": points,
        "history": history,
        "total": total,
        "paging": paging,
        "alerts": console_state(request).alerts.states(model=model, limit=100),
        "live": live_figures(console_state(request).server.metrics, model),
        "admin": is_admin(session),
    }
    fragment = fragment_for(request, {"history-table": "reports"})
    return page(request, "monitoring_model.html", context, fragment=fragment)


@router.get("/monitoring/{model}/reports/{result_id}")
def report_page(request: Request, model: str, result_id: int, session: Viewer) -> Response:
    """One stored report as its own page, sandboxed (what the model page's iframe shows)."""
    _check_model(model)
    if not 1 <= result_id <= 2**63 - 1:
        raise NotFoundError(f"no monitoring report {result_id} of model {model!r}")
    stored = console_state(request).monitor_results.result(result_id, model)
    admin = is_admin(session)
    report = stored.report
    context = {
        "stored": stored,
        "report": report,
        "notes": [redacted_text(str(n), admin) for n in report.get("notes") or []],
        "reference": redacted_text(str(report.get("reference", "")), admin),
        "current": redacted_text(str(report.get("current", "")), admin),
    }
    response = page(request, "monitoring_report.html", context)
    response.headers["content-security-policy"] = REPORT_CSP
    return response


def _points(request: Request) -> int:
    raw = request.query_params.get("points", "")
    if not raw:
        return DEFAULT_POINTS
    try:
        points = int(raw)
    except ValueError:
        raise InvalidArgumentError(f"points={raw[:40]!r} is not a whole number") from None
    if not 2 <= points <= MAX_POINTS:
        raise InvalidArgumentError(f"points={points} is out of range: use 2 to {MAX_POINTS}")
    return points


def _check_model(model: str) -> None:
    if not NAME_RE.match(model):
        raise InvalidArgumentError(
            f"{model[:60]!r} is not a model name: letters, digits, '_', '.' or '-'"
        )


# -- charts -------------------------------------------------------------------------------


def _renamed(points: list[SeriesPoint]) -> list[SeriesPoint]:
    return [SeriesPoint(p.result_id, p.computed_at, "predictions", p.value) for p in points]


def _most_drifted(points: list[SeriesPoint], report: dict[str, Any]) -> list[SeriesPoint]:
    """The per-column scores of the columns that drifted most in the newest report."""
    columns = report.get("columns") or []
    ranked = sorted(columns, key=lambda c: (not c.get("drifted"), c.get("score", 1.0)))
    keep = {c["column"] for c in ranked[:MAX_COLUMNS]}
    return [p for p in points if p.column in keep] if keep else points


def _metric_series(
    results: Any, model: str, report: dict[str, Any], points: int
) -> list[SeriesPoint]:
    """Every performance metric of the newest report over time, one series per metric."""
    performance = report.get("performance") or {}
    names = [str(n) for n in (performance.get("metrics") or {})]
    worth = performance.get("value") or {}
    names += [f"value:{n}" for n in MONEY if _is_number(worth.get(n))]
    found: list[SeriesPoint] = []
    for name in names:
        found += [
            SeriesPoint(p.result_id, p.computed_at, name, p.value)
            for p in results.series(model, "performance", name, points=points)
        ]
    return found


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _chart(
    chart_id: str, title: str, points: list[SeriesPoint], *, log: bool, blank: str = "value"
) -> dict[str, Any]:
    """A chart's data for console.js (x: epoch seconds, one series a column) and its table."""
    when: dict[int, datetime] = {}
    by_column: dict[str, dict[int, float]] = defaultdict(dict)
    for point in points:
        when[point.result_id] = point.computed_at
        by_column[point.column or blank][point.result_id] = point.value
    ids = sorted(when)
    series = [
        {"label": column, "values": [_finite(values.get(i)) for i in ids]}
        for column, values in sorted(by_column.items())
    ]
    rows = [
        {"id": i, "at": when[i], "values": [s["values"][n] for s in series]}
        for n, i in enumerate(ids)
    ]
    return {
        "id": chart_id,
        "title": title,
        "data": {"x": [when[i].timestamp() for i in ids], "series": series, "logToggle": log},
        "columns": [s["label"] for s in series],
        "rows": rows[::-1],
    }


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# -- live figures -------------------------------------------------------------------------


def live_figures(metrics: ServingMetrics, model: str | None = None) -> list[dict[str, Any]]:
    """Requests, errors, in-flight and latency quantiles per served model and version.

    Read from the server's own Prometheus metrics (counters since the server started).
    """
    figures: dict[tuple[str, str], dict[str, Any]] = {}

    def entry(labels: dict[str, str]) -> dict[str, Any]:
        key = (labels.get("model", ""), labels.get("version", ""))
        return figures.setdefault(
            key,
            {"model": key[0], "version": key[1], "requests": 0.0, "client_errors": 0.0,
             "server_errors": 0.0, "model_errors": 0.0, "inflight": 0.0, "buckets": {},
             "count": 0.0, "sum": 0.0},
        )  # fmt: skip

    for family in metrics.requests.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                item = entry(sample.labels)
                item["requests"] += sample.value
                status = int(sample.labels.get("status", "0") or 0)
                if 400 <= status < 500:
                    item["client_errors"] += sample.value
                elif status >= 500:
                    item["server_errors"] += sample.value
    for family in metrics.model_errors.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                entry(sample.labels)["model_errors"] += sample.value
    for family in metrics.inflight.collect():
        for sample in family.samples:
            entry(sample.labels)["inflight"] += sample.value
    for family in metrics.duration.collect():
        for sample in family.samples:
            item = entry(sample.labels)
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                item["buckets"][bound] = item["buckets"].get(bound, 0.0) + sample.value
            elif sample.name.endswith("_count"):
                item["count"] += sample.value
            elif sample.name.endswith("_sum"):
                item["sum"] += sample.value
    rows = []
    for item in sorted(figures.values(), key=lambda f: (f["model"], f["version"])):
        if model is not None and item["model"] != model:
            continue
        buckets = sorted(item.pop("buckets").items())
        item["quantiles"] = {q: quantile(buckets, item["count"], q) for q in QUANTILES}
        item["mean"] = item["sum"] / item["count"] if item["count"] else None
        rows.append(item)
    return rows


def quantile(buckets: list[tuple[float, float]], count: float, q: float) -> float | None:
    """The ``q`` quantile (seconds) of a histogram's cumulative buckets, as Prometheus does."""
    if not count or not buckets:
        return None
    rank = q * count
    lower, below = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower
            inside = cumulative - below
            share = (rank - below) / inside if inside else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, cumulative
    return lower

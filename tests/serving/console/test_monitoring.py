"""The monitoring pages: every model's newest report and alerts, one model over time (charts
from embedded JSON, tables without JavaScript, history paging), the sandboxed report page and
the live serving figures."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from shipyard import Project
from shipyard.datasets.alert_state import AlertStates
from shipyard.datasets.monitor_results import MonitorResults
from shipyard.serving.console.monitoring import REPORT_CSP, live_figures, quantile
from shipyard.serving.metrics import ServingMetrics
from shipyard.statistics.report import MonitoringReport

from .conftest import console_client

pytestmark = pytest.mark.anyio


def chart_data(html: str, chart: str) -> dict[str, Any]:
    """The JSON a chart of the page is drawn from."""
    found = re.search(
        rf'<script type="application/json" id="chart-{chart}-data">(.*?)</script>', html, re.S
    )
    assert found is not None, f"no chart {chart}"
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def newest_report(root: Path) -> int:
    with Project(root) as project:
        return MonitorResults(project.database).newest_summaries()[0].id


async def test_the_overview_shows_each_model_newest_report(demo_template: Path) -> None:
    async with console_client(demo_template) as client:
        answer = await client.get("/ui/monitoring")
        live = await client.get("/ui/monitoring/_live")
    assert answer.status_code == 200
    row = answer.text.split('<tr class="monitored" data-model="churn" data-drift="yes">')[1]
    row = row.split("</tr>")[0]
    assert "54.5%" in row
    assert "tenure_months" in row
    assert "roc_auc 0.85" in row
    assert 'id="alerts"' in answer.text
    assert "no alert has fired" in answer.text
    assert 'hx-get="/ui/monitoring/_live" hx-trigger="every 5s"' in answer.text
    assert live.status_code == 200
    assert live.text.lstrip().startswith('<section id="live"')


async def test_a_model_over_time_with_charts_tables_and_the_report(demo_template: Path) -> None:
    report_id = newest_report(demo_template)
    async with console_client(demo_template) as client:
        answer = await client.get("/ui/monitoring/churn")
        report = await client.get(f"/ui/monitoring/churn/reports/{report_id}")
    html = answer.text
    assert answer.status_code == 200
    share = chart_data(html, "drift-share")
    assert [s["label"] for s in share["series"]] == ["inputs", "predictions"]
    scores = chart_data(html, "drift-scores")
    assert scores["logToggle"] is True
    assert len(scores["series"]) == 11
    performance = chart_data(html, "performance")
    assert "roc_auc" in [s["label"] for s in performance["series"]]
    assert chart_data(html, "value")["series"]
    assert '<details class="chart-table">' in html  # the numbers without JavaScript
    assert f'<iframe class="report" src="/ui/monitoring/churn/reports/{report_id}"' in html
    assert '<script src="/ui/static/console.js" defer></script>' in html
    assert "<script>" not in html  # no inline script: the CSP forbids it
    assert report.status_code == 200
    assert report.headers["content-security-policy"] == REPORT_CSP
    assert "sandbox" in report.headers["content-security-policy"]
    assert "<script" not in report.text
    assert '<tr data-column="tenure_months">' in report.text
    assert "Dataset drift" in report.text


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/ui/monitoring/nobody", 404),
        ("/ui/monitoring/churn/reports/999999", 404),
        ("/ui/monitoring/nobody/reports/1", 404),
        ("/ui/monitoring/churn/reports/abc", 400),
        ("/ui/monitoring/churn?points=1", 400),
        ("/ui/monitoring/churn?points=many", 400),
        ("/ui/monitoring/churn?offset=-1", 400),
        ("/ui/monitoring/-churn", 400),
    ],
)
async def test_unknown_or_bad_is_a_clear_page(demo_template: Path, path: str, status: int) -> None:
    async with console_client(demo_template) as client:
        answer = await client.get(path)
    assert answer.status_code == status, answer.text[-600:]
    assert 'class="error"' in answer.text


async def test_many_reports_show_the_newest_points_and_page_the_history(demo: Path) -> None:
    with Project(demo) as project:
        results = MonitorResults(project.database)
        stored = results.result(results.newest_summaries()[0].id)
        report = MonitoringReport.from_dict(stored.report)
        for _ in range(259):
            results.save(report, monitor="hourly")
        AlertStates(project.database).claim("drift_share", "churn/hourly", True, 0.55)
    async with console_client(demo) as client:
        answer = await client.get("/ui/monitoring/churn")
        fewer = await client.get("/ui/monitoring/churn?points=10")
        second = await client.get("/ui/monitoring/churn?offset=50")
        fragment = await client.get(
            "/ui/monitoring/churn?offset=100",
            headers={"HX-Request": "true", "HX-Target": "history-table"},
        )
        overview = await client.get("/ui/monitoring")
    assert len(chart_data(answer.text, "drift-share")["x"]) == 200
    assert len(chart_data(fewer.text, "drift-scores")["x"]) == 10
    assert 'data-total="260"' in answer.text
    assert len(re.findall(r'<tr class="report-row"', answer.text)) == 50
    assert 'href="/ui/monitoring/churn?offset=50" rel="next"' in answer.text
    rows = re.findall(r'<tr class="report-row" data-report="(\d+)"', second.text)
    assert len(rows) == 50
    assert 'rel="prev"' in second.text
    assert fragment.text.lstrip().startswith('<section id="history-table"')
    assert 'data-rule="drift_share" data-active="yes"' in answer.text
    assert 'data-rule="drift_share" data-active="yes"' in overview.text


def test_live_figures_read_the_server_metrics() -> None:
    metrics = ServingMetrics()
    for seconds in (0.001, 0.002, 0.003, 0.2):
        metrics.observe_request("churn", "2", "native", 200, seconds)
    metrics.observe_request("churn", "2", "native", 422, 0.001)
    metrics.observe_request("churn", "2", "native", 500, 0.001)
    metrics.model_errors.labels("churn", "2").inc()
    [churn] = live_figures(metrics)
    assert (churn["model"], churn["version"], churn["requests"]) == ("churn", "2", 6)
    assert (churn["client_errors"], churn["server_errors"], churn["model_errors"]) == (1, 1, 1)
    assert 0.001 <= churn["quantiles"][0.5] <= 0.004
    assert churn["quantiles"][0.99] > 0.1
    assert live_figures(metrics, "other") == []


def test_quantiles_from_cumulative_buckets() -> None:
    buckets = [(0.1, 50.0), (0.2, 100.0), (float("inf"), 100.0)]
    assert quantile(buckets, 100, 0.5) == pytest.approx(0.1)
    assert quantile(buckets, 100, 0.75) == pytest.approx(0.15)
    assert quantile([], 0, 0.5) is None

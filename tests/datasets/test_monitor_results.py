"""The monitoring results store on SQLite and PostgreSQL: save, history, newest, prune."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.helpers import monitoring_report

from shipyard.datasets.monitor_results import MonitorResults, values_of
from shipyard.statistics.drift import ColumnDrift, DriftReport
from shipyard.statistics.quality import ColumnQuality, QualityReport
from shipyard.statistics.report import MonitoringReport, Performance
from shipyard.store import Database


@pytest.fixture
def results(database_url: str) -> Iterator[MonitorResults]:
    """A results store on a fresh, migrated database of each backend."""
    opened = Database.open(database_url)
    try:
        yield MonitorResults(opened)
    finally:
        opened.dispose()


def report(model: str, version: int, share: float, **changes: Any) -> MonitoringReport:
    """A report of ``model:version`` whose drift share and ``tenure`` score are ``share``."""
    drifted = share >= 0.5
    tenure = ColumnDrift("tenure", "numeric", "psi", share, 0.1, drifted, "raw", None)
    drift = DriftReport((tenure,), share, drifted, 0.5, 100, 50)
    return monitoring_report(model=model, version=version, drift=drift, **changes)


def test_values_of_flattens_every_number() -> None:
    plan = ColumnQuality("plan", 0, 0.0, 0, 0, 0)
    values = list(
        values_of(
            report(
                "churn",
                1,
                0.5,
                quality=QualityReport(50, (plan,), 0, (), (), (), 5, 0.1),
                performance=Performance(
                    "classification", 50, {"f1": 0.8}, value={"net_per_period": 3, "unit": "€"}
                ),
            )
        )
    )
    assert ("dataset", "", "drift_share", 0.5) in values
    assert ("drift", "tenure", "drifted", 1.0) in values
    assert ("quality", "", "failing_share", 0.1) in values
    assert ("quality", "plan", "missing_share", 0.0) in values
    assert ("performance", "", "f1", 0.8) in values
    assert ("performance", "", "value:net_per_period", 3.0) in values
    assert all(metric != "value:unit" for _, _, metric, _ in values)


def test_history_is_oldest_first_and_limited(results: MonitorResults) -> None:
    for share in (0.1, 0.2, 0.3):
        results.save(report("churn", 1, share), monitor="hourly")
    results.save(report("other", 1, 0.9))
    history = results.history("churn")
    assert [r.report["drift_share"] for r in history] == [0.1, 0.2, 0.3]
    assert {r.monitor for r in history} == {"hourly"}
    assert [r.report["drift_share"] for r in results.history("churn", limit=2)] == [0.2, 0.3]
    assert results.history("nobody") == []


def test_newest_is_the_last_report_of_each_model(results: MonitorResults) -> None:
    assert results.newest().computed_at == {}
    results.save(report("churn", 1, 0.1))
    last = results.save(report("churn", 2, 0.7, prediction_drift=None))
    results.save(report("other", 1, 0.2))
    newest = results.newest()
    assert set(newest.computed_at) == {"churn", "other"}
    assert newest.computed_at["churn"] == last.computed_at
    churn = {(v.kind, v.column, v.metric): v.value for v in newest.values if v.model == "churn"}
    assert churn[("dataset", "", "drift_share")] == 0.7
    assert churn[("drift", "tenure", "score")] == 0.7
    assert [v.value for v in newest.values if v.model == "other" and v.metric == "score"] == [0.2]


def test_prune_forgets_old_reports_and_their_values(results: MonitorResults) -> None:
    results.save(report("churn", 1, 0.1))
    assert results.prune(datetime.now(UTC) - timedelta(days=1)) == 0
    assert results.prune(datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert results.history("churn") == []
    assert results.newest().values == []

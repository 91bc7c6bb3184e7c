"""``shipyard monitor``'s text summary, printed from the typed report."""

from __future__ import annotations

from datetime import UTC, datetime

from shipyard.cli.monitor import _print_report
from shipyard.render import console
from shipyard.statistics.drift import ColumnDrift, DriftReport
from shipyard.statistics.quality import QualityReport
from shipyard.statistics.report import MonitoringReport, Performance, ReportWindow


def test_the_summary_shows_drift_outputs_quality_performance_and_alerts() -> None:
    drifted = ColumnDrift("tenure", "numeric", "ks", 0.01, 0.05, True, "profile", 0.002)
    steady = ColumnDrift("plan", "categorical", "chisquare", 0.5, 0.05, False, "raw", None)
    report = MonitoringReport(
        model="churn",
        version=3,
        computed_at=datetime(2026, 1, 2, tzinfo=UTC),
        window=ReportWindow(),
        reference="profile of churn:3",
        current="data/current.csv",
        reference_rows=100,
        current_rows=40,
        drift=DriftReport((drifted, steady), 0.5, True, 0.5, 100, 40),
        prediction_drift=DriftReport((steady,), 0.0, False, 0.5, 100, 40),
        quality=QualityReport(40, (), 2, ("age",), (), (), 4, 0.1),
        performance=Performance("classification", 12, {"f1": 0.75}),
        psi={},
        settings={},
    ).with_alerts([{"state": "fired", "message": "drift on tenure"}, {"state": "ok"}])
    with console.capture() as captured:
        _print_report(report)
    text = captured.get()
    assert "churn:3  DRIFT: 50% of columns drifted (threshold 50%)" in text
    assert "0.01 ±0.002" in text
    assert "plan (output)" in text
    assert "4 failing rows (10.0%), 2 duplicates, missing columns age" in text
    assert "performance on 12 labelled rows: f1 0.75" in text
    assert "alert fired: drift on tenure" in text

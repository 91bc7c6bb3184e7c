"""The typed monitoring report and its serialized form."""

from __future__ import annotations

from datetime import UTC, datetime

from shipyard.monitoring.report import MonitoringReport, ReportWindow
from shipyard.statistics.drift import ColumnDrift, DriftReport
from shipyard.statistics.quality import QualityReport


def _drift(*drifted: bool) -> DriftReport:
    columns = tuple(
        ColumnDrift(f"c{i}", "numeric", "ks", 0.01 if d else 0.5, 0.05, d, "raw", None)
        for i, d in enumerate(drifted)
    )
    share = sum(drifted) / len(drifted)
    return DriftReport(columns, share, share >= 0.5, 0.5, 100, 50)


def _report(prediction: DriftReport | None) -> MonitoringReport:
    quality = QualityReport(50, (), 0, (), (), (), 0, 0.0)
    return MonitoringReport(
        model="churn",
        version=2,
        computed_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        window=ReportWindow(datetime(2026, 1, 1, tzinfo=UTC), None),
        reference="profile",
        current="log",
        reference_rows=100,
        current_rows=50,
        drift=_drift(True, False),
        prediction_drift=prediction,
        quality=quality,
        performance=None,
        psi={"c0": 0.3},
        settings={"drift_share": 0.5},
        notes=("a note",),
    )


def test_to_dict_has_the_stored_shape_and_alerts_only_once_evaluated() -> None:
    report = _report(_drift(True))
    data = report.to_dict()
    assert list(data) == [
        "model", "version", "computed_at", "window", "reference", "current", "rows",
        "dataset_drift", "drift_share", "share_threshold", "columns", "prediction_drift",
        "quality", "performance", "psi", "settings", "notes",
    ]  # fmt: skip
    assert data["window"] == {"start": "2026-01-01T00:00:00+00:00", "end": None}
    assert data["rows"] == {"reference": 100, "current": 50}
    assert data["dataset_drift"] is True
    assert data["drift_share"] == 0.5
    assert [c["column"] for c in data["columns"]] == ["c0", "c1"]
    assert data["prediction_drift"]["columns"][0]["drifted"] is True
    assert "reference_rows" not in data["prediction_drift"]
    assert data["notes"] == ["a note"]
    alerted = report.with_alerts([{"state": "fired"}]).to_dict()
    assert alerted["alerts"] == [{"state": "fired"}]
    assert list(alerted)[:-1] == list(data)


def test_drifted_columns_lists_inputs_then_outputs() -> None:
    assert _report(_drift(True)).drifted_columns() == ["c0", "c0"]
    assert _report(None).drifted_columns() == ["c0"]
    assert _report(None).to_dict()["prediction_drift"] is None

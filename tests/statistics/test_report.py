"""The typed monitoring report, its serialized form and reports stored before it was typed."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shipyard.core.exceptions import InvalidArgumentError
from shipyard.statistics.drift import ColumnDrift, DriftReport
from shipyard.statistics.quality import QualityReport, TypeChange
from shipyard.statistics.report import MonitoringReport, Performance, ReportWindow


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


#: Two reports as stored (``monitor_results.report``) by shipyard before the report was typed
#: (commit 6162846): a window of the prediction log with feedback, business value and alerts;
#: a file without ground truth, lacking a feature (notes, no prediction drift, schema changes).
STORED = json.loads((Path(__file__).parent / "stored_reports.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("stored", STORED, ids=["log-window", "file-without-truth"])
def test_a_report_stored_by_older_code_reads_back_exactly(stored: dict[str, Any]) -> None:
    report = MonitoringReport.from_dict(stored)
    assert report.to_dict() == stored
    assert json.dumps(report.to_dict()) == json.dumps(stored)  # same keys, same order
    assert report.computed_at.tzinfo is not None
    assert report.drift.reference_rows == report.reference_rows == stored["rows"]["reference"]
    assert report.alerts is not None
    assert report.alerts[0]["rule"] == "drift"


def test_what_a_stored_report_holds_is_typed() -> None:
    window, bare = (MonitoringReport.from_dict(s) for s in STORED)
    assert window.window.start is not None
    assert window.window.end is not None
    assert window.window.end - window.window.start == timedelta(hours=1)
    assert window.prediction_drift is not None
    assert window.prediction_drift.dataset_drift
    performance = window.performance
    assert performance is not None
    assert performance.task == "classification"
    assert performance.comparison["f1"]["baseline"] == 0.6
    assert performance.value is not None
    assert performance.value["net_per_period"] > 0
    assert bare.window == ReportWindow()
    assert bare.performance is None
    assert bare.prediction_drift is None
    assert bare.quality.changed_types == (TypeChange("tenure", "int64", "float64", "previous"),)
    assert bare.quality.column("plan").unseen_examples == ("enterprise",)
    assert bare.notes[0].startswith("no prediction drift")


def test_missing_notes_and_alerts_are_tolerated() -> None:
    stored = {k: v for k, v in STORED[1].items() if k not in ("notes", "alerts")}
    report = MonitoringReport.from_dict(stored)
    assert (report.notes, report.alerts) == ((), None)
    assert report.to_dict() == {**stored, "notes": []}


def test_a_report_without_a_required_key_is_refused_by_name() -> None:
    stored = {k: v for k, v in STORED[0].items() if k != "quality"}
    with pytest.raises(InvalidArgumentError, match="report of 'churn' lacks the key 'quality'"):
        MonitoringReport.from_dict(stored)


@pytest.mark.parametrize(
    "performance",
    [
        Performance("regression", 1, error="r2 needs two rows"),
        Performance(
            "classification",
            20,
            {"f1": 0.5},
            {"f1": 0.0},
            {"f1": {"current": 0.5, "baseline": 0.0, "change": 0.5}},
            value={"error": "no positive class"},
        ),
        Performance("classification", 20, {"f1": 0.5}),
    ],
    ids=["no-metric", "value-error", "no-baseline"],
)
def test_every_shape_of_performance_round_trips(performance: Performance) -> None:
    data = json.loads(json.dumps(replace(_report(None), performance=performance).to_dict()))
    assert MonitoringReport.from_dict(data).performance == performance
    assert MonitoringReport.from_dict(data).to_dict() == data

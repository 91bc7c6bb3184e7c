"""The monitoring report as a value: computed once, serialized only at the edges.

:func:`shipyard.monitoring.run.run_monitor` builds a :class:`MonitoringReport` from the
window, the reference and the model; :meth:`MonitoringReport.to_dict` gives the JSON-able
dict that is stored, printed with ``--json``, checked by alert rules and rendered as HTML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from shipyard.statistics.drift import DriftReport
from shipyard.statistics.quality import QualityReport


@dataclass(frozen=True)
class ReportWindow:
    """The time span of the current rows (``None`` ends for files and batch jobs)."""

    start: datetime | None = None
    end: datetime | None = None

    def to_dict(self) -> dict[str, str | None]:
        """ISO times, or ``None``."""
        return {
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
        }


@dataclass(frozen=True)
class MonitoringReport:
    """One monitoring run's findings: drift, prediction drift, quality and performance.

    ``performance`` is ``None`` without ground truth; ``alerts`` is ``None`` until the
    alert rules have been applied (then the serialized report gains an ``alerts`` list).
    """

    model: str
    version: int
    computed_at: datetime
    window: ReportWindow
    reference: str
    current: str
    reference_rows: int
    current_rows: int
    drift: DriftReport
    prediction_drift: DriftReport | None
    quality: QualityReport
    performance: Mapping[str, Any] | None
    psi: Mapping[str, float]
    settings: Mapping[str, Any]
    notes: tuple[str, ...] = ()
    alerts: tuple[Mapping[str, Any], ...] | None = None

    def drifted_columns(self) -> list[str]:
        """The drifted input columns, then the drifted outputs."""
        drifted = [c.column for c in self.drift.columns if c.drifted]
        if self.prediction_drift is not None:
            drifted += [c.column for c in self.prediction_drift.columns if c.drifted]
        return drifted

    def with_alerts(self, alerts: list[dict[str, Any]]) -> MonitoringReport:
        """This report with the alert rules' outcome."""
        return replace(self, alerts=tuple(alerts))

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able report (the stored and ``--json`` form)."""
        data: dict[str, Any] = {
            "model": self.model,
            "version": self.version,
            "computed_at": self.computed_at.isoformat(),
            "window": self.window.to_dict(),
            "reference": self.reference,
            "current": self.current,
            "rows": {"reference": self.reference_rows, "current": self.current_rows},
            **_drift_part(self.drift),
            "prediction_drift": (
                _drift_part(self.prediction_drift) if self.prediction_drift is not None else None
            ),
            "quality": self.quality.to_dict(),
            "performance": dict(self.performance) if self.performance is not None else None,
            "psi": dict(self.psi),
            "settings": dict(self.settings),
            "notes": list(self.notes),
        }
        if self.alerts is not None:
            data["alerts"] = [dict(a) for a in self.alerts]
        return data


def _drift_part(drift: DriftReport) -> dict[str, Any]:
    data = drift.to_dict()
    return {
        "dataset_drift": data["dataset_drift"],
        "drift_share": data["drift_share"],
        "share_threshold": data["share_threshold"],
        "columns": data["columns"],
    }


__all__ = ["MonitoringReport", "ReportWindow"]

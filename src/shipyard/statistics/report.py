"""The monitoring report as a value: computed once, serialized only at the edges.

:func:`shipyard.monitoring.run.run_monitor` builds a :class:`MonitoringReport` from the
window, the reference and the model; alert rules read it, and
:class:`~shipyard.datasets.monitor_results.MonitorResults` takes it and stores its numbers.
:meth:`MonitoringReport.to_dict` gives the JSON-able dict that is stored and printed with
``--json``; :meth:`MonitoringReport.from_dict` reads a stored report back.

It lives beside the statistics it is made of (:class:`DriftReport`, :class:`QualityReport`),
in the lowest layer that computes, so the domain stores can take it without importing an engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from shipyard.core.exceptions import InvalidArgumentError
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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReportWindow:
        """The window :meth:`to_dict` wrote."""
        return cls(_time(data.get("start")), _time(data.get("end")))


@dataclass(frozen=True)
class Performance:
    """The window's rows with ground truth: metrics, against registration, business value.

    ``baseline`` holds the metrics recorded at registration that were measured again, and
    ``comparison`` each of them as ``current``, ``baseline``, ``change`` and, unless the
    baseline is 0, ``relative_change``. ``value`` is the business value (``[value]``): its
    numbers, or ``{"error": message}`` when it could not be computed; ``None`` without a
    ``[value]`` table. ``error`` says why no metric could be computed (then only ``task`` and
    ``rows`` are set).
    """

    task: str
    rows: int
    metrics: Mapping[str, float] = field(default_factory=dict)
    baseline: Mapping[str, float] = field(default_factory=dict)
    comparison: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    value: Mapping[str, float | str] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form (the report's ``performance``)."""
        if self.error is not None:
            return {"task": self.task, "rows": self.rows, "error": self.error}
        return {
            "task": self.task,
            "rows": self.rows,
            "metrics": dict(self.metrics),
            "baseline": dict(self.baseline),
            "comparison": {name: dict(entry) for name, entry in self.comparison.items()},
            "value": dict(self.value) if self.value is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Performance:
        """The performance :meth:`to_dict` wrote."""
        value = data.get("value")
        return cls(
            task=str(data["task"]),
            rows=int(data["rows"]),
            metrics=dict(data.get("metrics") or {}),
            baseline=dict(data.get("baseline") or {}),
            comparison={k: dict(v) for k, v in (data.get("comparison") or {}).items()},
            value=dict(value) if value is not None else None,
            error=str(data["error"]) if data.get("error") is not None else None,
        )


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
    performance: Performance | None
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

    def with_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> MonitoringReport:
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
            "performance": self.performance.to_dict() if self.performance is not None else None,
            "psi": dict(self.psi),
            "settings": dict(self.settings),
            "notes": list(self.notes),
        }
        if self.alerts is not None:
            data["alerts"] = [dict(a) for a in self.alerts]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MonitoringReport:
        """The report :meth:`to_dict` wrote (a stored one, say): ``to_dict`` gives it back.

        ``notes`` and ``alerts`` may be missing (no notes; rules not applied). Raises
        :class:`InvalidArgumentError` naming the first missing key.
        """
        try:
            rows = data["rows"]
            sizes = {"reference_rows": rows["reference"], "current_rows": rows["current"]}
            outputs = data.get("prediction_drift")
            performance = data.get("performance")
            alerts = data.get("alerts")
            return cls(
                model=str(data["model"]),
                version=int(data["version"]),
                computed_at=datetime.fromisoformat(data["computed_at"]),
                window=ReportWindow.from_dict(data.get("window") or {}),
                reference=str(data["reference"]),
                current=str(data["current"]),
                reference_rows=int(rows["reference"]),
                current_rows=int(rows["current"]),
                drift=DriftReport.from_dict({**data, **sizes}),
                prediction_drift=(
                    DriftReport.from_dict({**outputs, **sizes}) if outputs is not None else None
                ),
                quality=QualityReport.from_dict(data["quality"]),
                performance=Performance.from_dict(performance) if performance is not None else None,
                psi=dict(data.get("psi") or {}),
                settings=dict(data.get("settings") or {}),
                notes=tuple(str(n) for n in data.get("notes") or ()),
                alerts=tuple(dict(a) for a in alerts) if alerts is not None else None,
            )
        except KeyError as exc:
            raise InvalidArgumentError(
                f"the monitoring report of {data.get('model', '?')!r} lacks the key "
                f"{exc.args[0]!r}; pass what MonitoringReport.to_dict() wrote"
            ) from exc


def _drift_part(drift: DriftReport) -> dict[str, Any]:
    data = drift.to_dict()
    return {
        "dataset_drift": data["dataset_drift"],
        "drift_share": data["drift_share"],
        "share_threshold": data["share_threshold"],
        "columns": data["columns"],
    }


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


__all__ = ["MonitoringReport", "Performance", "ReportWindow"]

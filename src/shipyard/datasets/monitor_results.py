"""Monitoring results over time: one ``monitor_results`` row per report, its numbers long-form.

:class:`MonitorResults` is the one reader and writer of the ``monitor_results`` and
``monitor_values`` tables: ``shipyard monitor`` saves reports and reads their history, the
model server reads the newest report of each model for its ``/metrics`` gauges
(:meth:`MonitorResults.newest`), and retention prunes old ones.

Dashboards read them with plain SQL (Grafana, Superset)::

    SELECT computed_at, value FROM monitor_values
    WHERE model = 'churn' AND kind = 'drift' AND metric = 'score' AND "column" = 'tenure'

``kind`` is ``drift`` (per input column: ``score``, ``drifted``), ``prediction`` (the same on
outputs), ``dataset`` (``drift_share``, ``dataset_drift``, ``prediction_drift_share``),
``quality`` (overall and per column, e.g. ``missing_share``) or ``performance`` (e.g. ``f1``;
``value:net_per_period`` for the business value).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from shipyard.core.clock import utcnow
from shipyard.store import Database
from shipyard.store.tables import MonitorResult, MonitorValue


@dataclass(frozen=True)
class StoredResult:
    """One stored report."""

    id: int
    model: str
    version: int
    monitor: str
    computed_at: datetime
    report: dict[str, Any]


@dataclass(frozen=True)
class StoredValue:
    """One number of a stored report (a ``monitor_values`` row)."""

    model: str
    kind: str
    column: str
    metric: str
    value: float


@dataclass(frozen=True)
class Newest:
    """The newest report of every model: when each was computed, and their numbers."""

    computed_at: dict[str, datetime]  # model -> computed_at
    values: list[StoredValue]


def values_of(report: Mapping[str, Any]) -> Iterator[tuple[str, str, str, float]]:
    """Every number of a report as ``(kind, column, metric, value)``."""
    yield "dataset", "", "drift_share", float(report["drift_share"])
    yield "dataset", "", "dataset_drift", float(bool(report["dataset_drift"]))
    for entry in report.get("columns", []):
        yield "drift", entry["column"], "score", float(entry["score"])
        yield "drift", entry["column"], "drifted", float(bool(entry["drifted"]))
    outputs = report.get("prediction_drift")
    if outputs:
        yield "dataset", "", "prediction_drift_share", float(outputs["drift_share"])
        for entry in outputs.get("columns", []):
            yield "prediction", entry["column"], "score", float(entry["score"])
            yield "prediction", entry["column"], "drifted", float(bool(entry["drifted"]))
    quality = report.get("quality")
    if quality:
        for name in ("failing_share", "duplicates"):
            if name in quality:
                yield "quality", "", name, float(quality[name])
        for entry in quality.get("columns", []):
            yield "quality", entry["column"], "missing_share", float(entry["missing_share"])
            for name in ("type_violations", "out_of_range", "unseen"):
                if name in entry:
                    yield "quality", entry["column"], name, float(entry[name])
    performance = report.get("performance")
    if performance:
        for name, value in performance.get("metrics", {}).items():
            yield "performance", "", name, float(value)
        for name, value in (performance.get("value") or {}).items():
            if isinstance(value, int | float):
                yield "performance", "", f"value:{name}", float(value)


class MonitorResults:
    """Stored monitoring reports of a project (``monitor_results`` and ``monitor_values``)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def save(self, report: Mapping[str, Any], monitor: str = "") -> StoredResult:
        """Record one report and its numbers in one transaction."""
        now = utcnow()
        window = report.get("window") or {}
        quality = report.get("quality") or {}
        outputs = report.get("prediction_drift")
        row = MonitorResult(
            model=report["model"],
            version=int(report["version"]),
            monitor=monitor,
            computed_at=now,
            window_start=_time(window.get("start")),
            window_end=_time(window.get("end")),
            reference=str(report.get("reference", "")),
            current=str(report.get("current", "")),
            rows=int(report.get("rows", {}).get("current", 0)),
            dataset_drift=bool(report["dataset_drift"]),
            drift_share=float(report["drift_share"]),
            prediction_drift=bool(outputs["dataset_drift"]) if outputs else None,
            failing_share=quality.get("failing_share"),
            report=dict(report),
        )
        with self.database.session() as session:
            session.add(row)
            session.flush()
            session.add_all(
                MonitorValue(
                    result_id=row.id,
                    model=row.model,
                    computed_at=now,
                    kind=kind,
                    column=column,
                    metric=metric,
                    value=value,
                )
                for kind, column, metric, value in values_of(report)
                if math.isfinite(value)
            )
            return _stored(row)

    def history(self, model: str, limit: int = 50) -> list[StoredResult]:
        """The newest ``limit`` reports of ``model``, oldest first."""
        query = (
            sa.select(MonitorResult)
            .where(MonitorResult.model == model)
            .order_by(MonitorResult.id.desc())
            .limit(limit)
        )
        with self.database.session() as session:
            rows = [_stored(row) for row in session.scalars(query)]
        return rows[::-1]

    def newest(self) -> Newest:
        """The newest report of each model: its time and its numbers (``/metrics`` gauges).

        Raises :class:`sqlalchemy.exc.SQLAlchemyError` when the database cannot be read.
        """
        ids = (
            sa.select(sa.func.max(MonitorResult.id)).group_by(MonitorResult.model).scalar_subquery()
        )
        runs = sa.select(MonitorResult.model, MonitorResult.computed_at).where(
            MonitorResult.id.in_(ids)
        )
        values = sa.select(
            MonitorValue.model,
            MonitorValue.kind,
            MonitorValue.column,
            MonitorValue.metric,
            MonitorValue.value,
        ).where(MonitorValue.result_id.in_(ids))
        with self.database.engine.connect() as connection:
            run_rows = list(connection.execute(runs))
            value_rows = list(connection.execute(values))
        return Newest(
            computed_at={row.model: row.computed_at for row in run_rows},
            values=[StoredValue(*row) for row in value_rows],
        )

    def prune(self, before: datetime) -> int:
        """Forget reports computed before ``before``; the number removed."""
        with self.database.session() as session:
            ids = list(
                session.scalars(
                    sa.select(MonitorResult.id).where(MonitorResult.computed_at < before)
                )
            )
            if ids:
                session.execute(sa.delete(MonitorValue).where(MonitorValue.result_id.in_(ids)))
                session.execute(sa.delete(MonitorResult).where(MonitorResult.id.in_(ids)))
        return len(ids)


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _stored(row: MonitorResult) -> StoredResult:
    return StoredResult(row.id, row.model, row.version, row.monitor, row.computed_at, row.report)

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
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from shipyard.core.clock import utcnow
from shipyard.core.exceptions import NotFoundError
from shipyard.store import Database
from shipyard.store.tables import MonitorResult, MonitorValue

if TYPE_CHECKING:  # reports are only taken here: the statistics (scipy.stats) load with them
    from shipyard.statistics.report import MonitoringReport


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


@dataclass(frozen=True)
class ResultSummary:
    """The headline of one stored report (its columns, without the report itself)."""

    id: int
    model: str
    version: int
    monitor: str
    computed_at: datetime
    rows: int
    dataset_drift: bool
    drift_share: float
    prediction_drift: bool | None
    failing_share: float | None


@dataclass(frozen=True)
class SeriesPoint:
    """One value of a metric over time: which report, when, which column."""

    result_id: int
    computed_at: datetime
    column: str
    value: float


def values_of(report: MonitoringReport) -> Iterator[tuple[str, str, str, float]]:
    """Every number of a report as ``(kind, column, metric, value)`` (NaN where not measured)."""
    drift, outputs, quality = report.drift, report.prediction_drift, report.quality
    yield "dataset", "", "drift_share", float(drift.drift_share)
    yield "dataset", "", "dataset_drift", float(drift.dataset_drift)
    for entry in drift.columns:
        yield "drift", entry.column, "score", float(entry.score)
        yield "drift", entry.column, "drifted", float(entry.drifted)
    if outputs is not None:
        yield "dataset", "", "prediction_drift_share", float(outputs.drift_share)
        for entry in outputs.columns:
            yield "prediction", entry.column, "score", float(entry.score)
            yield "prediction", entry.column, "drifted", float(entry.drifted)
    yield "quality", "", "failing_share", float(quality.failing_share)
    yield "quality", "", "duplicates", float(quality.duplicates)
    for column in quality.columns:
        yield "quality", column.column, "missing_share", float(column.missing_share)
        yield "quality", column.column, "type_violations", float(column.type_violations)
        yield "quality", column.column, "out_of_range", float(column.out_of_range)
        yield "quality", column.column, "unseen", float(column.unseen)
    performance = report.performance
    if performance is not None:
        for name, value in performance.metrics.items():
            yield "performance", "", name, float(value)
        for name, worth in (performance.value or {}).items():
            if isinstance(worth, int | float):  # not the currency, not an error message
                yield "performance", "", f"value:{name}", float(worth)


class MonitorResults:
    """Stored monitoring reports of a project (``monitor_results`` and ``monitor_values``)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def save(self, report: MonitoringReport, monitor: str = "") -> StoredResult:
        """Record one report (its :meth:`~MonitoringReport.to_dict`) and its numbers at once."""
        now = utcnow()
        outputs = report.prediction_drift
        row = MonitorResult(
            model=report.model,
            version=report.version,
            monitor=monitor,
            computed_at=now,
            window_start=report.window.start,
            window_end=report.window.end,
            reference=report.reference,
            current=report.current,
            rows=report.current_rows,
            dataset_drift=report.drift.dataset_drift,
            drift_share=report.drift.drift_share,
            prediction_drift=outputs.dataset_drift if outputs is not None else None,
            failing_share=report.quality.failing_share,
            report=report.to_dict(),
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

    def summaries(
        self, model: str, *, offset: int = 0, limit: int = 50
    ) -> tuple[list[ResultSummary], int]:
        """One page of ``model``'s reports, newest first (headlines only), and their count."""
        query = (
            sa.select(*_SUMMARY)
            .where(MonitorResult.model == model)
            .order_by(MonitorResult.computed_at.desc(), MonitorResult.id.desc())
            .offset(offset)
            .limit(limit)
        )
        count = sa.select(sa.func.count()).where(MonitorResult.model == model)
        with self.database.engine.connect() as connection:
            total = connection.execute(count.select_from(MonitorResult)).scalar()
            rows = [ResultSummary(**row._asdict()) for row in connection.execute(query)]
        return rows, int(total or 0)

    def newest_summaries(self) -> list[ResultSummary]:
        """The newest report of every model (headline only), by model name."""
        ids = (
            sa.select(sa.func.max(MonitorResult.id)).group_by(MonitorResult.model).scalar_subquery()
        )
        query = sa.select(*_SUMMARY).where(MonitorResult.id.in_(ids)).order_by(MonitorResult.model)
        with self.database.engine.connect() as connection:
            return [ResultSummary(**row._asdict()) for row in connection.execute(query)]

    def result(self, result_id: int, model: str | None = None) -> StoredResult:
        """One stored report (of ``model`` when given); NotFoundError when there is none."""
        with self.database.session() as session:
            row = session.get(MonitorResult, result_id)
            if row is None or (model is not None and row.model != model):
                owner = f" of model {model!r}" if model is not None else ""
                raise NotFoundError(
                    f"no monitoring report {result_id}{owner}; 'shipyard monitor' stores them"
                )
            return _stored(row)

    def series(self, model: str, kind: str, metric: str, *, points: int = 200) -> list[SeriesPoint]:
        """``metric`` of ``kind`` (every column) over ``model``'s newest ``points`` reports.

        Oldest first. Only the reports shown are read, whatever the history's length: the
        values are found in the ``(model, kind, metric)`` index from a lower bound on their
        ids (:meth:`_value_floor`), then kept from the first report shown on.
        """
        first = (
            sa.select(MonitorResult.id)
            .where(MonitorResult.model == model)
            .order_by(MonitorResult.id.desc())
            .offset(max(points, 1) - 1)
            .limit(1)
        )
        with self.database.engine.connect() as connection:
            start = connection.execute(first).scalar() or 0
            query = (
                sa.select(
                    MonitorValue.result_id,
                    MonitorValue.computed_at,
                    MonitorValue.column,
                    MonitorValue.value,
                )
                .where(
                    MonitorValue.model == model,
                    MonitorValue.kind == kind,
                    MonitorValue.metric == metric,
                    MonitorValue.id > self._value_floor(connection, model, points),
                    MonitorValue.result_id >= start,
                )
                .order_by(MonitorValue.result_id, MonitorValue.id)
            )
            return [SeriesPoint(*row) for row in connection.execute(query)]

    @staticmethod
    def _value_floor(connection: sa.Connection, model: str, points: int) -> int:
        """An id every value of ``model``'s newest ``points`` reports is above (0: none known).

        Each report's values are inserted after its row, in one transaction, and every report
        has a ``dataset`` ``drift_share`` value: the id of that value in the report before the
        ``points`` newest bounds theirs. It is read from the ``(model, kind, metric)`` index,
        whose entries are in id order, walking ``points`` entries.
        """
        query = (
            sa.select(MonitorValue.id)
            .where(
                MonitorValue.model == model,
                MonitorValue.kind == "dataset",
                MonitorValue.metric == "drift_share",
            )
            .order_by(MonitorValue.id.desc())
            .offset(max(points, 1))
            .limit(1)
        )
        return int(connection.execute(query).scalar() or 0)

    def models(self) -> list[str]:
        """The models with at least one stored report, sorted."""
        query = sa.select(MonitorResult.model).distinct().order_by(MonitorResult.model)
        with self.database.engine.connect() as connection:
            return [row[0] for row in connection.execute(query)]

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


#: The columns of a :class:`ResultSummary`, in order.
_SUMMARY = (
    MonitorResult.id,
    MonitorResult.model,
    MonitorResult.version,
    MonitorResult.monitor,
    MonitorResult.computed_at,
    MonitorResult.rows,
    MonitorResult.dataset_drift,
    MonitorResult.drift_share,
    MonitorResult.prediction_drift,
    MonitorResult.failing_share,
)


def _stored(row: MonitorResult) -> StoredResult:
    return StoredResult(row.id, row.model, row.version, row.monitor, row.computed_at, row.report)

"""Monitoring results as Prometheus gauges on the model server's ``/metrics``.

The newest stored report of each model (``shipyard monitor``, by hand or scheduled) is read
from the monitoring results (:meth:`~shipyard.datasets.monitor_results.MonitorResults.newest`)
at scrape time (at most once per ``ttl`` seconds):

- ``shipyard_feature_drift{model,feature}``: the input column's drift score (its method's);
  ``shipyard_feature_drifted{model,feature}``: 1 when it drifted
- ``shipyard_prediction_drift{model,output}``: drift score of an output column
- ``shipyard_dataset_drift_share{model}``, ``shipyard_dataset_drift{model}`` (0/1),
  ``shipyard_prediction_drift_share{model}``
- ``shipyard_data_quality{model,feature,metric}``: ``missing_share``, ``type_violations``,
  ``out_of_range``, ``unseen`` per column, and ``failing_share``, ``duplicates`` with
  ``feature=""``
- ``shipyard_model_performance{model,metric}``: metrics on labelled rows (``f1``, ``rmse``…)
  and the business value (``value:net_per_period``…)
- ``shipyard_monitor_last_run_timestamp_seconds{model}``
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shipyard.datasets.monitor_results import MonitorResults, Newest
from shipyard.store import Database

_FAMILIES: dict[tuple[str, str], tuple[str, str, tuple[str, ...]]] = {
    ("drift", "score"): ("shipyard_feature_drift", "Drift score of an input column.", ("feature",)),
    ("drift", "drifted"): (
        "shipyard_feature_drifted", "1 when the input column drifted.", ("feature",)
    ),
    ("prediction", "score"): (
        "shipyard_prediction_drift", "Drift score of a model output column.", ("output",)
    ),
    ("dataset", "drift_share"): (
        "shipyard_dataset_drift_share", "Share of input columns that drifted.", ()
    ),
    ("dataset", "dataset_drift"): ("shipyard_dataset_drift", "1 when the dataset drifted.", ()),
    ("dataset", "prediction_drift_share"): (
        "shipyard_prediction_drift_share", "Share of output columns that drifted.", ()
    ),
}  # fmt: skip


class MonitoringCollector(Collector):
    """Gauges of the newest monitoring report of every model."""

    def __init__(self, database: Database, ttl: float = 10.0) -> None:
        self.database = database
        self.results = MonitorResults(database)
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, Newest] | None = None

    def _read(self) -> Newest:
        with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < self.ttl:
                return self._cached[1]
            newest = self.results.newest()
            self._cached = (now, newest)
            return newest

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges (read from the database at most once per ``ttl``)."""
        try:
            newest = self._read()
        except sa.exc.SQLAlchemyError:  # a scrape never fails because of monitoring
            return
        families = {
            key: GaugeMetricFamily(name, doc, labels=["model", *labels])
            for key, (name, doc, labels) in _FAMILIES.items()
        }
        quality = GaugeMetricFamily(
            "shipyard_data_quality",
            "Data quality of the newest monitored window (missing_share, failing_share…).",
            labels=["model", "feature", "metric"],
        )
        performance = GaugeMetricFamily(
            "shipyard_model_performance",
            "Model performance on labelled rows of the newest monitored window.",
            labels=["model", "metric"],
        )
        last = GaugeMetricFamily(
            "shipyard_monitor_last_run_timestamp_seconds",
            "When the newest monitoring report of the model was computed (Unix time).",
            labels=["model"],
        )
        for row in newest.values:
            family = families.get((row.kind, row.metric))
            if family is not None:
                family.add_metric([row.model, row.column] if row.column else [row.model], row.value)
            elif row.kind == "quality":
                quality.add_metric([row.model, row.column, row.metric], row.value)
            elif row.kind == "performance":
                performance.add_metric([row.model, row.metric], row.value)
        for model, computed_at in newest.computed_at.items():
            last.add_metric([model], computed_at.timestamp())
        yield from families.values()
        yield quality
        yield performance
        yield last

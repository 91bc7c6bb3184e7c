"""One monitoring run: a window against a reference → drift, quality, performance, alerts.

- **Reference**: the model version's stored profile (default; see
  :mod:`shipyard.registry.profiles`), or raw rows from ``--reference`` (then every statistic
  is computed from raw rows, as Evidently does).
- **Current**: the prediction log over the last ``window`` (default), or rows from
  ``--current`` (a file or a dataset, e.g. a batch job's input). Rows without the model's
  outputs are scored first, so prediction drift is always measured.
- **Drift** on the signature's input columns and, separately, on the outputs (prediction
  drift), with the ``[monitoring]`` settings; **quality** against the signature;
  **performance** on the rows with ground truth — feedback joined by request id and row
  (log) or by ``key`` (batch), or a ``target`` column of the current data — next to the
  metrics recorded at registration, and the window's business value with a ``[value]`` table.
- The report is stored (:mod:`shipyard.datasets.monitor_results`), alert rules are applied
  (:mod:`shipyard.monitoring.alerts`) and, on request, an HTML report is written.
"""

from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from shipyard.core.exceptions import (
    EmptyWindowError,
    InvalidArgumentError,
    NotFoundError,
    SchemaError,
)
from shipyard.core.schema import PREDICTION, Signature, proba_column
from shipyard.core.settings import Settings
from shipyard.datasets import Datasets
from shipyard.datasets.monitor_results import MonitorResults, StoredResult
from shipyard.datasets.predictions import PredictionStore
from shipyard.monitoring.alerts import Alerts, check_rules, parse_rules, psi_columns
from shipyard.monitoring.columns import WindowColumns, inputs_to_test
from shipyard.monitoring.distributions import distributions
from shipyard.monitoring.parquet import ParquetRows
from shipyard.monitoring.reference import Expected, open_reference
from shipyard.monitoring.scoring import score
from shipyard.monitoring.settings import describe, load_monitoring, parse_window
from shipyard.monitoring.truth import labelled_rows, window_performance
from shipyard.monitoring.windows import (
    META_COLUMNS,
    Window,
    as_table,
    batch_window,
    log_window,
    numeric_outputs,
    output_columns,
    read_window,
    to_frame,
)
from shipyard.registry import Registry, VersionInfo
from shipyard.registry.profiles import categorical_columns
from shipyard.statistics import ColumnSource
from shipyard.statistics.drift import DriftOptions, DriftReport, compare
from shipyard.statistics.profile import DatasetProfile, profile
from shipyard.statistics.quality import QualityReport, check_quality
from shipyard.statistics.report import MonitoringReport, ReportWindow
from shipyard.store import Database
from shipyard.value import METRIC_NAMES, ValueSettings

#: What ``value(NAME)`` alert rules may name.
VALUE_NAMES = (*METRIC_NAMES, "uplift_per_period")


@dataclass(frozen=True)
class MonitorRequest:
    """What to monitor (``shipyard monitor`` options)."""

    ref: str
    reference: str | None = None
    current: str | None = None
    batch: str | None = None
    window: str | None = None
    end: datetime | None = None
    key: str | None = None
    target: str | None = None
    monitor: str = ""
    report: Path | None = None
    save: bool = True


@dataclass
class MonitorOutcome:
    """A finished run: the report, what the HTML plots, and where things went.

    ``report`` is the serialized report (stored, ``--json``); ``typed`` the same report as a
    :class:`~shipyard.statistics.report.MonitoringReport`.
    """

    report: dict[str, Any]
    typed: MonitoringReport
    distributions: dict[str, dict[str, Any]] = field(default_factory=dict)
    result_id: int | None = None
    html: Path | None = None


def run_monitor(
    request: MonitorRequest,
    *,
    registry: Registry,
    datasets: Datasets,
    database: Database,
    settings: Settings,
    value: ValueSettings | None = None,
) -> MonitorOutcome:
    """Compute, store and alert on one monitoring report.

    Parquet is read column by column (and in chunks, for the model), never whole; the
    inputs' drift tests (numpy and Arrow, on a second thread) run while the model loads
    and scores the reference and the current rows (pandas and the model's library).
    """
    config = load_monitoring(settings)
    rules = parse_rules(config.alerts)
    if request.report is not None and not request.report.expanduser().resolve().parent.is_dir():
        raise InvalidArgumentError(
            f"cannot write the report to {request.report}: its folder does not exist; "
            "create it first or choose another path"
        )
    info = registry.get(request.ref)
    signature = _signature(info)
    classifier = signature.outputs is not None and signature.outputs.classes is not None
    numbers = [c.name for c in signature.inputs if c.is_numeric]
    current = _current(request, info, database, datasets, config.window)
    if not current.rows:
        raise EmptyWindowError(
            f"no rows to monitor in {current.description}; serve the model and send it "
            "requests, widen --window, or pass --current FILE"
        )
    outputs_known = [PREDICTION]
    if signature.outputs is not None and signature.outputs.classes is not None:
        outputs_known += [proba_column(c) for c in signature.outputs.classes]
    check_rules(rules, [*signature.columns, *outputs_known], VALUE_NAMES)
    rows = current.data if isinstance(current.data, ParquetRows) else as_table(current)
    inputs = WindowColumns(rows, encoded=current.encoded, numbers=numbers)
    as_read = WindowColumns(rows, encoded=current.encoded, decode=True)
    categorical = _categorical(signature, as_read, classifier)
    options = DriftOptions(
        methods=config.methods,
        thresholds=config.thresholds,
        share_threshold=config.drift_share,
        categorical=categorical,
    )
    reference: ColumnSource | DatasetProfile
    if request.reference is not None:
        raw = open_reference(request.reference, datasets, signature)
        reference = raw.columns()  # the model's outputs join once it has scored the rows
        reference_text, reference_rows = raw.description, raw.window.rows
    else:
        raw = None
        reference, reference_text = _profile(info, registry)
        reference_rows = reference.rows
    key = request.key or current.key
    previous = _previous_dtypes(MonitorResults(database), info.name)
    with ThreadPoolExecutor(1, thread_name_prefix="shipyard-monitor") as background:
        # the model's work (pandas and its library) on this thread; the statistics (numpy
        # and Arrow) on the other, from the start: the inputs' drift needs no model
        drifting = background.submit(_input_drift, reference, inputs, signature, options)
        expecting = background.submit(_expected, signature, reference)
        loaded = registry.load(f"{info.name}:{info.version}")
        scored, notes = _scored(current, as_read, signature, loaded)
        if scored is not None:
            as_read = WindowColumns(rows, encoded=current.encoded, extra=scored, decode=True)
        ignore = {
            *META_COLUMNS,
            *output_columns(as_read.schema.names),
            key or "",
            request.target or "",
        }
        checking = background.submit(_quality, as_read, expecting, previous, ignore)
        if raw is not None:
            reference = raw.columns(raw.score(loaded))
        _release_arrow_memory()
        features, skipped, drift = drifting.result()
        quality = checking.result()
    notes += skipped
    if scored is not None:
        categorical = _categorical(signature, as_read, classifier)  # a classifier's labels
        options = replace(options, categorical=categorical)
    options.check_columns(_names(reference))
    outputs = [c for c in output_columns(as_read.schema.names) if _has(reference, c)]
    current_outputs = numeric_outputs(as_read.table(output_columns(as_read.schema.names)))
    prediction = compare(reference, current_outputs, options, columns=outputs) if outputs else None
    psi: dict[str, float] = {}
    for column in psi_columns(rules):
        if column in features or column in outputs:
            data = inputs if column in features else current_outputs
            only = DriftOptions(methods={column: "psi"}, categorical=categorical)
            psi[column] = compare(reference, data, only, columns=[column]).columns[0].score
    truth = labelled_rows(as_read, info.name, database, key=key, target=request.target)
    measured = window_performance(truth, info, signature, value, current.description)
    typed = MonitoringReport(
        model=info.name,
        version=info.version,
        computed_at=datetime.now(UTC),
        window=ReportWindow(current.start, current.end),
        reference=reference_text,
        current=current.description,
        reference_rows=reference_rows,
        current_rows=current.rows,
        drift=drift,
        prediction_drift=prediction,
        quality=quality,
        performance=measured,
        psi=psi,
        settings=describe(config),
        notes=tuple(notes),
    )
    subject = f"{info.name}/{request.monitor}" if request.monitor else info.ref
    alerts = Alerts(database, rules, config.webhook, subject=subject)
    events = alerts.evaluate(typed, dry_run=not request.save)
    typed = typed.with_alerts([e.to_dict() for e in events])
    outcome = MonitorOutcome(typed.to_dict(), typed)
    results = MonitorResults(database)
    if request.save:
        outcome.result_id = results.save(typed, request.monitor).id
    if request.report is not None:
        from shipyard.monitoring.html import write_report

        merged = WindowColumns(
            rows, encoded=current.encoded, extra=current_outputs.select(outputs), numbers=numbers
        )
        outcome.distributions = distributions(
            reference, merged, typed.drifted_columns(), categorical
        )
        history = history_points(results.history(info.name)) if request.save else []
        outcome.html = write_report(request.report, typed, outcome.distributions, history)
    return outcome


def _input_drift(
    reference: ColumnSource | DatasetProfile,
    inputs: WindowColumns,
    signature: Signature,
    options: DriftOptions,
) -> tuple[list[str], list[str], DriftReport]:
    """The inputs that can be tested, notes on the others, and their drift."""
    features, notes = inputs_to_test(inputs, signature)
    # the reference may not hold the model's outputs yet: options of the inputs alone
    return features, notes, compare(reference, inputs, options.only(features), columns=features)


def _expected(signature: Signature, reference: ColumnSource | DatasetProfile) -> Expected:
    """What the reference expects of a window's inputs."""
    if isinstance(reference, DatasetProfile):
        return Expected.of_profile(signature, reference)
    return Expected.of_columns(signature, reference)


def _quality(
    columns: WindowColumns,
    expected: Future[Expected],
    previous: dict[str, str] | None,
    ignore: set[str],
) -> QualityReport:
    """The window's quality, against what the reference expects."""
    found = expected.result()
    return check_quality(
        columns,
        found.signature_with_ranges(),
        reference_categories=found.categories(),
        previous_columns=previous,
        ignore=ignore,
    )


def _scored(
    window: Window, columns: WindowColumns, signature: Signature, loaded: Any
) -> tuple[pa.Table | None, list[str]]:
    """The model's outputs on the window's rows (None when the rows hold them already, or
    cannot be scored), and notes."""
    names = columns.schema.names
    if PREDICTION in names:
        return None, []
    missing = [c for c in signature.columns if c not in names]
    if missing:
        return None, [
            f"no prediction drift: the current rows lack {', '.join(missing)}, so the model "
            "cannot score them"
        ]
    try:
        return score(loaded, window, signature), []
    except SchemaError as exc:  # the quality section says what is wrong with the rows
        return None, [f"the current rows could not be scored, so no prediction drift: {exc}"]


def _release_arrow_memory() -> None:
    """Hand the pages Arrow's allocator keeps after reading and scoring back to the system:
    numpy's arrays, which come next, are not allocated from them."""
    pa.default_memory_pool().release_unused()


def _dtypes(columns: ColumnSource) -> pd.DataFrame:
    """No rows, but the columns and the dtypes pandas gives them."""
    frame: pd.DataFrame = columns.schema.empty_table().to_pandas()
    return frame


def _signature(info: VersionInfo) -> Signature:
    signature = info.signature
    if signature is None:
        raise SchemaError(
            f"{info.name}:{info.version} has no signature, so its inputs cannot be monitored; "
            "register it with an input example"
        )
    if not signature.inputs:
        raise SchemaError(f"{info.name}:{info.version} has no input columns to monitor")
    return signature


def _current(
    request: MonitorRequest, info: VersionInfo, database: Database, datasets: Datasets, default: str
) -> Window:
    """The current rows (a Parquet file or folder: opened, to be read a column at a time)."""
    given = [o for o in (request.window, request.current, request.batch) if o is not None]
    if len(given) > 1:
        raise InvalidArgumentError(
            "give one of --window (the prediction log), --current (rows from a file) and "
            "--batch (a batch job's rows); with --current or --batch the whole input is the "
            "window"
        )
    if request.current is not None:
        return read_window(request.current, datasets, lazy=True)
    if request.batch is not None:
        return _batch(request.batch, info, database, datasets)
    span = parse_window(request.window or default)
    end = request.end or datetime.now(UTC)
    end = end.replace(tzinfo=UTC) if end.tzinfo is None else end.astimezone(UTC)
    return log_window(database, info.name, end - span, end, version=info.version)


def _batch(which: str, info: VersionInfo, database: Database, datasets: Datasets) -> Window:
    store = PredictionStore(database, datasets)
    if which == "latest":
        jobs = store.jobs(info.name, info.version, status="succeeded", limit=1)
        if not jobs:
            raise NotFoundError(
                f"{info.name}:{info.version} has no finished batch job; run 'shipyard predict "
                f"{info.name}:{info.version} --input FILE' first"
            )
        job = jobs[0]
    else:
        job = store.job(which)
    if job.model != info.name:
        raise InvalidArgumentError(
            f"batch job {job.id} scored {job.model}:{job.version}, not {info.name}; monitor it "
            f"with 'shipyard monitor {job.model}:{job.version} --batch {job.id}'"
        )
    return batch_window(job, datasets)


def _profile(info: VersionInfo, registry: Registry) -> tuple[DatasetProfile, str]:
    """The version's stored reference profile, and how the report names it."""
    stored = registry.profiles.latest(info.name, info.version)
    if stored is None:
        raise NotFoundError(
            f"{info.name}:{info.version} has no reference profile; run 'shipyard profile "
            f"{info.name}:{info.version} --data FILE' with its training or evaluation "
            "rows, or pass --reference FILE"
        )
    record, data = stored
    return data, f"profile of {info.name}:{info.version} ({record.source})"


def _categorical(signature: Signature, columns: ColumnSource, classifier: bool) -> frozenset[str]:
    """The inputs and outputs tested as categories (``categorical_columns``, of the columns
    compared: another text column of the window is none of the drift tests' business)."""
    found = categorical_columns(signature, _dtypes(columns), classifier=classifier)
    return frozenset(c for c in found if c in signature.columns or output_columns([c]))


def _names(reference: ColumnSource | DatasetProfile) -> list[str]:
    return list(
        reference.columns if isinstance(reference, DatasetProfile) else reference.schema.names
    )


def _has(reference: ColumnSource | DatasetProfile, column: str) -> bool:
    return column in _names(reference)


def _previous_dtypes(results: MonitorResults, model: str) -> dict[str, str] | None:
    last = results.history(model, limit=1)
    if not last:
        return None
    dtypes = MonitoringReport.from_dict(last[0].report).quality.dtypes
    return dict(dtypes) if dtypes else None


def history_points(results: list[StoredResult]) -> list[dict[str, Any]]:
    """Stored reports reduced to what the HTML report plots over time."""
    points = []
    for result in results:
        report = MonitoringReport.from_dict(result.report)
        performance = report.performance
        points.append(
            {
                "computed_at": result.computed_at.isoformat(),
                "drift_share": report.drift.drift_share,
                "dataset_drift": report.drift.dataset_drift,
                "columns": {
                    c.column: c.score if math.isfinite(c.score) else None
                    for c in report.drift.columns
                },
                "performance": dict(performance.metrics) if performance is not None else {},
            }
        )
    return points


def profile_reference(
    ref: str, data: str, *, registry: Registry, datasets: Datasets
) -> tuple[VersionInfo, DatasetProfile, str]:
    """Profile ``data`` (and the model's outputs on it) as the new reference of ``ref``."""
    info = registry.get(ref)
    loaded = registry.load(f"{info.name}:{info.version}")
    window = read_window(data, datasets)
    frame = window.data
    if not isinstance(frame, pd.DataFrame):
        frame = to_frame(as_table(window), window.encoded)
    built = registry.profiles.build(loaded, frame)
    source = f"on demand: {window.description}"
    registry.profiles.save(info.name, info.version, built, source)
    return info, built, source


__all__ = ["MonitorOutcome", "MonitorRequest", "profile", "profile_reference", "run_monitor"]

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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

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
from shipyard.monitoring.distributions import distributions
from shipyard.monitoring.settings import describe, load_monitoring, parse_window
from shipyard.monitoring.truth import labelled_rows, window_performance
from shipyard.monitoring.windows import (
    META_COLUMNS,
    Window,
    batch_window,
    log_window,
    numeric_outputs,
    output_columns,
    read_window,
)
from shipyard.registry import Registry, VersionInfo
from shipyard.registry.profiles import categorical_columns, with_outputs
from shipyard.statistics.drift import DriftOptions, compare
from shipyard.statistics.profile import DatasetProfile, profile
from shipyard.statistics.quality import check_quality
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
    """Compute, store and alert on one monitoring report."""
    config = load_monitoring(settings)
    rules = parse_rules(config.alerts)
    if request.report is not None and not request.report.expanduser().resolve().parent.is_dir():
        raise InvalidArgumentError(
            f"cannot write the report to {request.report}: its folder does not exist; "
            "create it first or choose another path"
        )
    info = registry.get(request.ref)
    signature = _signature(info)
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
    loaded = registry.load(f"{info.name}:{info.version}")
    key = request.key or current.key
    frame, notes = _scored(current.frame, signature, loaded)
    reference, reference_text, reference_rows = _reference(request, info, registry, datasets)
    if isinstance(reference, pd.DataFrame) and PREDICTION not in reference.columns:
        reference = with_outputs(loaded, reference)
    classifier = signature.outputs is not None and signature.outputs.classes is not None
    categorical = categorical_columns(signature, frame, classifier=classifier)
    features, skipped = _testable(frame, signature, categorical)
    notes += skipped
    outputs = [c for c in output_columns(frame) if _has(reference, c)]
    options = DriftOptions(
        methods=config.methods,
        thresholds=config.thresholds,
        share_threshold=config.drift_share,
        categorical=categorical,
    )
    current_outputs = numeric_outputs(frame)
    inputs = _numbers(frame[features], signature)
    drift = compare(reference, inputs, options, columns=features)
    prediction = (
        compare(reference, current_outputs[outputs], options, columns=outputs) if outputs else None
    )
    psi: dict[str, float] = {}
    for column in psi_columns(rules):
        if column in features or column in outputs:
            data = inputs if column in features else current_outputs
            only = DriftOptions(methods={column: "psi"}, categorical=categorical)
            psi[column] = (
                compare(reference, data[[column]], only, columns=[column]).columns[0].score
            )
    quality = check_quality(
        frame,
        _with_reference_ranges(signature, reference),
        reference_categories=_categories(reference, categorical, signature.columns),
        previous_columns=_previous_dtypes(MonitorResults(database), info.name),
        ignore=META_COLUMNS | set(output_columns(frame)) | {key or "", request.target or ""},
    )
    truth = labelled_rows(frame, info.name, database, key=key, target=request.target)
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
    merged = pd.concat([frame[features], current_outputs[outputs]], axis=1)
    shapes = distributions(reference, merged, typed.drifted_columns(), categorical)
    subject = f"{info.name}/{request.monitor}" if request.monitor else info.ref
    alerts = Alerts(database, rules, config.webhook, subject=subject)
    events = alerts.evaluate(typed, dry_run=not request.save)
    typed = typed.with_alerts([e.to_dict() for e in events])
    report = typed.to_dict()
    outcome = MonitorOutcome(report, typed, shapes)
    results = MonitorResults(database)
    if request.save:
        outcome.result_id = results.save(typed, request.monitor).id
    if request.report is not None:
        from shipyard.monitoring.html import write_report

        history = history_points(results.history(info.name)) if request.save else []
        outcome.html = write_report(request.report, typed, shapes, history)
    return outcome


def _scored(
    frame: pd.DataFrame, signature: Signature, loaded: Any
) -> tuple[pd.DataFrame, list[str]]:
    """The window with the model's outputs (scored here when it has none), and notes."""
    if PREDICTION in frame.columns:
        return frame, []
    missing = [c for c in signature.columns if c not in frame.columns]
    if missing:
        return frame, [
            f"no prediction drift: the current rows lack {', '.join(missing)}, so the model "
            "cannot score them"
        ]
    try:
        scored = with_outputs(loaded, frame).drop(columns=signature.columns)
    except SchemaError as exc:  # the quality section says what is wrong with the rows
        return frame, [f"the current rows could not be scored, so no prediction drift: {exc}"]
    return pd.concat([frame, scored], axis=1), []


def _testable(
    frame: pd.DataFrame, signature: Signature, categorical: frozenset[str]
) -> tuple[list[str], list[str]]:
    """The input columns whose drift can be tested, and notes on the others."""
    present = [c for c in signature.columns if c in frame.columns]
    if not present:
        raise SchemaError(
            f"the current data has none of the model's input columns "
            f"({', '.join(signature.columns)}); its columns: "
            f"{', '.join(map(str, frame.columns))}. To monitor a batch job's predictions, "
            "pass --batch JOB (its input is read beside them)"
        )
    notes = [f"{c}: not in the current rows (see quality)" for c in signature.columns
             if c not in frame.columns]  # fmt: skip
    testable = []
    for column in present:
        values = frame[column]
        if signature.column(column).is_numeric and column not in categorical:
            values = pd.to_numeric(values, errors="coerce")
        if values.notna().any():
            testable.append(column)
        else:
            notes.append(f"{column}: no value in the current rows, so no drift test (see quality)")
    return testable, notes


def _numbers(frame: pd.DataFrame, signature: Signature) -> pd.DataFrame:
    """Numeric inputs as numbers: the log's JSON and text files may carry them as objects."""
    out = frame.copy()
    for column in out.columns:
        if signature.column(column).is_numeric and out[column].dtype == object:
            out[column] = pd.to_numeric(out[column], errors="coerce")
    return out


def _with_reference_ranges(
    signature: Signature, reference: pd.DataFrame | DatasetProfile
) -> Signature:
    """The signature with each numeric input's range taken from the reference rows.

    The signature's own range is the input example's (often a few rows): the reference's
    is what "out of range" should mean for a window.
    """
    specs = []
    for spec in signature.inputs:
        low = high = None
        if spec.is_numeric and isinstance(reference, DatasetProfile):
            column = reference.columns.get(spec.name)
            if column is not None:
                low, high = column.minimum, column.maximum
        elif (
            spec.is_numeric
            and isinstance(reference, pd.DataFrame)
            and spec.name in reference.columns
        ):
            values = pd.to_numeric(reference[spec.name], errors="coerce")
            if values.notna().any():
                low, high = float(values.min()), float(values.max())
        specs.append(replace(spec, minimum=low, maximum=high) if low is not None else spec)
    return Signature(tuple(specs), signature.outputs)


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
    given = [o for o in (request.window, request.current, request.batch) if o is not None]
    if len(given) > 1:
        raise InvalidArgumentError(
            "give one of --window (the prediction log), --current (rows from a file) and "
            "--batch (a batch job's rows); with --current or --batch the whole input is the "
            "window"
        )
    if request.current is not None:
        return read_window(request.current, datasets)
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


def _reference(
    request: MonitorRequest, info: VersionInfo, registry: Registry, datasets: Datasets
) -> tuple[pd.DataFrame | DatasetProfile, str, int]:
    if request.reference is not None:
        window = read_window(request.reference, datasets)
        return window.frame, f"{window.description}, raw rows", window.rows
    stored = registry.profiles.latest(info.name, info.version)
    if stored is None:
        raise NotFoundError(
            f"{info.name}:{info.version} has no reference profile; run 'shipyard profile "
            f"{info.name}:{info.version} --data FILE' with its training or evaluation "
            "rows, or pass --reference FILE"
        )
    record, data = stored
    return data, f"profile of {info.name}:{info.version} ({record.source})", data.rows


def _has(reference: pd.DataFrame | DatasetProfile, column: str) -> bool:
    return column in reference.columns  # a frame's columns, or a profile's by name


def _categories(
    reference: pd.DataFrame | DatasetProfile, categorical: frozenset[str], features: list[str]
) -> dict[str, list[str]]:
    wanted = [c for c in features if c in categorical]
    if isinstance(reference, DatasetProfile):
        return {
            c: list(reference.columns[c].frequencies or {})
            for c in wanted
            if c in reference.columns
        }
    return {c: [str(v) for v in reference[c].dropna().unique()] for c in wanted}


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
    built = registry.profiles.build(loaded, window.frame)
    source = f"on demand: {window.description}"
    registry.profiles.save(info.name, info.version, built, source)
    return info, built, source


__all__ = ["MonitorOutcome", "MonitorRequest", "profile", "profile_reference", "run_monitor"]

"""The data a monitor looks at: a window of the prediction log, or rows from a file or dataset.

A window is a DataFrame with the model's input columns, its outputs (``prediction``,
``proba_<class>``) and, depending on where it came from, the columns that tie a row to its
ground truth: ``request_id`` and ``row`` (the online log), or the batch job's key columns.
:data:`META_COLUMNS` are never monitored as features.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipyard.core.exceptions import DataSourceError, InvalidArgumentError
from shipyard.core.refs import is_dataset_ref
from shipyard.core.schema import PREDICTION, proba_column
from shipyard.datasets import Datasets, SourceSettings, read_source
from shipyard.datasets.prediction_log import LoggedRequest, PredictionLogStore
from shipyard.datasets.predictions import JobInfo
from shipyard.store import Database

#: Columns of a window that say where a row came from, not what the model saw.
META_COLUMNS = frozenset(
    {
        "request_id",
        "row",
        "at",
        "version",
        "row_id",
        "model",
        "model_version",
        "scored_at",
        "batch_id",
    }
)


@dataclass(frozen=True)
class Window:
    """Rows to monitor and where they came from."""

    frame: pd.DataFrame
    description: str
    start: datetime | None = None
    end: datetime | None = None
    #: the column whose values feedback labels name (a batch job's first key, or row_id)
    key: str | None = None

    @property
    def rows(self) -> int:
        """Rows in the window."""
        return len(self.frame)


def log_window(
    database: Database,
    model: str,
    start: datetime,
    end: datetime,
    *,
    version: int | None = None,
) -> Window:
    """The answered (not shadow) predictions of ``model`` logged in ``[start, end)``."""
    records: list[dict[str, Any]] = []
    for entry in PredictionLogStore(database).answered(model, start, end, version=version):
        records.extend(_log_rows(entry))
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    which = f"{model}:{version}" if version is not None else model
    return Window(
        frame,
        f"prediction log of {which}, {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC "
        f"({len(frame):,} rows)",
        start,
        end,
    )


def _log_rows(entry: LoggedRequest) -> list[dict[str, Any]]:
    outputs = entry.outputs
    predictions = outputs.get("predictions") or []
    probabilities = outputs.get("probabilities")
    classes = outputs.get("classes") or []
    rows = []
    for number, values in enumerate(entry.inputs):
        row = dict(values)
        row["request_id"] = entry.request_id
        row["row"] = number
        row["at"] = entry.at
        row["version"] = entry.version
        if number < len(predictions):
            row[PREDICTION] = predictions[number]
        if probabilities and number < len(probabilities):
            for label, value in zip(classes, probabilities[number], strict=False):
                row[proba_column(label)] = value
        rows.append(row)
    return rows


def read_window(uri: str, datasets: Datasets) -> Window:
    """Every row of a CSV or Parquet file or folder, or of a dataset ``ZONE/NAME[:V]``."""
    if is_dataset_ref(uri):
        info = datasets.get(uri)
        frame = datasets.read(info.ref)
        return Window(frame, f"dataset {info.ref} ({len(frame):,} rows)")
    path = Path(uri).expanduser().resolve()
    if not path.exists():
        raise DataSourceError(
            f"{uri} does not exist: give a CSV or Parquet file or folder, or a dataset "
            "ZONE/NAME[:VERSION] such as processed/customers"
        )
    text = path.is_file() and path.suffix.lower() in (".csv", ".txt")
    source = SourceSettings(kind="csv" if text else "parquet", path=str(path))
    frame = read_source(source, path.parent)  # pandas' reading: an empty field is missing
    return Window(frame, f"{path.name} ({len(frame):,} rows)")


def batch_window(job: JobInfo, datasets: Datasets) -> Window:
    """A finished batch job's input rows beside its predictions, keyed as its feedback is.

    The job's parts hold its rows in input order, so the input (re-read from where the job
    read it: a CSV or Parquet file or folder, or a dataset version) lines up row for row.
    """
    if job.status != "succeeded" or job.dataset is None:
        raise InvalidArgumentError(
            f"batch job {job.id} is {job.status}, so it has no predictions to monitor; "
            "finish it with 'shipyard predict ... --resume' or choose another job"
        )
    kind, _, where = job.input.partition(":")
    if kind not in ("csv", "parquet", "dataset"):
        raise InvalidArgumentError(
            f"batch job {job.id} read {job.input.split(':', 1)[0]} input, which shipyard does not "
            "read again; export the rows it scored to a file and pass --current FILE"
        )
    inputs = read_window(where, datasets).frame
    outputs = datasets.read(job.dataset)
    if len(inputs) != len(outputs):
        raise DataSourceError(
            f"the input of batch job {job.id} ({where}) now has {len(inputs):,} rows but the job "
            f"scored {len(outputs):,}: it changed since; pass the rows it scored with --current"
        )
    extra = [c for c in inputs.columns if c not in outputs.columns]
    frame = pd.concat([inputs[extra].reset_index(drop=True), outputs], axis=1)
    key = job.key_columns[0] if job.key_columns else "row_id"
    described = f"batch job {job.id} of {job.model}:{job.version} ({len(frame):,} rows of {where})"
    return Window(frame, described, job.started_at, job.finished_at, key)


def output_columns(frame: pd.DataFrame) -> list[str]:
    """The model-output columns of a window, in order."""
    return [c for c in frame.columns if c == PREDICTION or str(c).startswith("proba_")]


def numeric_outputs(frame: pd.DataFrame) -> pd.DataFrame:
    """A window's output columns with probabilities as floats (the log keeps JSON numbers)."""
    out = frame[output_columns(frame)].copy()
    for column in out.columns:
        if str(column).startswith("proba_"):
            out[column] = pd.to_numeric(out[column], errors="coerce").astype(np.float64)
    return out

"""The data a monitor looks at: a window of the prediction log, or rows from a file or dataset.

A window holds the model's input columns, its outputs (``prediction``, ``proba_<class>``) and,
depending on where it came from, the columns that tie a row to its ground truth:
``request_id`` and ``row`` (the online log), or the batch job's key columns.
:data:`META_COLUMNS` are never monitored as features.

Rows read from Parquet stay Arrow (:mod:`shipyard.monitoring.parquet`: only the columns
asked for, text dictionary-encoded, each column typed as pandas would type it): a file or
folder given with ``--current`` or ``--reference`` is left on disk and read a column or a
chunk of rows at a time; a dataset version and a batch job's input and predictions are read
whole. Rows of the prediction log (JSON values) and of CSV files stay a pandas DataFrame;
:func:`as_table` turns one into Arrow column by column.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.core.exceptions import DataSourceError, InvalidArgumentError
from shipyard.core.refs import is_dataset_ref
from shipyard.core.schema import PREDICTION, proba_column
from shipyard.datasets import Datasets, SourceSettings, read_source
from shipyard.datasets.prediction_log import LoggedRequest, PredictionLogStore
from shipyard.datasets.predictions import JobInfo
from shipyard.monitoring.parquet import Keep, ParquetRows
from shipyard.statistics.quality import arrow_column
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
    """Rows to monitor and where they came from.

    ``data`` is an Arrow table (rows read from Parquet), Parquet left on disk (a reference
    read lazily) or a pandas DataFrame (the prediction log, CSV files); ``encoded`` names
    the text columns the reader dictionary-encoded, whose type is still text.
    """

    data: pa.Table | pd.DataFrame | ParquetRows
    description: str
    start: datetime | None = None
    end: datetime | None = None
    #: the column whose values feedback labels name (a batch job's first key, or row_id)
    key: str | None = None
    encoded: frozenset[str] = frozenset()

    @property
    def rows(self) -> int:
        """Rows in the window."""
        return self.data.rows if isinstance(self.data, ParquetRows) else len(self.data)

    @property
    def columns(self) -> list[str]:
        """The window's column names, in order."""
        if isinstance(self.data, pd.DataFrame):
            return [str(c) for c in self.data.columns]
        if isinstance(self.data, ParquetRows):
            return list(self.data.names)
        return list(self.data.column_names)


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


def read_window(uri: str, datasets: Datasets, keep: Keep = None, *, lazy: bool = False) -> Window:
    """The rows of a CSV or Parquet file or folder, or of a dataset ``ZONE/NAME[:V]``.

    ``keep`` chooses the columns (all when None; a CSV file is read whole, then cut);
    ``lazy`` leaves a Parquet file or folder on disk, to be read by column or in batches.
    """
    if is_dataset_ref(uri):
        return _read_dataset(uri, datasets, keep)
    path = Path(uri).expanduser().resolve()
    if not path.exists():
        raise DataSourceError(
            f"{uri} does not exist: give a CSV or Parquet file or folder, or a dataset "
            "ZONE/NAME[:VERSION] such as processed/customers"
        )
    if path.is_file() and path.suffix.lower() in (".csv", ".txt"):
        source = SourceSettings(kind="csv", path=str(path))
        frame = read_source(source, path.parent)  # pandas' reading: an empty field is missing
        if keep is not None:
            frame = frame[[c for c in frame.columns if keep(str(c))]]
        return Window(frame, f"{path.name} ({len(frame):,} rows)")
    rows = ParquetRows(path, keep)
    data = rows if lazy else rows.table()
    return Window(data, f"{path.name} ({rows.rows:,} rows)", encoded=rows.encoded)


def _read_dataset(ref: str, datasets: Datasets, keep: Keep) -> Window:
    """A dataset version's Parquet parts (each verified against its sha256) as one table."""
    info = datasets.get(ref)
    tables, encoded = [], frozenset[str]()
    for digest in datasets.parts(info):
        with datasets.local_part(digest) as path:
            rows = ParquetRows(path, keep)
            tables.append(rows.table())
        encoded |= rows.encoded
    table = pa.concat_tables(tables, promote_options="permissive")
    return Window(table, f"dataset {info.ref} ({table.num_rows:,} rows)", encoded=encoded)


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
    scored = _read_dataset(job.dataset, datasets, None)
    taken = set(scored.columns)
    inputs = read_window(where, datasets, keep=lambda name: name not in taken)
    if inputs.rows != scored.rows:
        raise DataSourceError(
            f"the input of batch job {job.id} ({where}) now has {inputs.rows:,} rows but the job "
            f"scored {scored.rows:,}: it changed since; pass the rows it scored with --current"
        )
    table, outputs = as_table(inputs), as_table(scored)
    for name in outputs.column_names:
        table = table.append_column(name, outputs.column(name))
    key = job.key_columns[0] if job.key_columns else "row_id"
    described = (
        f"batch job {job.id} of {job.model}:{job.version} ({table.num_rows:,} rows of {where})"
    )
    return Window(
        table, described, job.started_at, job.finished_at, key, inputs.encoded | scored.encoded
    )


def as_table(window: Window) -> pa.Table:
    """The window's rows as an Arrow table (a DataFrame converted column by column)."""
    if isinstance(window.data, pa.Table):
        return window.data
    if isinstance(window.data, ParquetRows):
        return window.data.table()
    frame = window.data
    names = [str(c) for c in frame.columns]
    arrays = [arrow_column(frame.iloc[:, i]) for i in range(frame.shape[1])]
    return pa.table(dict(zip(names, arrays, strict=True))) if names else pa.table({})


def plain(table: pa.Table, encoded: frozenset[str]) -> pa.Table:
    """``table`` with the columns in ``encoded`` back to text (their type in the data)."""
    for index, name in enumerate(table.column_names):
        column = table.column(index)
        if name in encoded and pa.types.is_dictionary(column.type):
            table = table.set_column(index, name, pc.cast(column, column.type.value_type))
    return table


def to_frame(table: pa.Table, encoded: frozenset[str]) -> pd.DataFrame:
    """Rows of a window table as pandas reads them (encoded text columns as text)."""
    frame: pd.DataFrame = plain(table, encoded).to_pandas()
    return frame


def chunks(window: Window, columns: Sequence[str], rows: int) -> Iterator[pd.DataFrame]:
    """The ``columns`` of ``window`` in chunks of at most ``rows`` rows, in row order, each
    as the pandas frame the model takes (rows of a DataFrame: the frame's own rows)."""
    data, names = window.data, list(columns)
    if isinstance(data, ParquetRows):
        for batch in data.batches(names, rows):
            yield to_frame(batch, window.encoded)
    elif isinstance(data, pd.DataFrame):
        for start in range(0, len(data), rows):
            yield data.iloc[start : start + rows][names]
    else:
        for start in range(0, data.num_rows, rows):
            yield to_frame(data.slice(start, rows).select(names), window.encoded)


def output_columns(names: Sequence[str]) -> list[str]:
    """The model-output columns among ``names``, in order."""
    return [c for c in names if c == PREDICTION or str(c).startswith("proba_")]


def numeric_outputs(table: pa.Table) -> pa.Table:
    """A window's output columns with probabilities as float64 (the log keeps JSON numbers)."""
    names = output_columns(table.column_names)
    out = table.select(names)
    for index, name in enumerate(names):
        column = out.column(index)
        if not name.startswith("proba_") or column.type == pa.float64():
            continue
        if pa.types.is_floating(column.type) or pa.types.is_integer(column.type):
            numbers = pc.cast(column, pa.float64())
        else:
            values = pd.to_numeric(column.to_pandas(), errors="coerce").astype(np.float64)
            numbers = pa.chunked_array([pa.array(values, from_pandas=True)])
        out = out.set_column(index, name, numbers)
    return out

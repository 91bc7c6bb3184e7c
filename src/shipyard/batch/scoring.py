"""Scoring one chunk: input rows in, a prediction table out.

The output of every chunk has the same columns, in this order:

- the job's key columns (``--key customer_id``), copied from the input, or ``row_id`` (the
  row's 0-based position in the input) when no key is given;
- ``prediction``; for classifiers one ``proba_<class>`` column per class;
- ``model``, ``model_version``, ``scored_at`` (UTC, the chunk's scoring time) and
  ``batch_id`` (the job).

A classifier's labels are taken from its probabilities (one model call instead of two) only
when that gives exactly the model's own ``predict`` on the first chunk scored; otherwise both
are called.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from shipyard.core.exceptions import SchemaError
from shipyard.flavors.base import LoadedModel

#: Columns every prediction row carries besides its keys and the model's answers.
META_COLUMNS = ("model", "model_version", "scored_at", "batch_id")
ROW_ID = "row_id"


def proba_column(label: Any) -> str:
    """The output column holding the probability of class ``label``."""
    return f"proba_{label}"


class Scorer:
    """Scores chunks with one loaded model for one job."""

    def __init__(self, model: LoadedModel, keys: Sequence[str], batch_id: str) -> None:
        if model.signature is None or not model.signature.inputs:
            raise SchemaError(
                f"{model!r} has no input signature, so shipyard cannot tell its columns from "
                "the input's other columns; register it with an input example"
            )
        self.model = model
        self.keys = list(keys)
        self.batch_id = batch_id
        self.features = model.signature.columns
        clash = [k for k in self.keys if k in (*META_COLUMNS, "prediction")]
        if clash:
            raise SchemaError(
                f"key column {clash[0]!r} has the name of an output column; rename it first",
                column=clash[0],
            )
        classes = model.classes if model.has_proba else None
        self.classes = list(np.asarray(classes).tolist()) if classes is not None else None
        self._derive: bool | None = None  # decided on the first chunk

    @property
    def name(self) -> str:
        """The model's name."""
        return str(self.model.name)

    @property
    def version(self) -> int:
        """The model's version."""
        return int(self.model.version or 0)

    def check_columns(self, names: Sequence[str]) -> None:
        """Refuse an input that lacks a feature or key column, naming it."""
        present = set(names)
        for column in self.features:
            if column not in present:
                raise SchemaError(
                    f"the input has no column {column!r}, which {self.name}:{self.version} "
                    f"needs; its features are {', '.join(self.features)}",
                    column=column,
                )
        for key in self.keys:
            if key not in present:
                raise SchemaError(
                    f"key column {key!r} is not in the input (its columns: "
                    f"{', '.join(names)}); name existing columns with --key",
                    column=key,
                )

    def score(self, table: pa.Table, first_row: int) -> pa.Table:
        """The prediction table of the input rows ``table`` (row ids from ``first_row``)."""
        self.check_columns(table.column_names)
        frame = table.select(self.features).to_pandas()
        prepared = self.model.prepare(frame)
        predictor = self.model.predictor
        labels: np.ndarray
        probabilities: np.ndarray | None = None
        if predictor.predict_proba is not None and self.classes is not None:
            probabilities = np.asarray(predictor.predict_proba(prepared))
            derived = np.asarray(self.classes)[np.argmax(probabilities, axis=1)]
            if self._derive is None:
                own = np.asarray(predictor.predict(prepared))
                self._derive = bool(np.array_equal(derived, own))
                labels = own
            else:
                labels = derived if self._derive else np.asarray(predictor.predict(prepared))
        else:
            labels = np.asarray(predictor.predict(prepared))
        columns: dict[str, Any] = {}
        if self.keys:
            for key in self.keys:
                columns[key] = table.column(key)
        else:
            columns[ROW_ID] = pa.array(
                np.arange(first_row, first_row + table.num_rows, dtype=np.int64)
            )
        columns["prediction"] = pa.array(_plain(labels))
        if probabilities is not None and self.classes is not None:
            for number, label in enumerate(self.classes):
                columns[proba_column(label)] = pa.array(probabilities[:, number])
        rows = table.num_rows
        now = pd.Timestamp(datetime.now(UTC))
        columns["model"] = pa.repeat(pa.scalar(self.name, pa.string()), rows)
        columns["model_version"] = pa.repeat(pa.scalar(self.version, pa.int32()), rows)
        columns["scored_at"] = pa.repeat(pa.scalar(now, pa.timestamp("us", "UTC")), rows)
        columns["batch_id"] = pa.repeat(pa.scalar(self.batch_id, pa.string()), rows)
        return pa.table(columns)


def _plain(values: np.ndarray) -> Any:
    """Labels as an Arrow-friendly array (object arrays of strings become strings)."""
    if values.dtype == object:
        return [
            None if v is None else (v if isinstance(v, str | int | float | bool) else str(v))
            for v in values.tolist()
        ]
    return values.reshape(-1)

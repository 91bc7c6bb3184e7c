"""Scoring one chunk: input rows in, a prediction table out.

The output of every chunk has the same columns, in this order:

- the job's key columns (``--key customer_id``), copied from the input, or ``row_id`` (the
  row's 0-based position in the input) when no key is given;
- ``prediction``; for classifiers one ``proba_<class>`` column per class;
- ``model``, ``model_version``, ``scored_at`` (UTC, the chunk's scoring time) and
  ``batch_id`` (the job).

A classifier's labels always come from its own ``predict``, never from the argmax of its
probabilities: the two differ for tuned thresholds (``FixedThresholdClassifier``), Platt-scaled
SVMs and custom wrappers, and rows on which they agree prove nothing about the next rows.
Calling both costs two passes over the trees; for a scikit-learn HistGradientBoostingClassifier
(alone or at the end of a Pipeline) the scorer instead computes the raw scores once and derives
labels and probabilities from them exactly as scikit-learn's own ``predict`` and
``predict_proba`` do — alone, through :class:`~shipyard.flavors.kernels.HistGradientBoostingKernel`
on a row-major matrix — adopted only after both equal the model's own answers on the first rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from shipyard.core.exceptions import SchemaError
from shipyard.flavors.base import LoadedModel
from shipyard.flavors.kernels import HistGradientBoostingKernel

#: Columns every prediction row carries besides its keys and the model's answers.
META_COLUMNS = ("model", "model_version", "scored_at", "batch_id")
ROW_ID = "row_id"
#: Rows of the first chunk on which the one-pass path must equal the model's own answers.
_CHECK_ROWS = 2048


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
        classes = model.classes if model.has_proba else None
        self.classes = list(np.asarray(classes).tolist()) if classes is not None else None
        outputs = {*META_COLUMNS, "prediction", *(proba_column(c) for c in self.classes or [])}
        clash = [k for k in self.keys if k in outputs]
        if clash or len(set(self.keys)) != len(self.keys):
            name = clash[0] if clash else next(k for k in self.keys if self.keys.count(k) > 1)
            raise SchemaError(
                f"key column {name!r} is named twice, or like an output column "
                f"({', '.join(sorted(outputs))}); give each key once, or rename it first",
                column=name,
            )
        #: labels and probabilities from one pass (see the module docstring); False: not used
        self._joint: Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]] | Literal[False] | None
        self._joint = None

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
        probabilities: np.ndarray | None = None
        if self._joint is None and self.classes is not None:
            self._joint = _joint_hgb(predictor.native, prepared, predictor) or False
        if self._joint:
            labels, probabilities = self._joint(prepared)
        else:
            if predictor.predict_proba is not None and self.classes is not None:
                probabilities = np.asarray(predictor.predict_proba(prepared))
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


def _joint_hgb(
    native: Any, sample: pd.DataFrame, predictor: Any
) -> Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]] | None:
    """One-pass labels and probabilities for a HistGradientBoostingClassifier, when exact."""
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.pipeline import Pipeline
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        return None
    head: Any = None
    model = native
    if isinstance(native, Pipeline):
        head, model = native[:-1], native[-1]
    if type(model) is not HistGradientBoostingClassifier or predictor.predict_proba is None:
        return None
    if not hasattr(model, "_raw_predict") or not hasattr(model, "_loss"):
        return None
    kernel = HistGradientBoostingKernel.build(model) if head is None else None
    names = [str(n) for n in getattr(model, "feature_names_in_", sample.columns)]

    def raw_scores(frame: pd.DataFrame) -> np.ndarray:
        if kernel is not None:
            # the trees walk rows: a row-major matrix in the fit's column order is ~20 % faster
            # than the column-major array scikit-learn makes of a DataFrame
            matrix = np.ascontiguousarray(frame[names].to_numpy(dtype=np.float64))
            return kernel.raw_predict(matrix)
        data = head.transform(frame) if head is not None else frame
        return np.asarray(model._raw_predict(data))  # what predict and predict_proba compute

    def joint(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        raw = raw_scores(frame)
        binary = raw.shape[1] == 1
        encoded = (raw.ravel() > 0).astype(int) if binary else np.argmax(raw, axis=1)
        return model.classes_[encoded], np.asarray(model._loss.predict_proba(raw))

    rows = sample.iloc[:_CHECK_ROWS]
    try:
        labels, probabilities = joint(rows)
    except Exception:  # a scikit-learn whose internals moved: call the public methods
        return None
    same = np.array_equal(labels, np.asarray(predictor.predict(rows))) and np.array_equal(
        probabilities, np.asarray(predictor.predict_proba(rows))
    )
    return joint if same else None


def _plain(values: np.ndarray) -> Any:
    """Labels as an Arrow-friendly array (object arrays of strings become strings)."""
    if values.dtype == object:
        return [
            None if v is None else (v if isinstance(v, str | int | float | bool) else str(v))
            for v in values.tolist()
        ]
    return values.reshape(-1)

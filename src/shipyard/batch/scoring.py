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
Once adopted, a chunk whose Arrow column types are exactly the signature's numeric dtypes (and
that holds no missing value where the signature allows none) goes straight from Arrow into that
matrix: the DataFrame, its validation and its copy are skipped, since validating such a chunk
changes nothing (``Signature.validate`` returns a column of the right dtype unchanged). Any
other chunk takes the validated path, which raises the signature's errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from shipyard.core.exceptions import SchemaError
from shipyard.core.schema import PREDICTION, Signature, proba_column
from shipyard.flavors.base import LoadedModel
from shipyard.flavors.kernels import HistGradientBoostingKernel

#: Columns every prediction row carries besides its keys and the model's answers.
META_COLUMNS = ("model", "model_version", "scored_at", "batch_id")
ROW_ID = "row_id"
#: Rows of the first chunk on which the one-pass path must equal the model's own answers.
_CHECK_ROWS = 2048


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
        outputs = {*META_COLUMNS, PREDICTION, *(proba_column(c) for c in self.classes or [])}
        clash = [k for k in self.keys if k in outputs]
        if clash or len(set(self.keys)) != len(self.keys):
            name = clash[0] if clash else next(k for k in self.keys if self.keys.count(k) > 1)
            raise SchemaError(
                f"key column {name!r} is named twice, or like an output column "
                f"({', '.join(sorted(outputs))}); give each key once, or rename it first",
                column=name,
            )
        #: labels and probabilities from one pass (see the module docstring); False: not used
        self._joint: _OnePass | Literal[False] | None = None

    @property
    def name(self) -> str:
        """The model's name."""
        return str(self.model.name)

    @property
    def version(self) -> int:
        """The model's version."""
        return int(self.model.version or 0)

    def float_features(self) -> dict[str, pa.DataType]:
        """The floating-point features, as the Arrow type a text input should read them as."""
        signature = self.model.signature
        inputs = signature.inputs if signature is not None else ()
        return {c.name: pa.float64() for c in inputs if c.dtype.startswith("float")}

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
        answers = self._joint.arrow(table) if self._joint else None
        probabilities: np.ndarray | None
        if answers is not None:
            labels, probabilities = answers
        else:
            labels, probabilities = self._validated(table)
        columns: dict[str, Any] = {}
        if self.keys:
            for key in self.keys:
                columns[key] = table.column(key)
        else:
            columns[ROW_ID] = pa.array(
                np.arange(first_row, first_row + table.num_rows, dtype=np.int64)
            )
        columns[PREDICTION] = pa.array(_plain(labels))
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

    def _validated(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels and probabilities of a chunk through the signature-validated DataFrame."""
        prepared = self.model.prepare(table.select(self.features).to_pandas())
        predictor = self.model.predictor
        if self._joint is None and self.classes is not None:
            self._joint = _joint_hgb(predictor.native, prepared, predictor, self.model) or False
        if self._joint:
            return self._joint.frame(prepared)
        probabilities: np.ndarray | None = None
        if predictor.predict_proba is not None and self.classes is not None:
            probabilities = np.asarray(predictor.predict_proba(prepared))
        return np.asarray(predictor.predict(prepared)), probabilities


class _OnePass:
    """Labels and probabilities of a HistGradientBoostingClassifier from one tree pass."""

    def __init__(
        self, model: Any, kernel: HistGradientBoostingKernel | None, head: Any, names: list[str]
    ) -> None:
        self.model = model
        self.kernel = kernel
        self.head = head
        self.names = names
        #: column -> (Arrow type it must have, whether missing values are allowed), for
        #: :meth:`arrow`; empty when a chunk can never skip the validated path
        self.exact: dict[str, tuple[pa.DataType, bool]] = {}

    def allow_arrow(self, signature: Signature) -> None:
        """Let chunks whose types are exactly the signature's numeric dtypes skip pandas."""
        if self.kernel is None:
            return
        exact: dict[str, tuple[pa.DataType, bool]] = {}
        for name in self.names:
            spec = signature.column(name)
            if not spec.is_numeric:
                return
            exact[name] = (pa.from_numpy_dtype(np.dtype(spec.dtype)), spec.nullable)
        self.exact = exact

    def frame(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """From a validated frame."""
        if self.kernel is not None:
            # the trees walk rows: a row-major matrix in the fit's column order is ~20 % faster
            # than the column-major array scikit-learn makes of a DataFrame
            matrix = np.ascontiguousarray(frame[self.names].to_numpy(dtype=np.float64))
            return self._answers(self.kernel.raw_predict(matrix))
        data = self.head.transform(frame) if self.head is not None else frame
        return self._answers(np.asarray(self.model._raw_predict(data)))  # predict's own scores

    def arrow(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray] | None:
        """Straight from Arrow, or ``None`` when the chunk must be validated first."""
        if not self.exact or self.kernel is None:
            return None
        matrix = np.empty((table.num_rows, len(self.names)), dtype=np.float64)
        for number, name in enumerate(self.names):
            column = table.column(name)
            arrow_type, nullable = self.exact[name]
            if column.type != arrow_type or (not nullable and column.null_count):
                return None
            values = column.to_numpy()
            if not nullable and values.dtype.kind == "f" and np.isnan(values).any():
                return None  # validation names the column
            matrix[:, number] = values
        return self._answers(self.kernel.raw_predict(matrix))

    def _answers(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        binary = raw.shape[1] == 1
        encoded = (raw.ravel() > 0).astype(int) if binary else np.argmax(raw, axis=1)
        return self.model.classes_[encoded], np.asarray(self.model._loss.predict_proba(raw))


def _joint_hgb(
    native: Any, sample: pd.DataFrame, predictor: Any, loaded: LoadedModel
) -> _OnePass | None:
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
    joint = _OnePass(model, kernel, head, names)
    rows = sample.iloc[:_CHECK_ROWS]
    try:
        labels, probabilities = joint.frame(rows)
    except Exception:  # a scikit-learn whose internals moved: call the public methods
        return None
    same = np.array_equal(labels, np.asarray(predictor.predict(rows))) and np.array_equal(
        probabilities, np.asarray(predictor.predict_proba(rows))
    )
    if not same:
        return None
    if loaded.signature is not None and set(names) == set(loaded.signature.columns):
        joint.allow_arrow(loaded.signature)
    return joint


def _plain(values: np.ndarray) -> Any:
    """Labels as an Arrow-friendly array (object arrays of strings become strings)."""
    if values.dtype == object:
        return [
            None if v is None else (v if isinstance(v, str | int | float | bool) else str(v))
            for v in values.tolist()
        ]
    return values.reshape(-1)

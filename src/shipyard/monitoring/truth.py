"""Performance of a window: its rows with ground truth, the metrics, and the business value.

Ground truth comes from a ``target`` column of the current data, or from feedback
(:mod:`shipyard.datasets.feedback`): by ``key`` (a batch job's key column) or by request id
and row (the prediction log; a request id logged twice counts once, its last entry).
Labels arrive as JSON or CSV values, so they are read back as the model's classes: ``"1"``
or ``1.0`` for class ``1``, ``"true"`` / ``"0"`` for booleans; a label that is none of the
classes is an error naming it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from shipyard.core.exceptions import InvalidArgumentError, SchemaError
from shipyard.core.schema import PREDICTION, Signature, proba_column
from shipyard.datasets.feedback import FeedbackStore
from shipyard.monitoring.columns import WindowColumns
from shipyard.registry import VersionInfo
from shipyard.statistics.performance import compare_to_baseline, performance
from shipyard.statistics.report import Performance
from shipyard.store import Database
from shipyard.value import ValueSettings, business_value

#: The window's truth column (a name no user column has).
LABEL = "__shipyard_label__"
_TRUE, _FALSE = {"true", "1", "1.0", "yes"}, {"false", "0", "0.0", "no"}


def labelled_rows(
    columns: WindowColumns, model: str, database: Database, *, key: str | None, target: str | None
) -> pd.DataFrame:
    """The rows of the window that have ground truth, with it in :data:`LABEL`.

    Only the columns the labels and the metrics need are read (the truth column or key,
    the model's outputs), and only the labels of the window's keys or request ids are read
    from the feedback table.
    """
    names = list(columns.schema.names)
    outputs = [c for c in names if c == PREDICTION or c.startswith("proba_")]
    if target is not None:
        _require(names, target, "--target")
        frame = _frame(columns, [target, *outputs])
        return frame.assign(**{LABEL: frame[target]}).dropna(subset=[LABEL])
    store = FeedbackStore(database)
    if key is not None:
        _require(names, key, "--key")
        return store.batch_truth(model, _frame(columns, [key, *outputs]), key, label=LABEL)
    if "request_id" not in names:
        return _frame(columns, outputs).iloc[:0].assign(**{LABEL: []})
    frame = _frame(columns, ["request_id", "row", *outputs])
    # a client may reuse a request id (retries): its last logged answer is the one labelled
    last = frame.drop_duplicates(subset=["request_id", "row"], keep="last")
    found = store.lookup(model, "request_id", last["request_id"].astype(str).unique())
    labels = pd.DataFrame(
        [(rid, row, label) for rid, rows in found.items() for row, label in rows.items()],
        columns=["request_id", "row", LABEL],
    )
    return last.merge(labels.astype({"row": "int64"}), on=["request_id", "row"], how="inner")


def _frame(columns: WindowColumns, names: list[str]) -> pd.DataFrame:
    """Some columns of the window (each once, in order) as pandas reads them."""
    frame: pd.DataFrame = columns.table(names).to_pandas()
    return frame


def _require(names: list[str], column: str, option: str) -> None:
    if column not in names:
        raise SchemaError(
            f"{option} {column!r} is not a column of the current data; its columns: "
            f"{', '.join(names)}",
            column=column,
        )


def as_classes(values: Sequence[Any], classes: Sequence[Any], what: str) -> np.ndarray:
    """``values`` read as the model's ``classes`` (see the module docstring)."""
    lookup: dict[str, Any] = {}
    for label in classes:
        lookup[str(label)] = label
        if isinstance(label, bool | np.bool_):
            for text in _TRUE if label else _FALSE:
                lookup[text] = label
        elif isinstance(label, int | np.integer):
            lookup[f"{float(label)}"] = label
    out, unknown = [], []
    for value in values:
        text = str(value).strip()
        found = lookup.get(text, lookup.get(text.lower()))
        if found is None:
            unknown.append(value)
        out.append(found)
    if unknown:
        shown = ", ".join(repr(v) for v in list(dict.fromkeys(unknown))[:5])
        raise SchemaError(
            f"{len(unknown)} {what} are not classes of the model ({shown}); its classes are "
            f"{', '.join(repr(c) for c in classes)}: send the class itself as the label"
        )
    return np.asarray(out, dtype=np.asarray(classes).dtype)


def window_performance(
    truth: pd.DataFrame,
    info: VersionInfo,
    signature: Signature,
    value: ValueSettings | None,
    where: str,
) -> Performance | None:
    """Metrics of the labelled rows next to the registration's, and their business value."""
    if truth.empty or PREDICTION not in truth.columns:
        return None
    classes = signature.outputs.classes if signature.outputs is not None else None
    proba = None
    task: Literal["classification", "regression"]
    if classes is not None:
        task = "classification"
        y_true = as_classes(truth[LABEL].tolist(), classes, f"labels of {where}")
        y_pred = as_classes(truth[PREDICTION].tolist(), classes, "logged predictions")
        names = [proba_column(c) for c in classes]
        if all(n in truth.columns for n in names):
            proba = truth[names].to_numpy(dtype=np.float64)
    else:
        task = "regression"
        try:
            y_true = pd.to_numeric(truth[LABEL], errors="raise").to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise SchemaError(
                f"the labels of {where} must be numbers for a regression model: {exc}"
            ) from exc
        y_pred = truth[PREDICTION].to_numpy(dtype=np.float64)
    try:
        measured = performance(task, y_true, y_pred, proba=proba, classes=classes)
    except InvalidArgumentError as exc:
        return Performance(task, len(truth), error=exc.message)
    baseline = {k: v for k, v in info.metrics.items() if k in measured.metrics}
    return Performance(
        task,
        measured.rows,
        metrics=measured.metrics,
        baseline=baseline,
        comparison=compare_to_baseline(measured.metrics, baseline),
        value=_value(value, task, y_true, y_pred, proba, classes),
    )


def _value(
    value: ValueSettings | None,
    task: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None,
    classes: Sequence[Any] | None,
) -> Mapping[str, Any] | None:
    """The window's business value (``[value]``); the positive class is the last class."""
    if value is None:
        return None
    try:
        if task == "regression" or classes is None:
            return business_value(value, y_true, y_pred).metrics()
        positive = classes[-1]
        truth = (y_true == positive).astype(int)
        if proba is not None and proba.shape[1] == 2:
            return business_value(value, truth, proba=proba[:, -1]).metrics()
        return business_value(value, truth, (y_pred == positive).astype(int)).metrics()
    except (InvalidArgumentError, ValueError, TypeError) as exc:
        return {"error": str(getattr(exc, "message", exc))}

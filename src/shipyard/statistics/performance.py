"""Model performance once ground truth arrives: classification and regression metrics.

The numbers are scikit-learn's (``zero_division=0``), returned as plain finite Python
floats so they go straight into JSON, Prometheus gauges and gate rules. A metric that is
not defined for the data (ROC AUC with one class in ``y_true``, R² of one row) is left
out rather than reported as NaN. :func:`compare_to_baseline` sets them beside the numbers
recorded for the model at registration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn import metrics as skm

from shipyard.core.exceptions import InvalidArgumentError

Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class PerformanceReport:
    """The metrics of one window of predictions against their ground truth."""

    task: Task
    rows: int
    metrics: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return {"task": self.task, "rows": self.rows, "metrics": dict(self.metrics)}


def classification_metrics(
    y_true: Any,
    y_pred: Any,
    proba: Any | None = None,
    classes: Sequence[Any] | None = None,
    positive: Any | None = None,
) -> dict[str, float]:
    """Accuracy, precision, recall, f1, and with ``proba`` also roc_auc and log_loss.

    ``classes`` names the columns of ``proba`` in order (the model's ``classes_``); by
    default the sorted labels of ``y_true`` and ``y_pred``. With two classes, precision,
    recall and f1 are those of ``positive`` (default: the second of the sorted classes) and
    ``proba`` may be one column, the positive class's probability; with more classes they
    are macro averages and roc_auc is one-vs-rest, macro averaged.
    """
    truth, predicted = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    _same_length(truth, predicted)
    labels = _classes(truth, predicted, classes)
    for name, values in (("y_true", truth), ("y_pred", predicted)):
        unknown = pd.unique(values[~np.isin(values, labels)])
        if len(unknown):
            raise InvalidArgumentError(
                f"{name} holds labels that are not among the classes {labels.tolist()}: "
                f"{unknown[:5].tolist()}; pass classes= listing every label the model knows"
            )
    binary = len(labels) == 2
    if positive is None:
        positive = np.sort(labels)[1] if binary else None
    elif not bool(np.isin(positive, labels)):
        raise InvalidArgumentError(
            f"positive={positive!r} is not one of the classes {labels.tolist()}; "
            "pass one of them, or leave it out for the second of the sorted classes"
        )
    averaged: dict[str, Any] = (
        {"average": "binary", "pos_label": positive}
        if binary
        else {"average": "macro", "labels": labels}
    )
    out = {
        "accuracy": skm.accuracy_score(truth, predicted),
        "precision": skm.precision_score(truth, predicted, zero_division=0, **averaged),
        "recall": skm.recall_score(truth, predicted, zero_division=0, **averaged),
        "f1": skm.f1_score(truth, predicted, zero_division=0, **averaged),
    }
    if proba is not None:
        scores = _proba(proba, labels, positive, len(truth))
        present = np.isin(labels, truth)
        if binary and present.all():
            column = int(np.flatnonzero(labels == positive)[0])
            out["roc_auc"] = skm.roc_auc_score(truth == positive, scores[:, column])
        elif not binary and present.sum() >= 2:
            # Macro one-vs-rest AUC over the classes y_true holds: sklearn's number when it
            # holds them all, and still defined when a rare class is absent from the window.
            seen = np.flatnonzero(present)
            out["roc_auc"] = np.mean(
                [skm.roc_auc_score(truth == labels[i], scores[:, i]) for i in seen]
            )
        if len(labels) >= 2:
            # log_loss reads proba's columns as the sorted labels.
            order = np.argsort(labels, kind="stable")
            out["log_loss"] = skm.log_loss(truth, scores[:, order], labels=labels[order])
    return _finite(out)


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """Mean absolute error, root mean squared error, MAPE and R² (R² needs two rows)."""
    truth, predicted = _numbers(y_true, "y_true"), _numbers(y_pred, "y_pred")
    _same_length(truth, predicted)
    out = {
        "mae": skm.mean_absolute_error(truth, predicted),
        "rmse": skm.root_mean_squared_error(truth, predicted),
        "mape": skm.mean_absolute_percentage_error(truth, predicted),
    }
    if len(truth) >= 2:
        out["r2"] = skm.r2_score(truth, predicted)
    return _finite(out)


def performance(
    task: Task,
    y_true: Any,
    y_pred: Any,
    proba: Any | None = None,
    classes: Sequence[Any] | None = None,
    *,
    positive: Any | None = None,
) -> PerformanceReport:
    """The metrics of ``task`` for one window, as a :class:`PerformanceReport`.

    See :func:`classification_metrics` for ``proba``, ``classes`` and ``positive``.
    """
    if task == "classification":
        metrics = classification_metrics(y_true, y_pred, proba, classes, positive)
    elif task == "regression":
        if proba is not None or classes is not None or positive is not None:
            raise InvalidArgumentError(
                "proba, classes and positive apply to classification only; "
                "leave them out for task='regression'"
            )
        metrics = regression_metrics(y_true, y_pred)
    else:
        raise InvalidArgumentError(
            f"task must be 'classification' or 'regression' but got {task!r}"
        )
    return PerformanceReport(task=task, rows=len(np.asarray(y_true)), metrics=metrics)


def compare_to_baseline(
    current: Mapping[str, float], baseline: Mapping[str, float]
) -> dict[str, dict[str, float]]:
    """Each metric in both mappings: current, baseline, change and relative change.

    ``change`` is ``current - baseline``; ``relative_change`` divides it by ``|baseline|``
    and is left out when the baseline is 0.
    """
    out: dict[str, dict[str, float]] = {}
    for name, value in current.items():
        if name not in baseline:
            continue
        now, then = _metric(value, name, "current"), _metric(baseline[name], name, "baseline")
        entry = {"current": now, "baseline": then, "change": now - then}
        if then != 0:
            entry["relative_change"] = (now - then) / abs(then)
        out[name] = entry
    return out


def _labels(values: Any, name: str) -> npt.NDArray[Any]:
    arr = _one_dimensional(values, name)
    if len(arr) and bool(pd.isna(arr).any()):
        raise InvalidArgumentError(
            f"{name} has {int(pd.isna(arr).sum())} missing label(s); "
            "drop the rows without a label before computing metrics"
        )
    return arr


def _numbers(values: Any, name: str) -> npt.NDArray[np.float64]:
    arr = _one_dimensional(values, name)
    try:
        floats = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(
            f"{name} must hold numbers for regression metrics but got {arr.dtype} values "
            f"(e.g. {arr[0]!r}); use task='classification' for labels"
        ) from exc
    bad = int(np.count_nonzero(~np.isfinite(floats)))
    if bad:
        raise InvalidArgumentError(
            f"{name} has {bad} missing or infinite value(s); "
            "drop those rows before computing metrics"
        )
    return floats


def _one_dimensional(values: Any, name: str) -> npt.NDArray[Any]:
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise InvalidArgumentError(
            f"{name} must be one-dimensional (one value per row) but has shape {arr.shape}"
        )
    if len(arr) == 0:
        raise InvalidArgumentError(
            f"{name} is empty; metrics need at least one row with its ground truth"
        )
    return arr


def _same_length(truth: npt.NDArray[Any], predicted: npt.NDArray[Any]) -> None:
    if len(truth) != len(predicted):
        raise InvalidArgumentError(
            f"y_true has {len(truth)} rows but y_pred has {len(predicted)}; "
            "pass one prediction per row of ground truth, in the same order"
        )


def _classes(
    truth: npt.NDArray[Any], predicted: npt.NDArray[Any], classes: Sequence[Any] | None
) -> npt.NDArray[Any]:
    if classes is not None:
        labels = np.asarray(list(classes))
        if len(labels) == 0 or len(pd.unique(labels)) != len(labels):
            raise InvalidArgumentError(
                f"classes must list each class once but got {labels.tolist()}"
            )
        return labels
    if (truth.dtype.kind in "biuf") != (predicted.dtype.kind in "biuf"):
        raise InvalidArgumentError(
            f"y_true holds {truth.dtype} labels but y_pred holds {predicted.dtype}; "
            "give both the same type (e.g. decode predicted class indices to labels)"
        )
    return np.unique(np.concatenate([truth, predicted]))


def _proba(
    proba: Any, labels: npt.NDArray[Any], positive: Any, rows: int
) -> npt.NDArray[np.float64]:
    """``proba`` as one column per class, checked to be probabilities of the right shape."""
    try:
        scores = np.asarray(proba, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError("proba must hold numbers (class probabilities)") from exc
    if scores.ndim == 1 and len(labels) == 2:
        # One column: the probability of the positive class.
        scores = np.where(labels == positive, scores[:, None], 1.0 - scores[:, None])
    if scores.ndim != 2 or scores.shape[1] != len(labels):
        shape = f"{scores.shape[1]} columns" if scores.ndim == 2 else f"shape {scores.shape}"
        raise InvalidArgumentError(
            f"proba has {shape} but there are {len(labels)} classes {labels.tolist()}; "
            "pass one column per class and classes= in the order of proba's columns "
            "(the model's classes_)"
        )
    if scores.shape[0] != rows:
        raise InvalidArgumentError(
            f"proba has {scores.shape[0]} rows but y_true has {rows}; pass one row per label"
        )
    if not np.all((scores >= 0) & (scores <= 1)):
        raise InvalidArgumentError(
            "proba must hold probabilities between 0 and 1 (no NaN); pass predict_proba's output"
        )
    sums = scores.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=1e-6):
        worst = float(sums[np.argmax(np.abs(sums - 1.0))])
        raise InvalidArgumentError(
            f"each row of proba must sum to 1 but one sums to {worst:.6g}; pass a "
            "probability for every class, in the order of classes="
        )
    normalised: npt.NDArray[np.float64] = scores / sums[:, None]
    return normalised  # rows sum to 1 exactly, so log_loss does not warn about rounding


def _metric(value: Any, name: str, which: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise InvalidArgumentError(
            f"the {which} value of {name!r} is {number}; compare finite numbers only"
        )
    return number


def _finite(values: Mapping[str, Any]) -> dict[str, float]:
    """Plain Python floats, leaving out any metric the data left undefined."""
    floats = {name: float(value) for name, value in values.items()}
    return {name: value for name, value in floats.items() if math.isfinite(value)}

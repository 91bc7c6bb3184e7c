"""Performance metrics: scikit-learn's numbers as plain floats, undefined ones left out."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm

from shipyard.core.exceptions import InvalidArgumentError
from shipyard.statistics.performance import (
    PerformanceReport,
    classification_metrics,
    compare_to_baseline,
    performance,
    regression_metrics,
)


def probabilities(rng: np.random.Generator, rows: int, width: int) -> np.ndarray:
    """Random rows of class probabilities."""
    raw = rng.random((rows, width))
    return raw / raw.sum(axis=1, keepdims=True)


def assert_plain(metrics: dict[str, float]) -> None:
    """Every value is a finite Python float."""
    assert all(type(v) is float and math.isfinite(v) for v in metrics.values())


def test_binary_metrics_equal_sklearn() -> None:
    rng = np.random.default_rng(0)
    proba = probabilities(rng, 300, 2)
    y_true = (rng.random(300) < proba[:, 1]).astype(int)
    y_pred = (proba[:, 1] > 0.5).astype(int)
    got = classification_metrics(y_true, y_pred, proba=proba)
    assert got == pytest.approx(
        {
            "accuracy": skm.accuracy_score(y_true, y_pred),
            "precision": skm.precision_score(y_true, y_pred, zero_division=0),
            "recall": skm.recall_score(y_true, y_pred, zero_division=0),
            "f1": skm.f1_score(y_true, y_pred, zero_division=0),
            "roc_auc": skm.roc_auc_score(y_true, proba[:, 1]),
            "log_loss": skm.log_loss(y_true, proba),
        }
    )
    assert_plain(got)


def test_binary_string_labels_use_the_second_sorted_class_or_positive() -> None:
    rng = np.random.default_rng(1)
    proba = probabilities(rng, 200, 2)  # columns: "no", "yes"
    y_true = np.where(rng.random(200) < proba[:, 1], "yes", "no")
    y_pred = np.where(proba[:, 1] > 0.4, "yes", "no")
    got = classification_metrics(y_true, y_pred, proba=proba, classes=["no", "yes"])
    assert got["precision"] == pytest.approx(skm.precision_score(y_true, y_pred, pos_label="yes"))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y_true == "yes", proba[:, 1]))
    flipped = classification_metrics(y_true, y_pred, proba, ["no", "yes"], positive="no")
    assert flipped["recall"] == pytest.approx(skm.recall_score(y_true, y_pred, pos_label="no"))
    assert flipped["roc_auc"] == pytest.approx(got["roc_auc"])
    one_column = classification_metrics(y_true, y_pred, proba=proba[:, 1], classes=["no", "yes"])
    assert one_column == pytest.approx(got)


def test_multiclass_metrics_are_macro_averages() -> None:
    rng = np.random.default_rng(2)
    classes = ["a", "b", "c"]
    proba = probabilities(rng, 400, 3)
    y_true = np.array([rng.choice(classes, p=p) for p in proba])
    y_pred = np.array(classes)[proba.argmax(axis=1)]
    got = classification_metrics(y_true, y_pred, proba=proba, classes=classes)
    assert got == pytest.approx(
        {
            "accuracy": skm.accuracy_score(y_true, y_pred),
            "precision": skm.precision_score(y_true, y_pred, average="macro", zero_division=0),
            "recall": skm.recall_score(y_true, y_pred, average="macro", zero_division=0),
            "f1": skm.f1_score(y_true, y_pred, average="macro", zero_division=0),
            "roc_auc": skm.roc_auc_score(y_true, proba, multi_class="ovr", labels=classes),
            "log_loss": skm.log_loss(y_true, proba, labels=classes),
        }
    )
    assert_plain(got)


def test_proba_columns_follow_the_order_of_classes() -> None:
    rng = np.random.default_rng(3)
    proba = probabilities(rng, 100, 3)  # columns: 2, 0, 1
    y_true = rng.integers(0, 3, 100)
    y_pred = rng.integers(0, 3, 100)
    got = classification_metrics(y_true, y_pred, proba=proba, classes=[2, 0, 1])
    in_sorted_order = proba[:, [1, 2, 0]]
    assert got["log_loss"] == pytest.approx(skm.log_loss(y_true, in_sorted_order))
    expected_auc = skm.roc_auc_score(y_true, in_sorted_order, multi_class="ovr")
    assert got["roc_auc"] == pytest.approx(expected_auc)


def test_roc_auc_is_left_out_when_undefined() -> None:
    proba = np.array([[0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    one_class = classification_metrics([1, 1, 1], [1, 0, 1], proba=proba, classes=[0, 1])
    assert "roc_auc" not in one_class
    assert one_class["log_loss"] == pytest.approx(skm.log_loss([1, 1, 1], proba, labels=[0, 1]))
    no_proba = classification_metrics([0, 1, 1], [1, 0, 1])
    assert set(no_proba) == {"accuracy", "precision", "recall", "f1"}
    # A class absent from y_true drops out of the one-vs-rest average.
    three = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]])
    y_true = np.array([0, 1, 1, 0])
    partial = classification_metrics(y_true, [0, 1, 2, 0], proba=three, classes=[0, 1, 2])
    expected = np.mean([skm.roc_auc_score(y_true == i, three[:, i]) for i in (0, 1)])
    assert partial["roc_auc"] == pytest.approx(expected)


def test_zero_division_gives_zero() -> None:
    got = classification_metrics(["a", "a"], ["a", "a"], classes=["a", "b"])
    assert (got["precision"], got["recall"], got["f1"], got["accuracy"]) == (0.0, 0.0, 0.0, 1.0)


def test_regression_metrics_equal_sklearn() -> None:
    rng = np.random.default_rng(4)
    y_true = rng.normal(100, 10, 250)
    y_pred = y_true + rng.normal(0, 3, 250)
    got = regression_metrics(y_true, y_pred)
    assert got == pytest.approx(
        {
            "mae": skm.mean_absolute_error(y_true, y_pred),
            "rmse": skm.root_mean_squared_error(y_true, y_pred),
            "mape": skm.mean_absolute_percentage_error(y_true, y_pred),
            "r2": skm.r2_score(y_true, y_pred),
        }
    )
    assert_plain(got)
    assert set(regression_metrics([3.0], [2.5])) == {"mae", "rmse", "mape"}  # no r2 of one row


def test_performance_report_is_json() -> None:
    report = performance("regression", [1.0, 2.0, 3.0], [1.5, 2.0, 2.5])
    assert isinstance(report, PerformanceReport)
    data = json.loads(json.dumps(report.to_dict()))
    assert (data["task"], data["rows"]) == ("regression", 3)
    assert data["metrics"]["mae"] == pytest.approx(1 / 3)
    classified = performance("classification", [0, 1], [0, 1], proba=[[0.9, 0.1], [0.2, 0.8]])
    assert classified.metrics["roc_auc"] == 1.0
    negative = performance("classification", [0, 1, 1], [0, 0, 1], positive=0)
    assert negative.metrics["precision"] == 0.5


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: classification_metrics([0, 1, 1], [0, 1]), "y_true has 3 rows but y_pred has 2"),
        (lambda: regression_metrics([], []), "y_true is empty"),
        (
            lambda: classification_metrics([0, 1], [0, 1], proba=[[0.2, 0.3, 0.5]] * 2),
            r"proba has 3 columns but there are 2 classes \[0, 1\]; pass one column per",
        ),
        (
            lambda: classification_metrics([0, 1, 2], [0, 1, 2], proba=[0.5, 0.5, 0.5]),
            r"proba has shape \(3,\) but there are 3 classes",
        ),
        (
            lambda: classification_metrics([0, 1], [0, 1], proba=[[0.5, 0.5]] * 3),
            "proba has 3 rows but y_true has 2",
        ),
        (
            lambda: classification_metrics([0, 1], [0, 1], proba=[[0.5, 0.6]] * 2),
            "each row of proba must sum to 1",
        ),
        (
            lambda: classification_metrics([0, 1], [0, 1], proba=[[np.nan, 1.0]] * 2),
            "between 0 and 1",
        ),
        (
            lambda: classification_metrics(["a", "c"], ["a", "b"], classes=["a", "b"]),
            r"y_true holds labels that are not among the classes \['a', 'b'\]: \['c'\]",
        ),
        (
            lambda: classification_metrics([0, 1], [0, 1], positive=2),
            "positive=2 is not one of the classes",
        ),
        (
            lambda: classification_metrics(["a", None], ["a", "b"]),
            "y_true has 1 missing label",
        ),
        (lambda: classification_metrics([0, 1], ["0", "1"]), "give both the same type"),
        (lambda: regression_metrics([1.0, np.nan], [1.0, 2.0]), "1 missing or infinite"),
        (lambda: regression_metrics(["a", "b"], [1.0, 2.0]), "must hold numbers"),
        (lambda: regression_metrics([[1, 2], [3, 4]], [1, 2]), "must be one-dimensional"),
        (lambda: performance("ranking", [1], [1]), "task must be 'classification' or"),  # type: ignore[arg-type]
        (
            lambda: performance("regression", [1.0], [1.0], proba=[[1.0]]),
            "apply to classification only",
        ),
    ],
)
def test_wrong_arguments_say_what_to_fix(call: Any, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        call()


def test_compare_to_baseline() -> None:
    got = compare_to_baseline(
        {"accuracy": 0.8, "f1": 0.5, "new": 1.0}, {"accuracy": 0.9, "f1": 0.0, "old": 2.0}
    )
    assert set(got) == {"accuracy", "f1"}
    assert got["accuracy"] == pytest.approx(
        {"current": 0.8, "baseline": 0.9, "change": -0.1, "relative_change": -0.1 / 0.9}
    )
    assert got["f1"] == {"current": 0.5, "baseline": 0.0, "change": 0.5}  # no relative to 0
    with pytest.raises(InvalidArgumentError, match="baseline value of 'f1' is nan"):
        compare_to_baseline({"f1": 0.5}, {"f1": float("nan")})

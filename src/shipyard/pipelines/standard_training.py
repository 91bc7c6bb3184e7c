"""The training steps of the standard road: ``treat``, ``train`` and ``evaluate``.

Like :mod:`.standard_steps`, plain module-level functions that
:func:`~shipyard.pipelines.standard.build_standard` wraps as steps; :func:`build_model`
and :func:`make_estimator` are usable on their own (the quickstart's models are the same).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline as SkPipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from shipyard.core.exceptions import ConfigError
from shipyard.pipelines.standard_steps import raise_on_failures
from shipyard.value import ValueSettings, business_value

#: Estimators by task: name -> (class, whether numbers are scaled first, fixed defaults).
ESTIMATORS: dict[str, dict[str, tuple[type[Any], bool, dict[str, Any]]]] = {
    "classification": {
        "hist_gradient_boosting": (HistGradientBoostingClassifier, False, {}),
        "random_forest": (RandomForestClassifier, False, {}),
        "logistic_regression": (LogisticRegression, True, {"max_iter": 1000}),
    },
    "regression": {
        "hist_gradient_boosting_regressor": (HistGradientBoostingRegressor, False, {}),
        "random_forest_regressor": (RandomForestRegressor, False, {}),
        "linear_regression": (LinearRegression, True, {}),
    },
}
#: The estimator a task gets when ``model`` is not set.
DEFAULT_MODEL = {"classification": "hist_gradient_boosting", "regression": "linear_regression"}


def make_estimator(
    task: str, model: str, model_params: Mapping[str, Any] | None = None, seed: int = 0
) -> Any:
    """The scikit-learn estimator ``model`` of ``task`` built with ``model_params``.

    ``seed`` becomes ``random_state`` when the estimator has one and it is not given.
    Unknown names or parameters raise :class:`ConfigError` listing what is accepted.
    """
    choices = ESTIMATORS.get(task)
    if choices is None:
        raise ConfigError(f"task must be one of {', '.join(ESTIMATORS)}, got {task!r}")
    if model not in choices:
        raise ConfigError(
            f"model {model!r} is not a {task} model; choose one of {', '.join(choices)}"
        )
    cls, _, defaults = choices[model]
    options = {**defaults, **dict(model_params or {})}
    try:
        estimator = cls(**options)
    except TypeError as exc:
        known = ", ".join(sorted(cls().get_params()))
        raise ConfigError(
            f"model_params {sorted(dict(model_params or {}))} do not fit {cls.__name__}: {exc}; "
            f"its parameters are {known}"
        ) from exc
    if "random_state" in estimator.get_params() and "random_state" not in options:
        estimator.set_params(random_state=seed)
    return estimator


def build_model(
    features: pd.DataFrame,
    task: str,
    model: str,
    model_params: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> SkPipeline:
    """An unfitted pipeline for ``features``' columns: preparation, then the estimator.

    Numbers are median-imputed (and standardised for linear models; histogram gradient
    boosting handles missing numbers itself); every other column is imputed with
    ``"missing"`` and one-hot encoded, ignoring categories unseen in training.
    """
    estimator = make_estimator(task, model, model_params, seed)
    scaled = ESTIMATORS[task][model][1]
    numeric = [c for c in features.columns if pd.api.types.is_numeric_dtype(features[c])]
    categorical = [c for c in features.columns if c not in numeric]
    if model.startswith("hist_gradient_boosting"):
        number_steps: Any = "passthrough"
    else:
        impute = ("impute", SimpleImputer(strategy="median"))
        number_steps = SkPipeline([impute, ("scale", StandardScaler())] if scaled else [impute])
    category_steps = SkPipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
            ("onehot", OneHotEncoder(handle_unknown="ignore")),
        ]
    )
    prepare = ColumnTransformer(
        [("numeric", number_steps, numeric), ("categorical", category_steps, categorical)],
        sparse_threshold=0.0,  # histogram gradient boosting takes dense input only
    )
    return SkPipeline([("prepare", prepare), ("model", estimator)])


def treat(
    data: pd.DataFrame,
    quality: pd.DataFrame,
    target: str = "",
    task: str = "classification",
    features: Sequence[str] = (),
    id_columns: Sequence[str] = (),
    test_size: float = 0.25,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep the features and the target, and split train / test (stratified for classification).

    ``quality`` is the report of ``validate``: data whose report holds a failed check is
    refused. With no ``features``, every column but the target and ``id_columns`` is one.
    """
    raise_on_failures(quality, "treat refuses data whose quality report has failures")
    chosen = list(features) or [c for c in data.columns if c not in {target, *id_columns}]
    unusable = [
        c
        for c in chosen
        if not (
            pd.api.types.is_numeric_dtype(data[c])
            or pd.api.types.is_string_dtype(data[c])
            or isinstance(data[c].dtype, pd.CategoricalDtype)
        )
    ]
    if unusable:
        kinds = ", ".join(f"{c} ({data[c].dtype})" for c in unusable)
        raise ConfigError(
            f"features must be numbers or text, got {kinds}; derive numbers from them in a "
            "pipeline of your own, or list the features to use in 'features'"
        )
    frame = data[[*chosen, target]]
    stratify = frame[target] if task == "classification" else None
    train_set, test_set = train_test_split(
        frame, test_size=test_size, random_state=seed, stratify=stratify
    )
    return train_set.reset_index(drop=True), test_set.reset_index(drop=True)


def train(
    train_set: pd.DataFrame,
    target: str = "",
    task: str = "classification",
    model: str = "hist_gradient_boosting",
    model_params: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> SkPipeline:
    """Fit :func:`build_model` on the training split (every column but ``target``)."""
    features = train_set.drop(columns=[target])
    fitted = build_model(features, task, model, model_params, seed)
    fitted.fit(features, train_set[target])
    return fitted


def evaluate(
    model: SkPipeline,
    test_set: pd.DataFrame,
    target: str = "",
    task: str = "classification",
    value: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics on the test split, plus business value when ``value`` (``[value]``) is given.

    Classification: ``roc_auc``, ``accuracy``, ``f1``, ``precision``, ``recall``,
    ``log_loss`` (binary: of the greater label, e.g. 1; multiclass: macro averages).
    Regression: ``rmse``, ``mae``, ``r2``. Business value compares the model with doing
    nothing (``baseline=0``: no customer is acted on) for classification.
    Returns ``{"metrics": {...}, "value_summary": str | None, "test_rows": int}``.
    """
    features, truth = test_set.drop(columns=[target]), test_set[target]
    settings = ValueSettings.from_table(value) if value is not None else None
    if task == "regression":
        predicted = model.predict(features)
        metrics = {
            "rmse": float(root_mean_squared_error(truth, predicted)),
            "mae": float(mean_absolute_error(truth, predicted)),
            "r2": float(r2_score(truth, predicted)),
        }
        report = business_value(settings, truth, predicted) if settings else None
    else:
        classes = list(model.classes_)
        proba = model.predict_proba(features)
        metrics = _classification_metrics(truth, proba, classes)
        report = None
        if settings is not None:
            if len(classes) != 2:
                raise ConfigError(
                    f"business value needs a binary target but {target!r} has {len(classes)} "
                    "classes; remove [value] or train one model per class"
                )
            positive = (truth == classes[1]).astype(int)
            report = business_value(settings, positive, proba=proba[:, 1], baseline=0)
    if report is not None:
        metrics.update(report.metrics())
    return {
        "metrics": metrics,
        "value_summary": report.summary() if report is not None else None,
        "test_rows": len(test_set),
    }


def _classification_metrics(
    truth: pd.Series, proba: np.ndarray[Any, Any], classes: list[Any]
) -> dict[str, float]:
    predicted = np.asarray(classes)[proba.argmax(axis=1)]
    binary = len(classes) == 2
    scores: dict[str, Any] = {"average": "macro", "zero_division": 0}
    if binary:  # the greater label (1, True, "yes") is the positive class
        scores = {"average": "binary", "pos_label": classes[-1], "zero_division": 0}
    if binary:
        roc_auc = roc_auc_score(truth, proba[:, 1])
    else:
        roc_auc = roc_auc_score(truth, proba, multi_class="ovr", labels=classes)
    return {
        "roc_auc": float(roc_auc),
        "accuracy": float(accuracy_score(truth, predicted)),
        "f1": float(f1_score(truth, predicted, **scores)),
        "precision": float(precision_score(truth, predicted, **scores)),
        "recall": float(recall_score(truth, predicted, **scores)),
        "log_loss": float(log_loss(truth, proba, labels=classes)),
    }

"""Which input columns a model takes missing values in, read from the model itself.

Example rows only show where values *were* missing; many models handle a missing value
in any column. :func:`handled_columns` reads that from the model's structure:

* estimators that handle NaN natively: LightGBM and XGBoost models, and any scikit-learn
  estimator tagged ``allow_nan`` (``HistGradientBoosting*``, and trees and forests in
  recent scikit-learn versions);
* imputers (``SimpleImputer``, ``KNNImputer``, ``IterativeImputer`` on NaN), which remove
  them;
* a ``Pipeline``: its first step decides each column, and a missing value the first step
  lets through (a transformer tagged ``allow_nan``, a passed-through column) is handled
  only if a later step imputes it or the final estimator takes NaN;
* a ``ColumnTransformer``: each column is decided by the transformer that takes it (a
  pipeline starting with an imputer, ``passthrough``, ``drop``);
* a custom MLflow ``python_function`` model: MLflow hands it missing values as they are,
  so its own code decides.

Anything else (a hand-written object, LogisticRegression without an imputer) takes none.
:func:`accept_missing` then proves each such column on example rows before the signature
accepts missing values there: the model must predict with the column missing.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from shipyard.core.exceptions import SchemaError
from shipyard.core.schema import Signature
from shipyard.flavors.base import LoadedModel, Predictor

#: Example rows the proof runs on.
PROBE_ROWS = 5

# What becomes of a missing value that reaches a step: removed or handled, handed on
# to the next step, or refused.
_ABSORBED, _PASSED, _REFUSED = "absorbed", "passed", "refused"
_SEVERITY = {_ABSORBED: 0, _PASSED: 1, _REFUSED: 2}
_IMPUTERS = ("SimpleImputer", "KNNImputer", "IterativeImputer")
_NATIVE = {"lightgbm": "LightGBM", "xgboost": "XGBoost"}


@dataclass(frozen=True)
class _Fate:
    state: str
    reason: str


def handled_columns(model: object, columns: Sequence[str]) -> dict[str, str]:
    """The columns of ``columns`` (the model's input, in order) whose missing values
    ``model`` handles, each with the reason (e.g. ``"SimpleImputer imputes them"``)."""
    fates = _fates(model, list(columns))
    return {name: fate.reason for name, fate in fates.items() if fate.state == _ABSORBED}


def accept_missing(
    loaded: LoadedModel, rows: pd.DataFrame, refused: Collection[str] = ()
) -> tuple[Signature | None, dict[str, str]]:
    """``loaded``'s signature with the columns the model handles made nullable.

    A column qualifies when :func:`handled_columns` names it, it is not in ``refused``
    (columns a format never lets a missing value into, such as MLflow's integer columns)
    and the model predicts on ``rows`` (the first few) with the column missing. Returns
    the signature and the reason for each column it made nullable.
    """
    signature = loaded.signature
    if signature is None or not signature.inputs or rows.empty:
        return signature, {}
    found = handled_columns(loaded.native, signature.columns)
    candidates = {
        name: why
        for name, why in found.items()
        if name not in refused and not signature.column(name).nullable
    }
    if not candidates:
        return signature, {}
    widened = signature.with_nullable(candidates)
    try:
        sample = widened.validate(rows.head(PROBE_ROWS))
    except SchemaError:
        return signature, {}  # rows the signature refuses: registration says why later
    if _predicts(loaded.predictor, widened, sample, candidates):
        accepted = list(candidates)
    else:
        accepted = [c for c in candidates if _predicts(loaded.predictor, widened, sample, [c])]
    return signature.with_nullable(accepted), {c: candidates[c] for c in accepted}


def _predicts(
    predictor: Predictor, signature: Signature, sample: pd.DataFrame, names: Iterable[str]
) -> bool:
    """True when the model predicts on ``sample`` with every column ``names`` missing.

    Text columns are tried with ``None`` (what a JSON null becomes) and with NaN (what a
    Parquet or CSV null becomes).
    """
    names = list(names)
    text = [n for n in names if not signature.column(n).is_numeric]
    variants = [None, np.nan] if text else [np.nan]
    for marker in variants:
        frame = sample.copy()
        for name in names:
            if signature.column(name).is_numeric:
                frame[name] = np.full(len(frame), np.nan)
            else:
                frame[name] = pd.Series([marker] * len(frame), index=frame.index, dtype=object)
        try:
            frame = signature.validate(frame)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a warning is not a refusal
                answers = [predictor.predict(frame)]
                if predictor.predict_proba is not None:
                    answers.append(predictor.predict_proba(frame))
        except Exception:  # whatever the model raises, it refused the missing values
            return False
        if any(len(np.asarray(a)) != len(frame) for a in answers):
            return False
    return True


# -- the model's structure ----------------------------------------------------------------


def _fates(model: object, columns: list[str]) -> dict[str, _Fate]:
    model = _unwrap(model)
    if _is_pipeline(model):
        return _pipeline_fates(model, columns)
    if _is_column_transformer(model):
        return _column_transformer_fates(model, columns)
    return dict.fromkeys(columns, _step_fate(model))


def _unwrap(model: object) -> object:
    """The fitted estimator inside a search (GridSearchCV) or a target transformer."""
    for attribute in ("best_estimator_", "regressor_"):
        inner = getattr(model, attribute, None)
        if inner is not None and _module(model).startswith("sklearn."):
            return _unwrap(inner)
    return model


def _module(obj: object) -> str:
    return type(obj).__module__ or ""


def _is_pipeline(model: object) -> bool:
    return _module(model).startswith("sklearn.") and type(model).__name__ == "Pipeline"


def _is_column_transformer(model: object) -> bool:
    return _module(model).startswith("sklearn.") and type(model).__name__ == "ColumnTransformer"


def _step_fate(step: object) -> _Fate:
    """What one estimator or transformer does with a missing value it is given."""
    name = type(step).__name__
    package = _module(step).split(".", 1)[0]
    if package in _NATIVE:
        return _Fate(_ABSORBED, f"{_NATIVE[package]} handles them")
    if package == "mlflow":
        return _Fate(_ABSORBED, "the custom MLflow model gets them as MLflow passes them")
    if package != "sklearn":
        return _Fate(_REFUSED, f"shipyard cannot tell whether {name} handles them")
    if name in _IMPUTERS and _imputes_nan(step):
        return _Fate(_ABSORBED, f"{name} imputes them")
    if _is_pipeline(step) or _is_column_transformer(step):
        return _worst(_fates(step, _input_names(step)).values())
    if name == "FunctionTransformer" and getattr(step, "func", None) is None:
        # the identity: a fitted ColumnTransformer's "passthrough" remainder is one
        return _Fate(_PASSED, "the ColumnTransformer passes it on")
    if not _allows_nan(step):
        return _Fate(_REFUSED, f"{name} does not take them")
    if callable(getattr(step, "transform", None)) and not callable(getattr(step, "predict", None)):
        return _Fate(_PASSED, f"{name} passes them on")
    return _Fate(_ABSORBED, f"{name} handles them")


def _imputes_nan(step: object) -> bool:
    marker = getattr(step, "missing_values", None)
    return marker is pd.NA or (isinstance(marker, float) and np.isnan(marker))


def _allows_nan(step: object) -> bool:
    try:
        from sklearn.utils import get_tags

        return bool(get_tags(step).input_tags.allow_nan)
    except Exception:  # an estimator without scikit-learn's tags: assume it does not
        return False


def _worst(fates: Iterable[_Fate]) -> _Fate:
    found = list(fates)
    if not found:
        return _Fate(_ABSORBED, "it ignores them")
    return max(found, key=lambda fate: _SEVERITY[fate.state])


def _input_names(step: object) -> list[str]:
    names = getattr(step, "feature_names_in_", None)
    if names is not None:
        return [str(n) for n in names]
    return [str(i) for i in range(int(getattr(step, "n_features_in_", 0)))]


def _pipeline_fates(pipeline: Any, columns: list[str]) -> dict[str, _Fate]:
    steps = [s for _, s in pipeline.steps if s is not None and not isinstance(s, str)]
    if not steps:
        return dict.fromkeys(columns, _Fate(_PASSED, "the pipeline passes them on"))
    first = _fates(steps[0], columns)
    later = _later_fate(steps[1:])
    return {name: later if fate.state == _PASSED else fate for name, fate in first.items()}


def _later_fate(steps: Sequence[object]) -> _Fate:
    """What the steps after the first do with a missing value handed on to them."""
    for step in steps:
        fate = _step_fate(step)
        if fate.state != _PASSED:
            return fate
    return _Fate(_PASSED, "the pipeline passes them on")


def _column_transformer_fates(transformer: Any, columns: list[str]) -> dict[str, _Fate]:
    names = _input_names(transformer) or columns
    by_column: dict[str, list[_Fate]] = {name: [] for name in columns}
    positions = getattr(transformer, "_transformer_to_input_indices", None)
    for label, step, selected in getattr(transformer, "transformers_", []):
        taken = _selected(names, selected, positions.get(label) if positions else None)
        if taken is None:  # a selection shipyard cannot read: decide nothing
            return dict.fromkeys(columns, _Fate(_REFUSED, "its columns cannot be read"))
        if step == "drop":
            fates = dict.fromkeys(taken, _Fate(_ABSORBED, "the ColumnTransformer drops it"))
        elif isinstance(step, str):  # "passthrough"
            fates = dict.fromkeys(taken, _Fate(_PASSED, "the ColumnTransformer passes it on"))
        else:
            fates = _fates(step, taken)
        for name, fate in fates.items():
            if name in by_column:
                by_column[name].append(fate)
    return {name: _worst(fates) for name, fates in by_column.items()}


def _selected(names: list[str], selected: Any, positions: Any) -> list[str] | None:
    """The input columns one transformer of a ColumnTransformer takes."""
    if positions is not None:
        return [names[i] for i in positions if 0 <= i < len(names)]
    items = list(selected) if isinstance(selected, list | tuple | np.ndarray) else [selected]
    if all(isinstance(i, str) for i in items):
        return [str(i) for i in items]
    if all(isinstance(i, int | np.integer) and not isinstance(i, bool) for i in items):
        return [names[int(i)] for i in items if 0 <= int(i) < len(names)]
    return None

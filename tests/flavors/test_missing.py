"""Which columns a model takes missing values in: read from its structure, proven on rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import KNNImputer, SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from shipyard.core.schema import Signature
from shipyard.flavors import LoadedModel, Predictor
from shipyard.flavors.missing import accept_missing, handled_columns
from shipyard.flavors.python import object_predictor

COLUMNS = ["a", "b", "c", "plan"]
NUMBERS = ["a", "b", "c"]


def rows(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """Complete rows: three numbers and a text column."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
            "c": rng.integers(0, 9, n),
            "plan": pd.Series(rng.choice(["basic", "pro"], n), dtype=object),
        }
    )


def target(frame: pd.DataFrame) -> np.ndarray:
    return (frame["a"] + frame["b"] > 0).astype("int64").to_numpy()


def fitted(model: Any, columns: list[str] = NUMBERS) -> Any:
    frame = rows()[columns]
    return model.fit(frame, target(rows()))


def loaded(model: Any, columns: list[str]) -> LoadedModel:
    signature = Signature.infer(rows(20)[columns])
    return LoadedModel(object_predictor(model), signature, flavor="sklearn")


@pytest.mark.parametrize(
    ("model", "handled"),
    [
        (HistGradientBoostingClassifier(max_iter=5), NUMBERS),
        (RandomForestClassifier(n_estimators=3), NUMBERS),  # tagged allow_nan
        (LogisticRegression(), []),
        (make_pipeline(SimpleImputer(), LogisticRegression()), NUMBERS),
        (make_pipeline(KNNImputer(n_neighbors=3), LogisticRegression()), NUMBERS),
        (make_pipeline(StandardScaler(), LogisticRegression()), []),  # NaN reaches the model
        (make_pipeline(StandardScaler(), HistGradientBoostingClassifier(max_iter=5)), NUMBERS),
        (make_pipeline(StandardScaler(), SimpleImputer(), LogisticRegression()), NUMBERS),
        (
            make_pipeline(
                make_column_transformer(
                    (make_pipeline(SimpleImputer(), StandardScaler()), ["a"]),
                    (StandardScaler(), ["b"]),
                    ("drop", ["c"]),
                ),
                LogisticRegression(),
            ),
            ["a", "c"],  # b reaches LogisticRegression; c is dropped
        ),
        (
            make_pipeline(
                make_column_transformer((SimpleImputer(), ["a"]), remainder="passthrough"),
                HistGradientBoostingClassifier(max_iter=5),
            ),
            NUMBERS,
        ),
        (GridSearchCV(make_pipeline(SimpleImputer(), LogisticRegression()), {}, cv=2), NUMBERS),
    ],
    ids=[
        "hgb",
        "forest",
        "logreg",
        "imputer-logreg",
        "knn-imputer-logreg",
        "scaler-logreg",
        "scaler-hgb",
        "scaler-imputer-logreg",
        "column-transformer",
        "passthrough-remainder",
        "grid-search",
    ],
)
def test_handled_columns_follow_the_structure(model: Any, handled: list[str]) -> None:
    assert sorted(handled_columns(fitted(model), NUMBERS)) == handled


def test_iterative_imputer_and_native_boosters() -> None:
    import lightgbm
    import xgboost
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer

    imputed = fitted(make_pipeline(IterativeImputer(max_iter=3), LogisticRegression()))
    assert handled_columns(imputed, NUMBERS) == dict.fromkeys(
        NUMBERS, "IterativeImputer imputes them"
    )
    frame = rows()[NUMBERS]
    booster = lightgbm.train({"verbose": -1}, lightgbm.Dataset(frame, target(rows())), 3)
    assert set(handled_columns(booster, NUMBERS)) == set(NUMBERS)
    classifier = xgboost.XGBClassifier(n_estimators=3).fit(frame, target(rows()))
    assert handled_columns(classifier, NUMBERS)["a"] == "XGBoost handles them"
    assert handled_columns(object(), NUMBERS) == {}


def test_an_imputer_for_another_marker_handles_no_nan() -> None:
    model = fitted(make_pipeline(SimpleImputer(missing_values=-1.0), LogisticRegression()))
    assert handled_columns(model, NUMBERS) == {}


def test_accept_missing_proves_each_column_on_rows() -> None:
    """An encoder that refuses unknown values lets the structure promise too much: the
    rows decide (None in ``plan`` is unknown to it), while ignoring encoders pass."""
    strict = make_column_transformer(
        (OneHotEncoder(handle_unknown="error"), ["plan"]), remainder="passthrough"
    )
    lenient = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["plan"]), remainder="passthrough"
    )
    for encode, expected in ((strict, NUMBERS), (lenient, COLUMNS)):
        model = fitted(make_pipeline(encode, HistGradientBoostingClassifier(max_iter=5)), COLUMNS)
        assert set(handled_columns(model, COLUMNS)) == set(COLUMNS)
        signature, reasons = accept_missing(loaded(model, COLUMNS), rows(20))
        assert signature is not None
        assert sorted(c.name for c in signature.inputs if c.nullable) == sorted(expected)
        assert reasons["a"] == "HistGradientBoostingClassifier handles them"
        frame = rows(10).astype({"c": "float64"})
        frame.loc[::2, expected] = None
        assert len(LoadedModel(object_predictor(model), signature, flavor="x").predict(frame))


def test_accept_missing_keeps_refused_columns_and_models_that_refuse() -> None:
    hgb = fitted(HistGradientBoostingClassifier(max_iter=5))
    example = rows(20)[NUMBERS]
    signature, reasons = accept_missing(loaded(hgb, NUMBERS), example, refused=["c"])
    assert signature is not None
    assert [c.nullable for c in signature.inputs] == [True, True, False]
    assert set(reasons) == {"a", "b"}
    logreg = fitted(LogisticRegression())
    signature, reasons = accept_missing(loaded(logreg, NUMBERS), example)
    assert reasons == {}
    assert signature is not None
    assert not any(c.nullable for c in signature.inputs)


def test_a_model_whose_answer_breaks_on_nan_is_not_trusted() -> None:
    """The proof runs the model: a structure claim (here an MLflow-like opaque model, always
    a candidate) does not stand when predicting raises on missing values."""

    class Refuses:
        __module__ = "mlflow.pyfunc"

        def predict(self, frame: pd.DataFrame) -> np.ndarray:
            if frame["a"].isna().any():
                raise ValueError("no NaN in a")
            return np.zeros(len(frame))

    model = Refuses()
    predictor = Predictor(predict=model.predict, native=model)
    signature = Signature.infer(rows(20)[NUMBERS])
    widened, reasons = accept_missing(
        LoadedModel(predictor, signature, flavor="mlflow"), rows(20)[NUMBERS]
    )
    assert widened is not None
    assert {c.name for c in widened.inputs if c.nullable} == {"b", "c"}
    assert set(reasons) == {"b", "c"}

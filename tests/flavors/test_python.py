"""The object predictor's one-pass ``predict_both`` for scikit-learn pipelines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC

from shipyard.flavors.python import object_predictor


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            "tenure": rng.integers(0, 60, 400),
            "charges": rng.normal(50, 10, 400),
            "plan": rng.choice(["basic", "plus", "pro"], 400),
        }
    )


def _target(frame: pd.DataFrame) -> np.ndarray:
    return np.where((frame["tenure"] < 20) | (frame["plan"] == "pro"), "churn", "stays")


def test_a_classifier_pipeline_answers_both_as_its_own_methods(frame: pd.DataFrame) -> None:
    encode = make_column_transformer(
        (OneHotEncoder(), ["plan"]), (StandardScaler(), ["tenure", "charges"])
    )
    model = make_pipeline(encode, LogisticRegression()).fit(frame, _target(frame))
    predictor = object_predictor(model, list(model.feature_names_in_))
    assert predictor.predict_both is not None
    shuffled = frame[["plan", "charges", "tenure"]]  # put back in the training order
    labels, probabilities = predictor.predict_both(shuffled)
    assert labels.tolist() == model.predict(frame).tolist()
    np.testing.assert_array_equal(probabilities, model.predict_proba(frame))


@pytest.mark.parametrize(
    "final",
    [LinearRegression(), SVC()],  # no predict_proba: a regressor, an SVC without probability
    ids=["regressor", "svc-without-probability"],
)
def test_no_one_pass_where_the_final_step_has_no_probabilities(
    frame: pd.DataFrame, final: object
) -> None:
    numbers = frame[["tenure", "charges"]]
    target = (frame["tenure"] < 20).astype(int)
    model = make_pipeline(StandardScaler(), final).fit(numbers, target)
    assert object_predictor(model).predict_both is None


def test_no_one_pass_for_an_estimator_alone(frame: pd.DataFrame) -> None:
    numbers = frame[["tenure", "charges"]]
    model = LogisticRegression().fit(numbers, _target(frame))
    predictor = object_predictor(model)
    assert predictor.predict_proba is not None
    assert predictor.predict_both is None

"""The synthetic churn table: deterministic, realistic in shape, learnable but not trivially."""

from __future__ import annotations

import pandas as pd
import pytest
from pandas.api import types as ptypes
from threadpoolctl import threadpool_limits

from shipyard.demo.churn import (
    CATEGORICAL,
    FEATURES,
    NUMERIC,
    TARGET,
    make_churn,
    split,
)
from shipyard.pipelines.standard_training import build_model, evaluate


@pytest.fixture(scope="module")
def churn() -> pd.DataFrame:
    return make_churn(5000, seed=0)


def test_same_seed_same_table_other_seed_other_table() -> None:
    pd.testing.assert_frame_equal(make_churn(800, seed=7), make_churn(800, seed=7))
    assert not make_churn(800, seed=7).equals(make_churn(800, seed=8))


def test_columns_and_dtypes(churn: pd.DataFrame) -> None:
    assert list(churn.columns) == ["customer_id", *FEATURES, TARGET]
    assert len(churn) == 5000
    assert churn["customer_id"].is_unique
    assert set(NUMERIC).isdisjoint(CATEGORICAL)
    assert len(FEATURES) >= 10
    for column in NUMERIC:
        assert ptypes.is_numeric_dtype(churn[column]), column
    for column in ("tenure_months", "support_calls", "age"):
        assert ptypes.is_integer_dtype(churn[column]), column
    for column in CATEGORICAL:
        assert ptypes.is_string_dtype(churn[column]), column
    assert set(churn["contract"]) == {"month-to-month", "one-year", "two-year"}
    assert churn["tenure_months"].between(0, 72).all()
    assert churn["monthly_charges"].between(18, 120).all()
    assert (churn["support_calls"] >= 0).all()


def test_missing_values_where_real_exports_have_them(churn: pd.DataFrame) -> None:
    missing = churn.isna().mean()
    assert 0.015 <= missing["total_charges"] <= 0.05
    assert missing["payment_method"] > 0
    assert missing["region"] > 0
    complete = [c for c in churn.columns if c not in ("total_charges", "payment_method", "region")]
    assert not churn[complete].isna().any().any()


def test_churn_rate_is_plausible(churn: pd.DataFrame) -> None:
    assert ptypes.is_integer_dtype(churn[TARGET])
    assert set(churn[TARGET].unique()) == {0, 1}
    for seed in range(4):
        assert 0.15 <= make_churn(3000, seed=seed)[TARGET].mean() <= 0.35


def test_split_is_stratified_disjoint_and_deterministic(churn: pd.DataFrame) -> None:
    train, test = split(churn, seed=0)
    assert len(train) + len(test) == len(churn)
    assert len(test) == pytest.approx(0.25 * len(churn), abs=1)
    assert set(train["customer_id"]).isdisjoint(test["customer_id"])
    assert train[TARGET].mean() == pytest.approx(test[TARGET].mean(), abs=0.01)
    again, _ = split(churn, seed=0)
    pd.testing.assert_frame_equal(train, again)


def test_boosting_beats_the_baseline_in_a_realistic_range(churn: pd.DataFrame) -> None:
    train, test = split(churn, seed=0)
    scores = {}
    boosted = {"learning_rate": 0.05, "max_iter": 150, "max_leaf_nodes": 6,
               "min_samples_leaf": 100, "l2_regularization": 1.0}  # fmt: skip
    with threadpool_limits(limits=1):  # OpenMP threads fight under xdist
        for name, kind, params in (
            ("baseline", "logistic_regression", {}),
            ("boosted", "hist_gradient_boosting", boosted),
        ):
            model = build_model(train[FEATURES], "classification", kind, params, 0)
            model.fit(train[FEATURES], train[TARGET])
            scores[name] = evaluate(model, test[[*FEATURES, TARGET]], target=TARGET)["metrics"]
    assert 0.80 <= scores["boosted"]["roc_auc"] <= 0.90
    assert 0.75 <= scores["baseline"]["roc_auc"] < scores["boosted"]["roc_auc"]
    assert scores["boosted"]["log_loss"] < scores["baseline"]["log_loss"]


def test_too_few_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 10"):
        make_churn(5)

"""Registering reads nullability off the model, not only off the example rows.

A column takes missing values when the example rows had some there, or when the model
handles them (an estimator that takes NaN, an imputer in front); otherwise a missing value
is refused with an error that says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from tests.helpers import make_frame, make_settings
from typer.testing import CliRunner

from shipyard import Project, SchemaError
from shipyard.cli.app import app

Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Project]:
    """A SQLite project (nullability does not depend on the database)."""
    with Project(settings=make_settings(tmp_path / "proj", f"sqlite:///{tmp_path / 'db'}")) as p:
        yield p


def numbers(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Complete numeric rows (no missing value anywhere)."""
    frame, _ = make_frame(n, seed)
    return frame[["tenure", "charges"]].fillna(70.0)


def with_gaps(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with missing values in every column."""
    gaps = frame.astype({"tenure": "float64"})
    gaps.loc[gaps.index[::3], "tenure"] = np.nan
    gaps.loc[gaps.index[1::3], "charges"] = np.nan
    return gaps


def label(frame: pd.DataFrame) -> np.ndarray:
    return (frame["charges"] - frame["tenure"] > 30).astype("int64").to_numpy()


def nullable(project: Project, ref: str) -> dict[str, bool]:
    signature = project.registry.get(ref).signature
    assert signature is not None
    return {c.name: c.nullable for c in signature.inputs}


def test_a_model_that_handles_nan_takes_it_everywhere(local: Project, trained: Trained) -> None:
    """The churn pipeline: an imputer for charges, a one-hot encoder that ignores unknown
    plans, and HistGradientBoosting behind them; the example had NaN in charges only."""
    model, frame, _ = trained
    info = local.registry.register("churn", model, input_example=frame, trust=True)
    assert nullable(local, "churn") == {"tenure": True, "charges": True, "plan": True}
    assert "tenure (HistGradientBoostingClassifier handles them)" in info.flavor_config["notes"][0]
    assert "charges (missing in the example rows)" in info.flavor_config["notes"][0]
    rows = frame.head(40).astype({"tenure": "float64"})
    rows.loc[rows.index[::4], "tenure"] = np.nan
    rows.loc[rows.index[1::4], "plan"] = None
    got = local.registry.load("churn").predict(rows)
    assert np.array_equal(got, model.predict(rows))


@pytest.mark.parametrize(
    "model",
    [
        make_pipeline(SimpleImputer(), LogisticRegression()),
        HistGradientBoostingRegressor(max_iter=10),
        "lightgbm",
        "xgboost",
    ],
    ids=["imputer-logreg", "hgb", "lightgbm", "xgboost"],
)
def test_native_models_accept_what_they_handle(local: Project, model: Any) -> None:
    if model == "lightgbm":
        import lightgbm

        model = lightgbm.LGBMRegressor(n_estimators=10, verbose=-1)
    elif model == "xgboost":
        import xgboost

        model = xgboost.XGBRegressor(n_estimators=10, max_depth=3)
    frame = numbers()
    model.fit(frame, label(frame))
    local.registry.register("m", model, input_example=frame, trust=True)
    assert nullable(local, "m") == {"tenure": True, "charges": True}
    rows = with_gaps(numbers(50, 1))
    np.testing.assert_array_equal(local.registry.load("m").predict(rows), model.predict(rows))


def test_a_model_that_cannot_take_nan_keeps_the_clear_error(local: Project) -> None:
    frame = numbers()
    plain = LogisticRegression().fit(frame, label(frame))
    info = local.registry.register("plain", plain, input_example=frame, trust=True)
    assert nullable(local, "plain") == {"tenure": False, "charges": False}
    assert "notes" in info.flavor_config
    assert info.flavor_config["notes"] == []
    with pytest.raises(SchemaError, match="column 'charges' has 1 missing value") as caught:
        local.registry.load("plain").predict(frame.head(3).assign(charges=[1.0, None, 2.0]))
    assert "such as an imputer" in str(caught.value)


def test_only_the_imputed_column_of_a_column_transformer_takes_nan(local: Project) -> None:
    frame = numbers()
    encode = make_column_transformer((SimpleImputer(), ["charges"]), (StandardScaler(), ["tenure"]))
    model = make_pipeline(encode, LogisticRegression()).fit(frame, label(frame))
    local.registry.register("partial", model, input_example=frame, trust=True)
    assert nullable(local, "partial") == {"tenure": False, "charges": True}
    loaded = local.registry.load("partial")
    rows = numbers(20, 2).assign(charges=np.nan)
    np.testing.assert_array_equal(loaded.predict(rows), model.predict(rows))
    with pytest.raises(SchemaError, match="'tenure'"):
        loaded.predict(with_gaps(numbers(20, 2)))


def test_register_cli_says_where_missing_values_are_accepted(tmp_path: Path) -> None:
    frame = numbers()
    model = HistGradientBoostingRegressor(max_iter=10).fit(frame, label(frame))
    root = tmp_path / "proj"
    runner = CliRunner()
    assert runner.invoke(app, ["init", str(root), "--name", "demo", "--bare"]).exit_code == 0
    sio.dump(model, root / "model.skops")
    frame.to_csv(root / "example.csv", index=False)
    args = ["--project", str(root), "models", "register", str(root / "model.skops")]
    args += ["-n", "hgb", "--trust", "--input-example", str(root / "example.csv")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    printed = " ".join(result.stdout.split())
    assert "missing values accepted in tenure (HistGradientBoostingRegressor handles them)" in (
        printed
    )

"""The ``encoded`` input mode: ColumnTransformer pipelines fed validated columns, no pandas.

Every pipeline :meth:`EncodedPipeline.build` accepts must answer exactly as the pipeline
itself does on a DataFrame of the same rows; the ones it refuses are named here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer, make_column_transformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from tests.helpers import make_settings
from tests.serving.conftest import serving

from shipyard import Project
from shipyard.pipelines.standard_training import build_model
from shipyard.serving import create_app
from shipyard.serving.encoded import EncodedPipeline, OneHot

PLANS = ["basic", "plus", "pro"]
REGIONS = ["east", "north", "west"]


def churn_frame(rows: int, seed: int = 0, missing: bool = False) -> pd.DataFrame:
    """Numbers (int and float) and text columns, like the project template's data."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(0, 72, rows),
            "charges": rng.uniform(10, 120, rows).round(2),
            "plan": rng.choice(PLANS, rows).astype(object),
            "region": rng.choice(REGIONS, rows).astype(object),
        }
    )
    if missing:
        frame.loc[::5, "plan"] = None
        frame.loc[::7, "charges"] = np.nan
    return frame


def label(frame: pd.DataFrame) -> np.ndarray:
    """A binary label the columns explain."""
    score = frame["tenure"] / 36 - (frame["plan"] == "basic") + frame["charges"].fillna(60) / 60
    return (score > 1).to_numpy().astype(int)


def columns_of(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The server's validated columns: one 1-D array each, text as objects."""
    return {str(c): frame[c].to_numpy() for c in frame.columns}


def pipelines() -> dict[str, Any]:
    """Pipelines the encoded mode takes, fitted on the same rows."""
    frame = churn_frame(400, missing=True)
    text = ["plan", "region"]
    return {
        "template": build_model(frame, "classification", "hist_gradient_boosting"),
        "scaled-linear": build_model(frame, "classification", "logistic_regression"),
        "remainder-passthrough": make_pipeline(
            make_column_transformer(
                (OneHotEncoder(handle_unknown="ignore", sparse_output=False), text),
                remainder="passthrough",
            ),
            HistGradientBoostingClassifier(max_iter=15, random_state=0),
        ),
        "by-position-and-scaled": make_pipeline(
            ColumnTransformer(
                [
                    ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), [0, 1]),
                    ("text", OneHotEncoder(handle_unknown="ignore"), [3]),
                ],
                sparse_threshold=0.0,
            ),
            StandardScaler(),
            LogisticRegression(),
        ),
        "regressor": make_pipeline(
            make_column_transformer(
                ("passthrough", ["tenure", "charges"]),
                (OneHotEncoder(handle_unknown="ignore"), text),
                sparse_threshold=0.0,
            ),
            HistGradientBoostingRegressor(max_iter=15, random_state=0),
        ),
    }


@pytest.mark.parametrize("kind", sorted(pipelines()))
def test_encoded_answers_equal_the_pipeline(kind: str) -> None:
    train = churn_frame(400, missing=True)
    model = pipelines()[kind].fit(train, label(train) if kind != "regressor" else train["tenure"])
    encoded = EncodedPipeline.build(model, list(train.columns))
    assert encoded is not None
    unseen = churn_frame(50, seed=3, missing=True)
    unseen.loc[3, "region"] = "atlantis"  # a category never seen in training
    for rows in (unseen.head(1), unseen):
        columns = columns_of(rows)
        frame = pd.DataFrame(columns)  # what the frame mode feeds (missing text: NaN)
        assert np.array_equal(encoded.predict(columns), model.predict(frame))
        if kind != "regressor":
            assert np.array_equal(encoded.predict_proba(columns), model.predict_proba(frame))


@pytest.mark.parametrize("encoder", [{"drop": "first"}, {"handle_unknown": "ignore"}])
def test_encoders_beyond_plain_one_hot_run_their_own_transform(encoder: dict[str, Any]) -> None:
    train = churn_frame(300)
    missing_category = "drop" not in encoder
    if missing_category:  # a missing value seen in training becomes a category of its own
        train["plan"] = train["plan"].where(train.index % 4 != 0, None).astype(object)
    one_hot = OneHotEncoder(**encoder)
    model = make_pipeline(
        make_column_transformer((one_hot, ["plan", "region"]), remainder="passthrough"),
        LogisticRegression(max_iter=500),
    ).fit(train, label(train))
    assert OneHot.build(one_hot) is None
    encoded = EncodedPipeline.build(model, list(train.columns))
    assert encoded is not None
    rows = churn_frame(20, seed=4)
    if missing_category:
        rows.loc[::3, "plan"] = None
    columns = columns_of(rows)
    frame = pd.DataFrame(columns)
    assert np.array_equal(encoded.predict_proba(columns), model.predict_proba(frame))


def test_one_hot_refuses_unknown_categories_like_the_encoder() -> None:
    encoder = OneHotEncoder(handle_unknown="error").fit(np.array([["a"], ["b"]], dtype=object))
    one_hot = OneHot.build(encoder)
    assert one_hot is not None
    block = np.array([["b"], ["a"]], dtype=object)
    assert np.array_equal(one_hot(block), encoder.transform(block).toarray())
    with pytest.raises(ValueError, match=r"unknown categories \['z'\] in column 0"):
        one_hot(np.array([["a"], ["z"]], dtype=object))


@pytest.mark.parametrize(
    "refused",
    ["a plain estimator", "sparse output", "pandas output"],
)
def test_build_refuses_what_it_cannot_do_exactly(refused: str) -> None:
    train = churn_frame(200)
    text = ["plan", "region"]
    prepare = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), text),
        remainder="passthrough",
        sparse_threshold=1.0 if refused == "sparse output" else 0.0,
    )
    if refused == "pandas output":
        prepare.set_output(transform="pandas")
        prepare.set_params(onehotencoder__sparse_output=False)
    model: Any = Pipeline([("prepare", prepare), ("model", LogisticRegression(max_iter=500))])
    if refused == "a plain estimator":
        model = LogisticRegression()
        train = train[["tenure", "charges"]]
    model.fit(train, label(churn_frame(200)))
    assert EncodedPipeline.build(model, list(train.columns)) is None


@pytest.mark.anyio
async def test_served_pipeline_uses_the_encoded_mode(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    train = churn_frame(400, missing=True)
    model = pipelines()["template"].fit(train, label(train))
    root = tmp_path_factory.mktemp("encoded")
    settings = make_settings(root / "proj", f"sqlite:///{root / 'shipyard.db'}")
    rows = churn_frame(9, seed=11, missing=True)
    with Project(settings=settings) as project:
        project.registry.register("churn", model, input_example=train.head(60), trust=True)
        async with serving(create_app(project.registry, ["churn"])) as client:
            listing = (await client.get("/v1/models")).json()
            answer = await client.post(
                "/v1/models/churn/predict", content=rows.to_json(orient="records")
            )
    assert listing["models"][0]["input_mode"] == "encoded"
    assert answer.status_code == 200
    assert answer.json()["predictions"] == model.predict(rows).tolist()
    assert np.array_equal(np.asarray(answer.json()["probabilities"]), model.predict_proba(rows))

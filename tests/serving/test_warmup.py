"""Warm-up without an input example: rows made from the signature and the reference profile.

A version imported from an MLflow folder saved without ``input_example`` must be served in
the same input mode as the same model registered natively with one, with the same answers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import FixedThresholdClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder
from tests.helpers import make_settings
from tests.serving.conftest import serving

from shipyard import Project
from shipyard.core.schema import ColumnSpec, Signature
from shipyard.serving import create_app
from shipyard.serving.warmup import PLACEHOLDER, ROWS, synthetic_rows
from shipyard.statistics.profile import DatasetProfile, profile

NAMES = [f"f{i}" for i in range(8)]


def float_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """Float features."""
    data = np.random.default_rng(seed).normal(size=(rows, len(NAMES)))
    return pd.DataFrame(data, columns=NAMES)


def target(frame: pd.DataFrame) -> np.ndarray:
    """A binary label the features explain."""
    return (frame["f0"] + frame["f1"] * frame["f3"] > 0).to_numpy().astype(int)


def save_mlflow(model: Any, frame: pd.DataFrame, folder: Path) -> None:
    """``mlflow.sklearn.save_model`` with a signature and *no* input example (cloudpickle)."""
    mlflow_sklearn = pytest.importorskip("mlflow.sklearn")
    from mlflow.models import infer_signature

    signature = infer_signature(frame, model.predict(frame))
    mlflow_sklearn.save_model(
        model, str(folder), signature=signature, serialization_format="cloudpickle"
    )


# -- the rows ---------------------------------------------------------------------------------


def test_rows_follow_the_signature() -> None:
    signature = Signature(
        inputs=(
            ColumnSpec("age", "int64", minimum=18.0, maximum=80.0),
            ColumnSpec("score", "float64", nullable=True, minimum=-2.0, maximum=3.0),
            ColumnSpec("plan", "string", categories=("basic", "pro")),
            ColumnSpec("city", "string", nullable=True),
            ColumnSpec("active", "bool"),
            ColumnSpec("count", "uint8"),
        )
    )
    rows = synthetic_rows(signature)
    assert rows is not None
    assert len(rows) == ROWS
    frame = pd.DataFrame(rows)
    assert list(frame.columns) == signature.columns
    assert all(type(v) is int and 18 <= v <= 80 for v in frame["age"])
    assert frame["age"].nunique() > ROWS // 2  # spread over the range, not one value
    assert frame["score"].iloc[:-1].between(-2.0, 3.0).all()
    assert rows[-1]["score"] is None
    assert rows[-1]["city"] is None
    assert {rows[i]["plan"] for i in range(ROWS)} == {"basic", "pro"}
    assert {rows[i]["city"] for i in range(ROWS - 1)} == {PLACEHOLDER}
    assert {type(v) for v in frame["active"]} == {bool}
    assert all(0 <= v <= 5 for v in frame["count"])
    assert rows[0]["age"] != rows[0]["score"]  # columns are rotated, not in lock-step
    # the rows are valid input for the signature's own check
    signature.validate(pd.DataFrame(rows[:-1]))


def test_rows_take_ranges_and_categories_from_the_reference_profile() -> None:
    reference = pd.DataFrame(
        {"amount": [100.0, 250.0, 400.0, 150.0], "city": ["oslo", "rome", "rome", "lima"]}
    )
    seen: DatasetProfile = profile(reference, categorical=["city"])
    signature = Signature(inputs=(ColumnSpec("amount", "float64"), ColumnSpec("city", "string")))
    rows = synthetic_rows(signature, seen, rows=6)
    assert rows is not None
    amounts = [r["amount"] for r in rows]
    assert min(amounts) == 100.0
    assert max(amounts) == 400.0
    assert {r["city"] for r in rows} == {"oslo", "rome", "lima"}
    assert rows[0]["city"] != rows[1]["city"]


def test_no_signature_no_rows() -> None:
    assert synthetic_rows(None) is None
    assert synthetic_rows(Signature(inputs=())) is None


# -- served -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, Any, Any]]:
    """``hgb`` registered natively with an example, ``hgb-mlflow`` the same model imported
    from an MLflow folder without one; ``strict``: a pipeline refusing unknown text,
    imported without an example."""
    frame = float_frame(500)
    hgb = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(frame, target(frame))
    text = frame.assign(plan=np.where(frame["f2"] > 0, "basic", "pro"))
    strict = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(handle_unknown="error"), ["plan"]), remainder="passthrough"
        ),
        HistGradientBoostingClassifier(max_iter=10, random_state=0),
    ).fit(text, target(text))
    root = tmp_path_factory.mktemp("warmup")
    save_mlflow(hgb, frame.head(50), root / "hgb-mlflow")
    save_mlflow(strict, text.head(50), root / "strict-mlflow")
    settings = make_settings(root / "proj", f"sqlite:///{root / 'shipyard.db'}")
    with Project(settings=settings) as project:
        project.registry.register("hgb", hgb, input_example=frame.head(40), trust=True)
        project.registry.register("hgb-mlflow", path=root / "hgb-mlflow", trust=True)
        project.registry.register("strict", path=root / "strict-mlflow", trust=True)
        yield project, hgb, strict


@pytest.mark.anyio
async def test_mlflow_import_without_example_is_served_like_the_native_one(
    imported: tuple[Project, Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    project, hgb, _ = imported
    assert project.registry.get("hgb-mlflow").input_example is None
    rows = float_frame(7, seed=5)
    records = rows.to_json(orient="records").encode()
    split = orjson.dumps({"dataframe_split": orjson.loads(rows.to_json(orient="split"))})
    v2 = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP64",
                    "shape": list(rows.shape),
                    "data": rows.to_numpy().ravel().tolist(),
                }
            ]
        }
    )
    caplog.set_level(logging.INFO, logger="shipyard.serving")
    app = create_app(project.registry, ["hgb", "hgb-mlflow"])
    async with serving(app) as client:
        modes = {
            m["name"]: m["input_mode"] for m in (await client.get("/v1/models")).json()["models"]
        }
        answers = {}
        for name in ("hgb", "hgb-mlflow"):
            native = (await client.post(f"/v1/models/{name}/predict", content=records)).json()
            mlflow = await client.post(
                f"/invocations?model={name}",
                content=split,
                headers={"content-type": "application/json"},
            )
            infer = (await client.post(f"/v2/models/{name}/infer", content=v2)).json()
            answers[name] = (native, mlflow.json(), infer)
    assert modes == {"hgb": "kernel", "hgb-mlflow": "kernel"}
    assert "unwarmed" not in caplog.text
    assert f"warmed up on {ROWS} row(s) made from its signature" in caplog.text
    labels, proba = hgb.predict(rows).tolist(), hgb.predict_proba(rows)
    for native, mlflow, infer in answers.values():
        assert native["predictions"] == mlflow["predictions"] == labels
        assert np.array_equal(np.asarray(native["probabilities"]), proba)
        outputs = {o["name"]: o["data"] for o in infer["outputs"]}
        assert outputs["predict"] == labels
        assert np.array_equal(np.asarray(outputs["predict_proba"]).reshape(proba.shape), proba)


@pytest.mark.anyio
async def test_a_model_refusing_made_up_rows_stays_unwarmed_and_answers(
    imported: tuple[Project, Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    project, _, strict = imported
    rows = float_frame(4, seed=9).assign(plan=["basic", "pro", "pro", "basic"])
    caplog.set_level(logging.INFO, logger="shipyard.serving")
    async with serving(create_app(project.registry, ["strict"])) as client:
        listing = (await client.get("/v1/models")).json()
        answer = await client.post(
            "/v1/models/strict/predict", content=rows.to_json(orient="records")
        )
    assert listing["models"][0]["input_mode"] == "checked"
    assert "refuses rows made from its signature" in caplog.text
    assert "register it with an input example" in caplog.text
    assert answer.status_code == 200
    assert answer.json()["predictions"] == strict.predict(rows).tolist()


@pytest.mark.anyio
async def test_a_pipeline_in_frame_mode_answers_as_its_own_methods(tmp_path: Path) -> None:
    """Labels that are not the probabilities' argmax (a decision threshold) and pandas output
    the fast modes do not take: the ``frame`` mode, whose pipeline runs its transformers once
    for both answers (``Predictor.predict_both``)."""
    frame = float_frame(300).assign(plan=lambda f: np.where(f["f2"] > 0, "basic", "pro"))
    model = make_pipeline(
        make_column_transformer((OrdinalEncoder(), ["plan"]), remainder="passthrough").set_output(
            transform="pandas"
        ),
        FixedThresholdClassifier(LogisticRegression(), threshold=0.3),
    ).fit(frame, target(frame))
    settings = make_settings(tmp_path / "proj", f"sqlite:///{tmp_path / 'shipyard.db'}")
    with Project(settings=settings) as project:
        project.registry.register("tuned", model, input_example=frame.head(40), trust=True)
        rows = float_frame(50, seed=4).assign(plan=["basic", "pro"] * 25)
        async with serving(create_app(project.registry, ["tuned"])) as client:
            listing = (await client.get("/v1/models")).json()
            answer = (
                await client.post(
                    "/v1/models/tuned/predict", content=orjson.dumps(rows.to_dict("records"))
                )
            ).json()
    assert listing["models"][0]["input_mode"] == "frame"
    proba = model.predict_proba(rows)
    assert answer["predictions"] == model.predict(rows).tolist()
    assert answer["predictions"] != model.classes_[np.argmax(proba, axis=1)].tolist()
    assert np.array_equal(np.asarray(answer["probabilities"]), proba)

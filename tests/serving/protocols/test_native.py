"""The native API: /v1/models/{ref}/predict with records and split bodies."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from tests.serving.conftest import records, serving

from shipyard import Project
from shipyard.serving import create_app

pytestmark = pytest.mark.anyio

Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]


async def test_records_answer_equals_the_model(served_project: Project, trained: Trained) -> None:
    model, frame, _ = trained
    rows = frame.head(25)
    async with serving(create_app(served_project.registry, ["churn@production"])) as client:
        response = await client.post("/v1/models/churn/predict", content=records(rows))
        wrapped = await client.post(
            "/v1/models/churn/predict",
            content=orjson.dumps({"records": orjson.loads(records(rows))}),
        )
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "churn"
    assert body["version"] == 1
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["predictions"] == model.predict(rows).tolist()
    np.testing.assert_allclose(body["probabilities"], model.predict_proba(rows), rtol=1e-12)
    assert body["classes"] == model.classes_.tolist()
    assert wrapped.json()["predictions"] == body["predictions"]


async def test_split_body(served_project: Project, trained: Trained) -> None:
    model, frame, _ = trained
    rows = frame.iloc[40:50]
    split = orjson.loads(rows.to_json(orient="split", index=False))
    async with serving(create_app(served_project.registry, ["churn"])) as client:
        response = await client.post("/v1/models/churn/predict", json=split)
    assert response.status_code == 200
    assert response.json()["predictions"] == model.predict(rows).tolist()


async def test_version_and_alias_forms(served_project: Project, trained: Trained) -> None:
    _, frame, _ = trained
    body = records(frame.head(2))
    app = create_app(served_project.registry, ["churn@production", "churn:2"])
    async with serving(app) as client:
        default = await client.post("/v1/models/churn/predict", content=body)
        by_version = await client.post("/v1/models/churn/versions/2/predict", content=body)
        by_ref = await client.post("/v1/models/churn:2/predict", content=body)
        by_alias = await client.post("/v1/models/churn@production/predict", content=body)
        alias_route = await client.post("/v1/models/churn/aliases/production/predict", content=body)
        listing = await client.get("/v1/models")
    assert default.json()["version"] == 1  # the first reference is the name's default
    assert by_version.json()["version"] == 2
    assert by_ref.json()["version"] == 2
    assert by_alias.json()["version"] == 1
    assert alias_route.json()["version"] == 1
    served = {(m["name"], m["version"]): m for m in listing.json()["models"]}
    assert set(served) == {("churn", 1), ("churn", 2)}
    assert served["churn", 1]["aliases"] == ["production"]
    assert [c["name"] for c in served["churn", 1]["inputs"]] == ["tenure", "charges", "plan"]


async def test_unknown_model_is_404_naming_what_is_served(served_project: Project) -> None:
    async with serving(create_app(served_project.registry, ["churn@production"])) as client:
        response = await client.post("/v1/models/fraud/predict", json=[{"x": 1}])
        wrong_version = await client.post("/v1/models/churn/versions/9/predict", json=[{"x": 1}])
    assert response.status_code == 404
    assert "'fraud' is not served" in response.json()["error"]
    assert "churn:1 (production)" in response.json()["error"]
    assert wrong_version.status_code == 404
    assert "churn:9" in wrong_version.json()["error"]


@pytest.mark.parametrize(
    ("row", "status", "column", "words"),
    [
        ({"tenure": 3, "charges": 20.5}, 422, "plan", "missing column 'plan'"),
        ({"tenure": 3, "charges": 20.5, "plan": "pro", "age": 4}, 422, "age", "unknown column"),
        ({"tenure": 3, "charges": "cheap", "plan": "pro"}, 422, "charges", "expects float64"),
        ({"tenure": 3.5, "charges": 20.5, "plan": "pro"}, 422, "tenure", "fractional"),
        ({"tenure": 3, "charges": 20.5, "plan": 7}, 422, "plan", "expects string"),
        ({"tenure": [1, 2], "charges": 20.5, "plan": "pro"}, 422, "tenure", "shape"),
    ],
)
async def test_bad_input_names_the_column(
    served_project: Project, row: dict[str, object], status: int, column: str, words: str
) -> None:
    async with serving(create_app(served_project.registry, ["churn"])) as client:
        response = await client.post("/v1/models/churn/predict", json=[row])
    assert response.status_code == status
    body = response.json()
    assert body["column"] == column
    assert body["type"] == "SchemaError"
    assert words in body["error"]


async def test_missing_values_follow_what_the_model_takes(
    served_project: Project, trained: Trained, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """churn's pipeline takes a missing value in every column (HGB passes NaN through, an
    imputer fills charges, the encoder keeps a null plan): 200 with the model's own answer. A
    logistic regression without an imputer takes none: 422 naming the column."""
    from sklearn.linear_model import LogisticRegression

    model, frame, target = trained
    row = {"tenure": None, "charges": None, "plan": None}
    async with serving(create_app(served_project.registry, ["churn"])) as client:
        taken = await client.post("/v1/models/churn/predict", json=[row])
    assert taken.status_code == 200
    expected = model.predict(pd.DataFrame([row]).astype({"tenure": float, "charges": float}))
    assert taken.json()["predictions"] == expected.tolist()

    complete = frame["charges"].notna().to_numpy()
    numeric = frame.loc[complete, ["tenure", "charges"]]
    strict = LogisticRegression().fit(numeric, target[complete])
    with Project.init(tmp_path_factory.mktemp("strict") / "proj", name="strict") as project:
        project.registry.register("strict", strict, input_example=numeric, trust=True)
        async with serving(create_app(project.registry, ["strict"])) as client:
            refused = await client.post(
                "/v1/models/strict/predict", json=[{"tenure": None, "charges": 20.5}]
            )
    assert refused.status_code == 422
    body = refused.json()
    assert (body["column"], body["type"]) == ("tenure", "SchemaError")
    assert "missing value" in body["error"]


async def test_malformed_bodies_are_400(served_project: Project) -> None:
    async with serving(create_app(served_project.registry, ["churn"])) as client:
        broken = await client.post("/v1/models/churn/predict", content=b'[{"tenure": 1,')
        empty = await client.post("/v1/models/churn/predict", content=b"")
        no_rows = await client.post("/v1/models/churn/predict", json=[])
        wrong_shape = await client.post("/v1/models/churn/predict", json={"rows": []})
        ragged = await client.post(
            "/v1/models/churn/predict", json={"columns": ["tenure", "charges"], "data": [[1]]}
        )
    for response in (broken, empty, no_rows, wrong_shape, ragged):
        assert response.status_code == 400, response.text
        assert response.json()["type"] == "InvalidArgumentError"
    assert "not valid JSON" in broken.json()["error"]
    assert "records" in wrong_shape.json()["error"]
    assert "row 0 must be a list of 2 values" in ragged.json()["error"]

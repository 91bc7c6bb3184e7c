"""MLflow's scoring protocol: /invocations, /ping, /health, /version, MLflow's error body."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from tests.helpers import make_settings
from tests.serving.conftest import records, serving

from shipyard import Project
from shipyard.serving import create_app

pytestmark = pytest.mark.anyio

HGB_TREES = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]


@pytest.fixture(scope="module")
def mlflow_project(
    tmp_path_factory: pytest.TempPathFactory, trained: Trained
) -> Iterator[tuple[Project, Path]]:
    """A project holding ``scorer``: an MLflow-saved scikit-learn pipeline, imported."""
    mlflow_sklearn = pytest.importorskip("mlflow.sklearn")
    model, frame, _ = trained
    root = tmp_path_factory.mktemp("mlflow-serving")
    folder = root / "mlflow-model"
    mlflow_sklearn.save_model(
        model,
        str(folder),
        input_example=frame.head(5),
        skops_trusted_types=["numpy.dtype", HGB_TREES],
        pip_requirements=["scikit-learn"],
    )
    settings = make_settings(root / "proj", f"sqlite:///{root / 'shipyard.db'}")
    with Project(settings=settings) as project:
        project.registry.register("scorer", path=folder, flavor="mlflow", trust=True)
        yield project, folder


async def test_mlflow_generated_body_works_unchanged(
    mlflow_project: tuple[Project, Path],
) -> None:
    import mlflow.pyfunc
    from mlflow.pyfunc.scoring_server import infer_and_parse_data

    project, folder = mlflow_project
    body = (folder / "serving_input_example.json").read_bytes()
    pyfunc = mlflow.pyfunc.load_model(str(folder))
    frame = infer_and_parse_data(json.loads(body), pyfunc.metadata.get_input_schema())
    expected = pyfunc.predict(frame)
    async with serving(create_app(project.registry, ["scorer"])) as client:
        response = await client.post(
            "/invocations", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": np.asarray(expected).tolist()}


async def test_every_input_format(served_project: Project, trained: Trained) -> None:
    model, frame, _ = trained
    rows = frame.head(6)
    expected = {"predictions": model.predict(rows).tolist()}
    as_records = orjson.loads(records(rows))
    split = orjson.loads(rows.to_json(orient="split", index=False))
    columns = {name: [row[name] for row in as_records] for name in rows.columns}
    bodies = {
        "dataframe_split": {"dataframe_split": split},
        "dataframe_records": {"dataframe_records": as_records},
        "instances": {"instances": as_records},
        "inputs as columns": {"inputs": columns},
        "inputs as rows": {"inputs": split["data"]},
        "with params": {"dataframe_records": as_records, "params": {"threshold": 0.3}},
    }
    async with serving(create_app(served_project.registry, ["churn"])) as client:
        for label, body in bodies.items():
            response = await client.post("/invocations", json=body)
            assert response.status_code == 200, (label, response.text)
            assert response.json() == expected, label
        for content_type in ("text/csv", "text/csv; charset=utf-8"):
            response = await client.post(
                "/invocations",
                content=rows.to_csv(index=False).encode(),
                headers={"content-type": content_type},
            )
            assert response.status_code == 200, response.text
            assert response.json() == expected


async def test_content_type_rules(served_project: Project) -> None:
    body = b'{"dataframe_records": [{"tenure": 1, "charges": 2.0, "plan": "pro"}]}'
    async with serving(create_app(served_project.registry, ["churn"])) as client:
        statuses = {}
        for content_type in (
            "application/json; charset=utf-8",
            "application/json; charset=latin-1",
            "application/json; format=pandas-split",
            "text/plain",
        ):
            response = await client.post(
                "/invocations", content=body, headers={"content-type": content_type}
            )
            statuses[content_type] = response.status_code
    assert statuses == {
        "application/json; charset=utf-8": 200,
        "application/json; charset=latin-1": 415,
        "application/json; format=pandas-split": 415,
        "text/plain": 415,
    }


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'[{"tenure": 1}]', "Received a list"),
        (b'{"records": []}', "exactly one of the input fields"),
        (b'{"dataframe_records": [], "instances": []}', "exactly one of the input fields"),
        (b'{"dataframe_records": [{"tenure": 1', "not valid JSON"),
        (b'{"dataframe_records": [{"tenure": 1, "charges": 2.0}]}', "missing column 'plan'"),
        (
            b'{"dataframe_records": [{"tenure": 1, "charges": 2.0, "plan": "x"}], "params": 3}',
            "'params' must be an object",
        ),
    ],
)
async def test_errors_use_mlflow_body(served_project: Project, body: bytes, words: str) -> None:
    async with serving(create_app(served_project.registry, ["churn"])) as client:
        response = await client.post(
            "/invocations", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    payload = response.json()
    assert set(payload) == {"error_code", "message"}
    assert payload["error_code"] == "BAD_REQUEST"
    assert words in payload["message"]


async def test_bad_csv_is_400(served_project: Project) -> None:
    async with serving(create_app(served_project.registry, ["churn"])) as client:
        response = await client.post(
            "/invocations", content=b"", headers={"content-type": "text/csv"}
        )
    assert response.status_code == 400
    assert response.json()["error_code"] == "BAD_REQUEST"


async def test_model_query_picks_among_several(served_project: Project, trained: Trained) -> None:
    _, frame, _ = trained
    body = {"dataframe_records": orjson.loads(records(frame.head(1)))}
    app = create_app(served_project.registry, ["churn:2", "churn@production"])
    async with serving(app) as client:
        first = await client.post("/invocations", json=body)
        chosen = await client.post("/invocations?model=churn@production", json=body)
        missing = await client.post("/invocations?model=fraud", json=body)
    assert first.status_code == chosen.status_code == 200
    assert app.state.server.metrics.requests.labels("churn", "1", "mlflow", "200")._value.get() == 1
    assert app.state.server.metrics.requests.labels("churn", "2", "mlflow", "200")._value.get() == 1
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


async def test_ping_health_version(served_project: Project) -> None:
    app = create_app(served_project.registry, ["churn"])
    transport_app = app
    import httpx

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=transport_app), base_url="http://shipyard"
    ) as cold:
        assert (await cold.get("/ping")).status_code == 404  # lifespan not run: nothing loaded
        assert (await cold.get("/health")).status_code == 404
    async with serving(app) as client:
        assert (await client.get("/ping")).status_code == 200
        assert (await client.get("/health")).status_code == 200
        version = await client.get("/version")
    assert version.status_code == 200
    assert version.text[0].isdigit()


def test_mlflow_generated_body_over_a_socket(mlflow_project: tuple[Project, Path]) -> None:
    import httpx
    import mlflow.pyfunc
    from mlflow.pyfunc.scoring_server import infer_and_parse_data
    from tests.serving.test_wire import LiveServer

    project, folder = mlflow_project
    body = (folder / "serving_input_example.json").read_bytes()
    pyfunc = mlflow.pyfunc.load_model(str(folder))
    expected = pyfunc.predict(
        infer_and_parse_data(json.loads(body), pyfunc.metadata.get_input_schema())
    )
    server = LiveServer(create_app(project.registry, ["scorer"]))
    server.start()
    try:
        with httpx.Client(base_url=server.url) as client:
            response = client.post(
                "/invocations", content=body, headers={"content-type": "application/json"}
            )
            ping = client.get("/ping")
    finally:
        server.stop()
    assert ping.status_code == 200
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": np.asarray(expected).tolist()}

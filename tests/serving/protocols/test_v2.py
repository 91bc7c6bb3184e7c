"""Open Inference Protocol v2 routes over real registered models, over a real socket.

Two models are registered in a SQLite project and served by the core's ``ModelManager``:
``churn`` (a scikit-learn pipeline over an int, a nullable float and a string column, with
probabilities) and ``spend`` (a regressor over the two numeric columns). uvicorn serves them
on loopback; httpx and ``tritonclient.http`` (binary data by default) drive it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
import tritonclient.http as triton
import uvicorn
from fastapi import FastAPI
from httpx import Client as HttpClient
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline
from tests.helpers import make_settings
from tritonclient.utils import InferenceServerException

from shipyard import Project
from shipyard.registry import Registry
from shipyard.serving import create_app

NUMERIC = ["tenure", "charges"]


@pytest.fixture(scope="module")
def models(
    tmp_path_factory: pytest.TempPathFactory, trained: tuple[Pipeline, pd.DataFrame, np.ndarray]
) -> Iterator[tuple[Registry, dict[str, Any], pd.DataFrame]]:
    """A project with ``churn:1`` (mixed columns) and ``spend:1`` (numeric), and their natives."""
    model, frame, _ = trained
    root = tmp_path_factory.mktemp("v2")
    settings = make_settings(root / "proj", f"sqlite:///{root / 'meta' / 'shipyard.db'}")
    target = frame["tenure"] * 1.5 + frame["charges"].fillna(0)
    spend = HistGradientBoostingRegressor(max_iter=20).fit(frame[NUMERIC], target)
    with Project(settings=settings) as project:
        project.registry.register("churn", model, input_example=frame, trust=True)
        project.registry.register("spend", spend, input_example=frame[NUMERIC], trust=True)
        yield project.registry, {"churn": model, "spend": spend}, frame


def make_app(registry: Registry) -> FastAPI:
    """The serving app for churn and spend (v2 routes included)."""
    return create_app(registry, ["churn:1", "spend:1"])


@pytest.fixture(scope="module")
def server_url(models: tuple[Registry, dict[str, Any], pd.DataFrame]) -> Iterator[str]:
    """uvicorn on a free loopback port, in a thread."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(make_app(models[0]), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def client(server_url: str) -> Iterator[HttpClient]:
    """An HTTP client of the server."""
    with HttpClient(base_url=f"http://{server_url}") as http:
        yield http


def columns_body(rows: pd.DataFrame, **extra: Any) -> dict[str, Any]:
    """One tensor per column: INT64, FP64 (NaN as null) and BYTES."""
    charges = [None if np.isnan(v) else v for v in rows["charges"]]
    return {
        "inputs": [
            {
                "name": "tenure",
                "datatype": "INT64",
                "shape": [len(rows)],
                "data": rows["tenure"].tolist(),
            },
            {"name": "charges", "datatype": "FP64", "shape": [len(rows), 1], "data": charges},
            {
                "name": "plan",
                "datatype": "BYTES",
                "shape": [len(rows)],
                "data": [v if isinstance(v, str) else None for v in rows["plan"]],
            },
        ],
        **extra,
    }


def outputs_of(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return {o["name"]: o for o in response.json()["outputs"]}


# -- health and metadata -------------------------------------------------------------------


def test_health_server_and_model_metadata(client: HttpClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    server = client.get("/v2").json()
    assert server["name"] == "shipyard"
    assert isinstance(server["version"], str)
    assert "binary_tensor_data" in server["extensions"]

    meta = client.get("/v2/models/churn").json()
    assert meta["name"] == "churn"
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "shipyard-sklearn"
    assert meta["inputs"] == [
        {"name": "tenure", "datatype": "INT64", "shape": [-1]},
        {"name": "charges", "datatype": "FP64", "shape": [-1]},
        {"name": "plan", "datatype": "BYTES", "shape": [-1]},
    ]
    assert meta["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]},
    ]
    assert client.get("/v2/models/churn/versions/1").json() == meta
    spend = client.get("/v2/models/spend").json()
    assert [o["name"] for o in spend["outputs"]] == ["predict"]


def test_model_ready_and_unknown_models(client: HttpClient) -> None:
    assert client.get("/v2/models/churn/ready").json()["ready"] is True
    assert client.get("/v2/models/churn/versions/1/ready").status_code == 200
    missing = client.get("/v2/models/nope/ready")
    assert missing.status_code == 404
    assert "'nope' is not served here" in missing.json()["error"]
    assert client.get("/v2/models/churn/versions/7").status_code == 404
    bad = client.get("/v2/models/churn/versions/latest")
    assert bad.status_code == 400
    assert "'latest' is not a number" in bad.json()["error"]


# -- inference -----------------------------------------------------------------------------


def test_infer_per_column_tensors_matches_the_model(
    client: HttpClient, models: tuple[Registry, dict[str, Any], pd.DataFrame]
) -> None:
    _, natives, frame = models
    rows = frame.iloc[:25]

    response = client.post("/v2/models/churn/infer", json=columns_body(rows, id="abc"))

    outputs = outputs_of(response)
    assert response.json()["id"] == "abc"
    unnamed = client.post(
        "/v2/models/churn/infer", json=columns_body(rows), headers={"x-request-id": "hdr-7"}
    )
    assert unnamed.json()["id"] == "hdr-7"
    assert response.json()["model_version"] == "1"
    assert outputs["predict"]["shape"] == [25]
    assert outputs["predict"]["data"] == natives["churn"].predict(rows).tolist()
    proba = np.array(outputs["predict_proba"]["data"]).reshape(outputs["predict_proba"]["shape"])
    np.testing.assert_allclose(proba, natives["churn"].predict_proba(rows))


def test_infer_single_2d_tensor_on_all_numeric_model(
    client: HttpClient, models: tuple[Registry, dict[str, Any], pd.DataFrame]
) -> None:
    _, natives, frame = models
    rows = frame[NUMERIC].iloc[:10]
    matrix = [[t, None if np.isnan(c) else c] for t, c in rows.itertuples(index=False)]
    payload = {
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [10, 2], "data": matrix}]
    }

    outputs = outputs_of(client.post("/v2/models/spend/versions/1/infer", json=payload))

    assert outputs["predict"]["datatype"] == "FP64"
    np.testing.assert_allclose(outputs["predict"]["data"], natives["spend"].predict(rows))


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        (b"{", 400, "not valid JSON"),
        (orjson.dumps({"inputs": []}), 400, "non-empty list 'inputs'"),
        (
            orjson.dumps(
                {"inputs": [{"name": "tenure", "datatype": "BYTES", "shape": [1], "data": ["x"]}]}
            ),
            422,
            "input tensor 'tenure' is BYTES but column 'tenure' is int64",
        ),
        (
            orjson.dumps(
                {"inputs": [{"name": "tenure", "datatype": "INT64", "shape": [2], "data": [1]}]}
            ),
            422,
            r"input tensor 'tenure' has shape [2]",
        ),
    ],
)
def test_infer_errors_use_the_protocol_error_body(
    client: HttpClient, payload: bytes, status: int, message: str
) -> None:
    response = client.post("/v2/models/churn/infer", content=payload)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert set(response.json()) == {"error"}


def test_infer_errors_from_the_model_and_outputs(
    client: HttpClient, models: tuple[Registry, dict[str, Any], pd.DataFrame]
) -> None:
    rows = models[2].iloc[:2].assign(tenure=[1.5, 2.0])
    fractional = client.post("/v2/models/churn/infer", json=columns_body(rows))
    assert fractional.status_code == 422
    assert "'tenure'" in fractional.json()["error"]

    wrong_output = columns_body(models[2].iloc[:1], outputs=[{"name": "predict_proba"}])
    body = {"inputs": wrong_output["inputs"][:2], "outputs": wrong_output["outputs"]}
    body["inputs"][1]["shape"] = [1]
    response = client.post("/v2/models/spend/infer", json=body)
    assert response.status_code == 400
    assert "unknown output 'predict_proba': the model gives predict" in response.json()["error"]
    assert client.post("/v2/models/nope/infer", json=body).status_code == 404


# -- over a real socket with tritonclient ---------------------------------------------------


def triton_inputs(rows: pd.DataFrame, binary: bool) -> list[triton.InferInput]:
    """tritonclient inputs, one per column."""
    arrays = {
        "tenure": rows["tenure"].to_numpy(np.int64),
        "charges": rows["charges"].to_numpy(np.float64),
        "plan": rows["plan"].to_numpy(object),
    }
    inputs = []
    for name, array in arrays.items():
        datatype = "BYTES" if array.dtype == object else ("INT64" if name == "tenure" else "FP64")
        inputs.append(triton.InferInput(name, list(array.shape), datatype))
        if binary:
            inputs[-1].set_data_from_numpy(array)  # its default: binary data
        else:
            inputs[-1].set_data_from_numpy(array, binary_data=False)
    return inputs


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_infers_with_its_defaults(
    server_url: str, models: tuple[Registry, dict[str, Any], pd.DataFrame], binary: bool
) -> None:
    _, natives, frame = models
    rows = frame.iloc[:40].dropna() if not binary else frame.iloc[:40]
    client = triton.InferenceServerClient(url=server_url)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("churn")
        meta = client.get_model_metadata("churn")
        assert [i["name"] for i in meta["inputs"]] == ["tenure", "charges", "plan"]

        result = client.infer(
            "churn",
            triton_inputs(rows, binary),
            outputs=[
                triton.InferRequestedOutput("predict", binary_data=binary),
                triton.InferRequestedOutput("predict_proba", binary_data=binary),
            ],
            request_id="t-1",
        )
        assert result.get_response()["id"] == "t-1"
        np.testing.assert_array_equal(result.as_numpy("predict"), natives["churn"].predict(rows))
        np.testing.assert_allclose(
            result.as_numpy("predict_proba"), natives["churn"].predict_proba(rows)
        )

        default = client.infer(
            "churn",
            triton_inputs(rows, binary),
            model_version="1",
            request_compression_algorithm="gzip",
        )
        np.testing.assert_array_equal(default.as_numpy("predict"), natives["churn"].predict(rows))
    finally:
        client.close()


def test_tritonclient_sees_protocol_errors(server_url: str) -> None:
    client = triton.InferenceServerClient(url=server_url)
    try:
        assert not client.is_model_ready("nope")
        data = np.array([[1.0, 2.0, 3.0]])
        inputs = [triton.InferInput("input-0", [1, 3], "FP64")]
        inputs[0].set_data_from_numpy(data)
        with pytest.raises(InferenceServerException, match="cannot carry column 'plan'"):
            client.infer("churn", inputs)
    finally:
        client.close()

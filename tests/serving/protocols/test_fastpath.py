"""The fast paths: the native route in plain ASGI, the matrix cast, the HGB kernel, batching.

Each fast path must answer exactly what the general path answers; these tests compare them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
from fastapi import FastAPI
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tests.helpers import make_settings
from tests.serving.conftest import serving

from shipyard import Project
from shipyard.core.schema import ColumnSpec, Signature
from shipyard.flavors.kernels import HistGradientBoostingKernel, without_feature_names
from shipyard.serving import BatchSettings, MicroBatcher, Prediction, create_app
from shipyard.serving.columns import (
    ColumnCaster,
    MatrixColumns,
    concat_columns,
    records_to_columns,
    to_frame,
    to_matrix,
)
from shipyard.serving.protocols.fastpath import match
from shipyard.serving.state import server_state

NAMES = [f"f{i}" for i in range(6)]


def float_frame(rows: int, seed: int = 0, missing: bool = False) -> pd.DataFrame:
    """Float features, with a few NaN when ``missing``."""
    data = np.random.default_rng(seed).normal(size=(rows, len(NAMES)))
    if missing:
        data[::7, 2] = np.nan
    return pd.DataFrame(data, columns=NAMES)


def target(frame: pd.DataFrame) -> np.ndarray:
    """A binary label the features explain."""
    return (frame["f0"].fillna(0) + frame["f1"] * frame["f3"] > 0).to_numpy().astype(int)


@pytest.fixture(scope="module")
def hgb_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, Any]]:
    """A project with ``hgb``: an HGB classifier fitted on an all-float DataFrame."""
    frame = float_frame(600, missing=True)
    model = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(frame, target(frame))
    root = tmp_path_factory.mktemp("fastpath")
    settings = make_settings(root / "proj", f"sqlite:///{root / 'shipyard.db'}")
    with Project(settings=settings) as project:
        project.registry.register("hgb", model, input_example=frame.head(40), trust=True)
        yield project, model


# -- the HistGradientBoosting kernel -----------------------------------------------------------


@pytest.mark.parametrize("kind", ["classifier", "multiclass", "regressor"])
def test_kernel_is_bit_identical_to_the_model(kind: str) -> None:
    frame = float_frame(500, seed=1, missing=True)
    if kind == "regressor":
        model: Any = HistGradientBoostingRegressor(max_iter=25).fit(frame, frame["f0"].fillna(1))
    else:
        labels = target(frame) if kind == "classifier" else np.arange(500) % 3
        model = HistGradientBoostingClassifier(max_iter=25).fit(frame, labels)
    kernel = HistGradientBoostingKernel.build(model)
    assert kernel is not None
    for rows in (frame.head(1), frame.iloc[3:40]):
        matrix = rows.to_numpy()
        assert np.array_equal(kernel.predict(matrix), model.predict(rows))
        if kind != "regressor":
            assert np.array_equal(kernel.predict_proba(matrix), model.predict_proba(rows))


def test_kernel_only_for_plain_numeric_hgb_models() -> None:
    frame = float_frame(200)
    assert HistGradientBoostingKernel.build(LogisticRegression().fit(frame, target(frame))) is None
    categorical = frame.assign(f5=(frame["f5"] > 0).astype("category"))
    model = HistGradientBoostingClassifier(max_iter=5, categorical_features="from_dtype")
    assert HistGradientBoostingKernel.build(model.fit(categorical, target(frame))) is None


def test_without_feature_names_copies_and_predicts_the_same() -> None:
    frame = float_frame(200)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, target(frame))
    twin = without_feature_names(pipeline)
    assert not hasattr(twin, "feature_names_in_")
    assert list(pipeline.feature_names_in_) == NAMES  # the original is untouched
    assert np.array_equal(twin.predict_proba(frame.to_numpy()), pipeline.predict_proba(frame))


# -- records straight into a matrix --------------------------------------------------------------


FLOATS = Signature(inputs=tuple(ColumnSpec(n, "float64", nullable=n == "f2") for n in NAMES))


def test_cast_records_equals_the_general_cast() -> None:
    caster = ColumnCaster(FLOATS)
    records = [{n: i * 1.5 + j for j, n in enumerate(reversed(NAMES))} for i in range(3)]
    records[1]["f4"] = 7  # an int in a float column
    fast = caster.cast_records(records)
    general = caster.cast(records_to_columns(records))
    assert isinstance(fast, MatrixColumns)
    assert list(fast) == list(general) == NAMES
    for name in NAMES:
        np.testing.assert_array_equal(fast[name], general[name])
        assert fast[name].dtype == general[name].dtype
    np.testing.assert_array_equal(to_matrix(fast), to_matrix(general))
    pd.testing.assert_frame_equal(to_frame(fast, FLOATS), to_frame(general, FLOATS))


@pytest.mark.parametrize(
    "change",
    [
        {"f1": True},  # a bool: the general path decides
        {"f1": "1.5"},  # text is not a number
        {"f1": None},  # a null
        {"f0": float("nan")},  # NaN in a column that never saw one
        {"f2": float("nan")},  # NaN, even where allowed: cast() handles missing values
        {"extra": 1.0},  # an unknown column
    ],
)
def test_cast_records_leaves_anything_unusual_to_the_general_path(change: dict[str, Any]) -> None:
    row: dict[str, Any] = dict.fromkeys(NAMES, 1.0) | change
    assert ColumnCaster(FLOATS).cast_records([row]) is None
    missing = dict.fromkeys(NAMES[1:], 1.0)
    assert ColumnCaster(FLOATS).cast_records([missing]) is None
    mixed = Signature(inputs=(ColumnSpec("a", "float64"), ColumnSpec("b", "int64")))
    assert ColumnCaster(mixed).cast_records([{"a": 1.0, "b": 2}]) is None


def test_concat_keeps_one_matrix() -> None:
    parts = [MatrixColumns(np.full((n, 2), float(n)), ["a", "b"]) for n in (1, 3)]
    joined = concat_columns(parts)
    assert isinstance(joined, MatrixColumns)
    assert joined.matrix.tolist() == [[1.0, 1.0]] + [[3.0, 3.0]] * 3
    assert joined["b"].tolist() == [1.0, 3.0, 3.0, 3.0]


# -- the app ------------------------------------------------------------------------------------


pytestmark_anyio = pytest.mark.anyio


@pytestmark_anyio
async def test_fast_route_answers_like_the_framework_route(
    hgb_project: tuple[Project, Any],
) -> None:
    project, model = hgb_project
    rows = float_frame(5, seed=3)
    body = rows.to_json(orient="records").encode()
    app = create_app(project.registry, ["hgb"])
    async with serving(app) as client:
        fast = await client.post(
            "/v1/models/hgb/predict", content=body, headers={"x-request-id": "abc"}
        )
        routed = await client.post(
            "/v1/models/hgb/versions/1/predict", content=body, headers={"x-request-id": "abc"}
        )
        listing = (await client.get("/v1/models")).json()
        errors = [
            await client.post("/v1/models/nope/predict", content=body),
            await client.post("/v1/models/hgb/predict", content=b"{not json"),
            await client.post("/v1/models/hgb/predict", content=b'[{"f0": 1.0}]'),
        ]
        metrics = (await client.get("/metrics")).text
    assert listing["models"][0]["input_mode"] == "kernel"
    assert fast.status_code == routed.status_code == 200
    assert fast.content == routed.content
    assert fast.headers["content-type"] == routed.headers["content-type"] == "application/json"
    assert fast.headers["x-request-id"] == "abc"
    answer = orjson.loads(fast.content)
    assert answer["predictions"] == model.predict(rows).tolist()
    assert np.array_equal(np.asarray(answer["probabilities"]), model.predict_proba(rows))
    assert [e.status_code for e in errors] == [404, 400, 422]
    for error in errors:
        assert error.json()["request_id"] == error.headers["x-request-id"]
    assert errors[0].json()["type"] == "NotFoundError"
    assert "column" in errors[2].json()
    assert 'protocol="native",status="200",version="1"} 2.0' in metrics


@pytestmark_anyio
async def test_lockstep_clients_do_not_wait_out_max_wait() -> None:
    sizes: list[int] = []

    def run(columns: dict[str, np.ndarray]) -> Prediction:
        sizes.append(len(columns["x"]))
        return Prediction(columns["x"])

    with ThreadPoolExecutor(1) as executor:
        # max_wait of an hour: a batch that waited it out would fail wait_for's bound at once
        batcher = MicroBatcher(run, executor, BatchSettings(max_batch=64, max_wait=3600.0))
        batcher.start()
        try:
            for round_ in range(3):  # four clients in lock-step, three rounds
                answers = await asyncio.wait_for(
                    asyncio.gather(
                        *(batcher.submit({"x": np.array([float(i + round_)])}) for i in range(4))
                    ),
                    timeout=120,
                )
                assert [a.predictions.tolist() for a in answers] == [
                    [float(i + round_)] for i in range(4)
                ]
        finally:
            await batcher.stop()
    assert sizes == [4, 4, 4]  # each batch left once its four requests were in


# -- every protocol on the fast path -------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "handler", "params"),
    [
        ("/v1/models/hgb/predict", "predict_ref", ("hgb",)),
        ("/v1/models/hgb@prod/predict", "predict_ref", ("hgb@prod",)),
        ("/v1/models/hgb/versions/1/predict", None, None),  # FastAPI's route
        ("/invocations", "invocations_reply", ()),
        ("/v2/models/hgb/infer", "infer_reply", ("hgb", None)),
        ("/v2/models/hgb/versions/3/infer", "infer_reply", ("hgb", "3")),
        ("/v2/models/hgb/versions//infer", None, None),
        ("/v2/models/a/b/infer", None, None),
        ("/v2/models/hgb/ready", None, None),
        ("/invocations/x", None, None),
    ],
)
def test_match_finds_each_protocols_prediction_path(
    path: str, handler: str | None, params: tuple[Any, ...] | None
) -> None:
    found = match(path)
    if handler is None:
        assert found is None
    else:
        assert found is not None
        assert found[0].__name__ == handler
        assert found[1] == params


def framework_only(app: Any) -> Any:
    """The app without its fast path: every request through FastAPI's routes."""

    async def call(scope: Any, receive: Any, send: Any) -> None:
        await FastAPI.__call__(app, scope, receive, send)

    return call


CALLS = [
    ("/invocations", {"content-type": "application/json"}, "split"),
    ("/invocations?model=hgb", {"content-type": "application/json"}, "records"),
    ("/invocations", {"content-type": "text/csv"}, "csv"),
    ("/invocations", {"content-type": "application/json"}, "bad"),
    ("/invocations", {"content-type": "text/plain"}, "split"),
    ("/invocations?model=nope", {"content-type": "application/json"}, "split"),
    ("/v2/models/hgb/infer", {}, "tensor"),
    ("/v2/models/hgb/versions/1/infer", {}, "binary"),
    ("/v2/models/hgb/infer", {}, "bad"),
    ("/v2/models/nope/infer", {}, "tensor"),
]


def call_body(kind: str, rows: pd.DataFrame) -> tuple[bytes, dict[str, str]]:
    """A request body of ``kind`` for ``rows``, and any header it needs."""
    if kind == "split":
        return orjson.dumps({"dataframe_split": orjson.loads(rows.to_json(orient="split"))}), {}
    if kind == "records":
        return orjson.dumps({"dataframe_records": orjson.loads(rows.to_json(orient="records"))}), {}
    if kind == "csv":
        return rows.to_csv(index=False).encode(), {}
    if kind == "bad":
        return b'{"inputs": "nope"}', {}
    tensor: dict[str, Any] = {"name": "x", "datatype": "FP64", "shape": list(rows.shape)}
    if kind == "tensor":
        return orjson.dumps({"inputs": [{**tensor, "data": rows.to_numpy().ravel().tolist()}]}), {}
    raw = rows.to_numpy().astype("<f8").tobytes()
    header = orjson.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}],
            "parameters": {"binary_data_output": True},
        }
    )
    return header + raw, {"inference-header-content-length": str(len(header))}


@pytestmark_anyio
async def test_every_protocol_answers_on_the_fast_path_as_through_fastapi(
    hgb_project: tuple[Project, Any],
) -> None:
    project, _ = hgb_project
    rows = float_frame(3, seed=8)
    app = create_app(project.registry, ["hgb"])
    answers: dict[str, list[httpx.Response]] = {"fast": [], "framework": []}
    async with app.router.lifespan_context(app):
        for way, asgi in (("fast", app), ("framework", framework_only(app))):
            transport = httpx.ASGITransport(app=asgi)
            async with httpx.AsyncClient(transport=transport, base_url="http://s") as client:
                for path, headers, kind in CALLS:
                    content, extra = call_body(kind, rows)
                    answers[way].append(
                        await client.post(
                            path,
                            content=content,
                            headers={**headers, **extra, "x-request-id": "r1"},
                        )
                    )
        metrics = server_state(app).metrics.render().decode()
    for (path, _, kind), fast, framework in zip(
        CALLS, answers["fast"], answers["framework"], strict=True
    ):
        assert (fast.status_code, fast.content) == (framework.status_code, framework.content), (
            path,
            kind,
        )
        assert fast.headers == framework.headers, (path, kind)
    statuses = [a.status_code for a in answers["fast"]]
    assert statuses == [200, 200, 200, 400, 415, 404, 200, 200, 400, 404]
    assert 'protocol="mlflow",status="200",version="1"} 6.0' in metrics
    assert 'protocol="v2",status="200",version="1"} 4.0' in metrics

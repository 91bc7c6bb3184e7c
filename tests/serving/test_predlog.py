"""The prediction log: rows in the metadata database after real requests (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from tests.helpers import make_settings
from tests.serving.conftest import records, serving

from shipyard import Project
from shipyard.datasets.prediction_log import PredictionLogStore
from shipyard.serving import ServeSettings, create_app
from shipyard.serving.base import Prediction
from shipyard.serving.predlog import PredictionLog
from shipyard.store import Database

pytestmark = pytest.mark.anyio
Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]


@pytest.fixture
def logged_project(tmp_path: Path, database_url: str, trained: Trained) -> Iterator[Project]:
    """``churn`` v1 (production) on each database backend."""
    model, frame, _ = trained
    with Project(settings=make_settings(tmp_path / "proj", database_url)) as project:
        project.registry.register("churn", model, input_example=frame, trust=True)
        project.registry.promote("churn:1", to="production")
        yield project


def v2_body(rows: pd.DataFrame) -> dict[str, Any]:
    charges = [None if np.isnan(v) else v for v in rows["charges"]]
    return {
        "inputs": [
            {"name": "tenure", "datatype": "INT64", "shape": [len(rows)], "data": [*rows.tenure]},
            {"name": "charges", "datatype": "FP64", "shape": [len(rows)], "data": charges},
            {"name": "plan", "datatype": "BYTES", "shape": [len(rows)], "data": [*rows.plan]},
        ]
    }


def metric(text: str, name: str) -> float:
    line = next(x for x in text.splitlines() if x.startswith(name + " "))
    return float(line.split()[1])


def expected_records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {
            "tenure": int(r.tenure),
            "charges": None if np.isnan(r.charges) else float(r.charges),
            "plan": r.plan,
        }
        for r in rows.itertuples()
    ]


async def test_every_protocol_logs_inputs_outputs_and_latency(
    logged_project: Project, trained: Trained
) -> None:
    model, frame, _ = trained
    rows = frame.iloc[:3]
    nan_row = frame[frame["charges"].isna()].iloc[:1]
    started = datetime.now(UTC) - timedelta(seconds=1)
    app = create_app(logged_project.registry, ["churn@production"])
    answers: dict[str, Any] = {}
    async with serving(app) as client:
        fast = await client.post(
            "/v1/models/churn/predict", content=records(rows), headers={"x-request-id": "fast-1"}
        )
        routed = await client.post(
            "/v1/models/churn/versions/1/predict",
            content=records(nan_row),
            headers={"x-request-id": "route-1"},
        )
        mlflow = await client.post(
            "/invocations",
            json={"dataframe_records": expected_records(rows)},
            headers={"x-request-id": "mlflow-1"},
        )
        v2 = await client.post(
            "/v2/models/churn/infer", json=v2_body(rows), headers={"x-request-id": "v2-1"}
        )
        bad = await client.post("/v1/models/churn/predict", content=b'[{"tenure": "x"}]')
        for name, response in (("fast", fast), ("route", routed), ("mlflow", mlflow), ("v2", v2)):
            assert response.status_code == 200, response.text
            answers[name] = response.json()
        assert bad.status_code == 422
    # the app's shutdown flushed the queue: the rows are there now
    log = PredictionLogStore(logged_project.database).read("churn")
    assert list(log["request_id"]) == ["fast-1", "route-1", "mlflow-1", "v2-1"]
    assert set(log["version"]) == {1}
    assert not log["shadow"].any()
    assert (log["latency_ms"] > 0).all()
    assert (log["latency_ms"] < 10_000).all()
    assert (log["at"] >= pd.Timestamp(started)).all()
    by_id = log.set_index("request_id")
    expected = model.predict_proba(rows)
    for rid in ("fast-1", "mlflow-1", "v2-1"):
        assert by_id.loc[rid, "inputs"] == expected_records(rows)
        outputs = by_id.loc[rid, "outputs"]
        assert outputs["predictions"] == model.predict(rows).tolist()
        assert np.allclose(outputs["probabilities"], expected)
        assert outputs["classes"] == [0, 1]
    assert by_id.loc["fast-1", "outputs"]["predictions"] == answers["fast"]["predictions"]
    assert by_id.loc["mlflow-1", "outputs"]["predictions"] == answers["mlflow"]["predictions"]
    # a NaN input is logged as null
    assert by_id.loc["route-1", "inputs"] == expected_records(nan_row)
    assert by_id.loc["route-1", "inputs"][0]["charges"] is None
    # the store's read() filters by time and limits
    assert PredictionLogStore(logged_project.database).read("churn", limit=2)[
        "request_id"
    ].tolist() == [
        "fast-1",
        "route-1",
    ]
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert PredictionLogStore(logged_project.database).read("churn", since=later).empty
    assert PredictionLogStore(logged_project.database).read("other").empty


async def test_a_full_queue_drops_and_counts_and_every_answer_succeeds(
    logged_project: Project, trained: Trained
) -> None:
    _, frame, _ = trained
    app = create_app(logged_project.registry, ["churn"], ServeSettings(prediction_log_queue=5))
    body = records(frame.iloc[:1])
    async with serving(app) as client:
        log: PredictionLog = app.state.server.prediction_log
        with log._write_lock:  # hold the writer back: the burst must overflow the queue
            answers = await asyncio.gather(
                *(client.post("/v1/models/churn/predict", content=body) for _ in range(40))
            )
            assert [a.status_code for a in answers] == [200] * 40
            assert log.pending == 5
            dropped = metric(
                (await client.get("/metrics")).text, "shipyard_prediction_log_dropped_total"
            )
            assert dropped == 35
    assert len(PredictionLogStore(logged_project.database).read("churn")) == 5


async def test_logging_off_writes_nothing(logged_project: Project, trained: Trained) -> None:
    _, frame, _ = trained
    app = create_app(logged_project.registry, ["churn"], ServeSettings(prediction_log=False))
    assert app.state.server.prediction_log is None
    async with serving(app) as client:
        response = await client.post("/v1/models/churn/predict", content=records(frame.iloc[:2]))
        assert response.status_code == 200
        mlflow = await client.post(
            "/invocations", json={"dataframe_records": expected_records(frame.iloc[:2])}
        )
        assert mlflow.status_code == 200
    assert PredictionLogStore(logged_project.database).read("churn").empty


def prediction() -> Prediction:
    return Prediction(np.array([1, 0]), np.array([[0.2, 0.8], [0.9, 0.1]]), [0, 1])


def columns() -> dict[str, np.ndarray]:
    return {"x": np.array([1.5, np.nan]), "s": np.array(["a", None], dtype=object)}


def test_close_flushes_what_is_queued_in_batches(database_url: str) -> None:
    database = Database.open(database_url)
    try:
        log = PredictionLog(database, max_queue=100, batch_rows=3, flush_interval=3600)
        log.start()
        for i in range(7):
            log.record("m", 2, f"r{i}", 0.0015, columns(), prediction())
        log.close()
        assert log.pending == 0
        frame = PredictionLogStore(database).read("m")
        assert frame["request_id"].tolist() == [f"r{i}" for i in range(7)]
        assert frame["latency_ms"].tolist() == [1.5] * 7
        assert frame["inputs"][0] == [{"x": 1.5, "s": "a"}, {"x": None, "s": None}]
        assert frame["outputs"][0] == {
            "predictions": [1, 0],
            "probabilities": [[0.2, 0.8], [0.9, 0.1]],
            "classes": [0, 1],
        }
        log.record("m", 2, "shadowed", 0.001, columns(), prediction(), shadow=True)
        log.flush()
        assert PredictionLogStore(database).read("m", shadow=True)["request_id"].tolist() == [
            "shadowed"
        ]
        assert len(PredictionLogStore(database).read("m", shadow=False)) == 7
    finally:
        database.dispose()


def test_the_writer_wakes_when_a_batch_is_full(database_url: str) -> None:
    database = Database.open(database_url)
    try:
        log = PredictionLog(database, batch_rows=4, flush_interval=3600)
        log.start()
        for i in range(4):
            log.record("m", 1, f"r{i}", 0.001, columns(), prediction())
        for _ in range(200):
            if log.written == 4:
                break
            time.sleep(0.025)
        assert log.written == 4
        log.close()
    finally:
        database.dispose()


def test_a_failed_write_counts_and_the_log_keeps_going(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'unmigrated.db'}")  # no prediction_log table
    try:
        log = PredictionLog(database, flush_interval=3600)
        log.record("m", 1, "r", 0.001, columns(), prediction())
        assert log.flush() == 0
        assert log.errors._value.get() == 1
        log.record("m", 1, "r2", 0.001, columns(), prediction())  # still accepted
        assert log.pending == 1
    finally:
        database.dispose()


async def test_a_long_request_logs_its_first_rows_and_its_row_count(
    logged_project: Project, trained: Trained
) -> None:
    _, frame, _ = trained
    rows = frame.iloc[:12]
    app = create_app(
        logged_project.registry,
        ["churn@production"],
        ServeSettings(prediction_log_max_rows=5),
    )
    async with serving(app) as client:
        long = await client.post(
            "/v1/models/churn/predict", content=records(rows), headers={"x-request-id": "long"}
        )
        short = await client.post(
            "/invocations",
            json={"dataframe_records": expected_records(rows.iloc[:5])},
            headers={"x-request-id": "short"},
        )
    assert long.status_code == 200
    assert short.status_code == 200
    assert len(long.json()["predictions"]) == 12  # the answer is whole; only the log is capped
    log = PredictionLogStore(logged_project.database).read("churn").set_index("request_id")
    assert log.loc["long", "inputs"] == expected_records(rows.iloc[:5])
    assert log.loc["long", "outputs"]["predictions"] == long.json()["predictions"][:5]
    assert log.loc["long", "outputs"]["rows"] == 12
    assert len(log.loc["long", "outputs"]["probabilities"]) == 5
    assert "rows" not in log.loc["short", "outputs"]  # at the cap: logged whole


def test_request_ids_are_indexed(database_url: str) -> None:
    import sqlalchemy as sa

    database = Database.open(database_url)
    try:
        indexes = sa.inspect(database.engine).get_indexes("prediction_log")
        assert ["request_id"] in [index["column_names"] for index in indexes]
    finally:
        database.dispose()

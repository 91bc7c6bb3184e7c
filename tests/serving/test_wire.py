"""Over a real socket: uvicorn (uvloop + httptools) on loopback serving the real app."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn
from fastapi import FastAPI
from sklearn.pipeline import Pipeline
from tests.serving.conftest import records

from shipyard import Project
from shipyard.serving import Prediction, create_app

Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]


class LiveServer:
    """uvicorn running ``app`` in a thread on a free loopback port."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        config = uvicorn.Config(
            app,
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=10,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]})

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 60  # a busy 2-core machine warms models slowly
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.socket.close()


@pytest.fixture
def live_server(served_project: Project) -> Iterator[LiveServer]:
    """The real app serving churn (production and version 2) over loopback."""
    server = LiveServer(create_app(served_project.registry, ["churn@production", "churn:2"]))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_protocols_over_a_socket(live_server: LiveServer, trained: Trained) -> None:
    model, frame, _ = trained
    rows = frame.head(5)
    with httpx.Client(base_url=live_server.url) as client:
        assert client.get("/health/ready").status_code == 200
        native = client.post("/v1/models/churn/versions/2/predict", content=records(rows))
        mlflow = client.post(
            "/invocations",
            content=rows.to_csv(index=False),
            headers={"content-type": "text/csv; charset=utf-8"},
        )
        bad = client.post("/v1/models/churn/predict", json=[{"tenure": 1}])
        metrics = client.get("/metrics")
    assert native.status_code == 200
    assert native.json()["version"] == 2
    assert native.json()["predictions"] == model.predict(rows).tolist()
    assert mlflow.json() == {"predictions": model.predict(rows).tolist()}
    assert bad.status_code == 422
    assert bad.json()["column"] == "charges"
    assert 'shipyard_requests_total{model="churn",protocol="native",status="200",version="2"}' in (
        metrics.text
    )


def test_concurrent_clients_over_a_socket(live_server: LiveServer, trained: Trained) -> None:
    model, frame, _ = trained
    expected = model.predict(frame.head(40)).tolist()

    def one(i: int) -> object:
        with httpx.Client(base_url=live_server.url) as client:
            body = records(frame.iloc[i : i + 1])
            return client.post("/v1/models/churn/predict", content=body).json()["predictions"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(40)))
    assert answers == [[label] for label in expected]


def test_graceful_stop_finishes_in_flight_requests(
    served_project: Project, trained: Trained
) -> None:
    _, frame, _ = trained
    server = LiveServer(create_app(served_project.registry, ["churn"]))
    server.start()
    try:
        served = server.app.state.server.models.get("churn")
        fast = served.batcher._run

        def slow(columns: dict[str, np.ndarray]) -> Prediction:
            time.sleep(0.5)
            return fast(columns)

        served.batcher._run = slow
        inflight = server.app.state.server.metrics.inflight.labels("churn", str(served.version))
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(
                httpx.post,
                f"{server.url}/v1/models/churn/predict",
                content=records(frame.head(3)),
                timeout=10,
            )
            deadline = time.monotonic() + 5
            while inflight._value.get() < 1:
                assert time.monotonic() < deadline, "the request never reached the model"
                time.sleep(0.005)
            assert not pending.done()
            server.server.should_exit = True  # like SIGTERM, while the prediction runs
            response = pending.result(10)
        server.thread.join(20)
    finally:
        server.stop()
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 3
    assert not server.thread.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/health/live")

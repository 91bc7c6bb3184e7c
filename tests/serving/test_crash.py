"""``shipyard serve`` killed with SIGKILL under load: what the prediction log keeps.

Without a spool the loss is what the writer had not flushed (at most one flush interval of
answers: docs/benchmarks.md has a measurement); with ``[serving] prediction_log_spool`` it
is zero, and the next server writes what the killed one left, once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from tests.helpers import make_settings
from tests.serving.conftest import records
from tests.serving.test_grpc import Served, start_server

from shipyard import Project
from shipyard.datasets.prediction_log import PredictionLogStore

Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]


@pytest.fixture
def project(tmp_path: Path, database_url: str, trained: Trained) -> Iterator[Project]:
    model, frame, _ = trained
    toml = '[project]\nname = "crash"\n[serving]\nprediction_log_spool = ".shipyard/spool"\n'
    with Project(settings=make_settings(tmp_path / "proj", database_url, toml)) as opened:
        opened.registry.register("churn", model, input_example=frame, trust=True)
        yield opened


def load_until_killed(
    served: Served, body: bytes, answered: list[str], stop: threading.Event
) -> None:
    with httpx.Client(base_url=served.url, timeout=10) as client:
        number = 0
        while not stop.is_set():
            rid = f"load-{threading.get_ident()}-{number}"
            number += 1
            try:
                response = client.post(
                    "/v1/models/churn/predict", content=body, headers={"x-request-id": rid}
                )
            except httpx.TransportError:
                return  # the server is gone
            if response.status_code == 200:
                answered.append(rid)


def logged_ids(project: Project) -> set[str]:
    return set(PredictionLogStore(project.database).read("churn", limit=10**6)["request_id"])


def kill_under_load(project: Project, body: bytes) -> list[str]:
    served = start_server(project, "churn")
    answered: list[str] = []
    stop = threading.Event()
    workers = [
        threading.Thread(target=load_until_killed, args=(served, body, answered, stop))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    while len(answered) < 400:  # under load, mid-flush
        threading.Event().wait(0.01)
    served.process.send_signal(signal.SIGKILL)
    served.process.wait()
    stop.set()
    for worker in workers:
        worker.join()
    served.stop()
    return answered


def test_a_spooled_server_killed_under_load_loses_no_answered_prediction(
    project: Project, trained: Trained
) -> None:
    _, frame, _ = trained
    answered = kill_under_load(project, records(frame[:1]))
    restarted = start_server(project, "churn")  # replays the spool before it is ready
    try:
        logged = logged_ids(project)
        assert set(answered) <= logged
        assert len(PredictionLogStore(project.database).read("churn", limit=10**6)) == len(logged)
    finally:
        restarted.stop()
    assert list((project.root / ".shipyard" / "spool").iterdir()) == []

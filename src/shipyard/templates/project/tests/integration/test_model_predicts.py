"""Integration tests: the model at the prototype stage loads, predicts, and answers over HTTP.

The HTTP test starts the same server as 'shipyard serve' on a free loopback port, sends
real rows as a client application would, and checks the answers equal the model's own.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import uvicorn

from shipyard import LoadedModel, NotFoundError, Project
from shipyard.datasets import read_source
from shipyard.serving import create_app

#: The model and stage under test.
REF = "churn@prototype"
#: Columns of the source that are not model inputs.
NOT_FEATURES = ["customer_id", "churned"]


@pytest.fixture(scope="module")
def model(project: Project) -> LoadedModel:
    """The model at the prototype stage."""
    try:
        return project.registry.load(REF)
    except NotFoundError:
        pytest.fail(f"nothing holds {REF} yet; run 'shipyard run train' (its gate promotes it)")


def test_predicts_on_the_input_example(project: Project, model: LoadedModel) -> None:
    example = pd.DataFrame(project.registry.get(REF).input_example or [])
    assert len(example) > 0
    predicted = model.predict(example)
    assert len(predicted) == len(example)


def test_predicts_probabilities_on_source_rows(project: Project, model: LoadedModel) -> None:
    rows = read_source(project.sources["customers"], project.root).head(50)
    proba = model.predict_proba(rows.drop(columns=NOT_FEATURES))[:, 1]
    assert len(proba) == len(rows)
    assert ((proba >= 0.0) & (proba <= 1.0)).all()


@pytest.fixture(scope="module")
def server(project: Project, model: LoadedModel) -> Iterator[str]:  # noqa: ARG001
    """The base URL of a model server for REF on 127.0.0.1 (stopped after the tests).

    Depends on ``model`` so a missing REF fails with its clear message first.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(project.registry, [REF])
    running = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not running.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the model server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    thread.join(timeout=30)


def test_serves_the_same_predictions_over_http(
    project: Project, model: LoadedModel, server: str
) -> None:
    rows = read_source(project.sources["customers"], project.root).head(20)
    features = rows.drop(columns=NOT_FEATURES)
    request = urllib.request.Request(
        f"{server}/v1/models/{REF}/predict",
        data=features.to_json(orient="records").encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    assert answer["predictions"] == model.predict(features).tolist()
    assert np.allclose(answer["probabilities"], model.predict_proba(features))

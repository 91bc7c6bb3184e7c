"""Prometheus /metrics: shipyard_ names, model and version labels, one registry per app."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.pipeline import Pipeline
from tests.serving.conftest import records, serving

from shipyard import Project
from shipyard.serving import ServingMetrics, create_app

pytestmark = pytest.mark.anyio

Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


async def test_metrics_carry_model_and_version(served_project: Project, trained: Trained) -> None:
    _, frame, _ = trained
    app = create_app(served_project.registry, ["churn@production"])
    async with serving(app) as client:
        for i in range(3):
            await client.post("/v1/models/churn/predict", content=records(frame.iloc[i : i + 2]))
        await client.post("/v1/models/churn/predict", json=[{"tenure": "x"}])
        await client.post("/invocations", json={"dataframe_records": [{"tenure": 1}]})
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    requests = {
        (s["protocol"], s["status"]): v
        for s, v in samples["shipyard_requests_total"]
        if s["model"] == "churn" and s["version"] == "1"
    }
    assert requests == {("native", "200"): 3, ("native", "422"): 1, ("mlflow", "400"): 1}
    counts = [
        v
        for s, v in samples["shipyard_request_duration_seconds_count"]
        if s == {"model": "churn", "version": "1", "protocol": "native"}
    ]
    assert counts == [4]
    batch_rows = {(s["model"], s["version"]): v for s, v in samples["shipyard_batch_size_sum"]}
    assert batch_rows["churn", "1"] >= 6  # warm-up batches are not counted before serving
    assert ({"model": "churn", "version": "1"}, 0.0) in samples["shipyard_inflight_requests"]
    assert ({"model": "churn", "version": "1"}, 0.0) in samples["shipyard_model_errors_total"]


def test_each_app_has_its_own_registry() -> None:
    first, second = ServingMetrics(), ServingMetrics()
    first.observe_request("a", "1", "native", 200, 0.01)
    assert b'shipyard_requests_total{model="a"' in first.render()
    assert b'model="a"' not in second.render()

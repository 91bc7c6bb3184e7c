"""Micro-batching: concurrent requests merge into few predict calls and are split back."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from tests.serving.conftest import records, serving

from shipyard import Project, ShipyardError
from shipyard.serving import BatchSettings, MicroBatcher, ModelFailedError, Prediction, create_app
from shipyard.serving.batching import BatchFunction

pytestmark = pytest.mark.anyio

Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]


async def test_concurrent_requests_share_predict_calls(
    served_project: Project, trained: Trained
) -> None:
    model, frame, _ = trained
    app = create_app(served_project.registry, ["churn"])
    async with serving(app) as client:
        batcher = app.state.server.models.get("churn").batcher
        before = batcher.batches
        responses = await asyncio.gather(
            *(
                client.post("/v1/models/churn/predict", content=records(frame.iloc[i : i + 1]))
                for i in range(50)
            )
        )
        calls = batcher.batches - before
    assert all(r.status_code == 200 for r in responses)
    assert calls < 50
    for i, response in enumerate(responses):
        row = frame.iloc[i : i + 1]
        assert response.json()["predictions"] == model.predict(row).tolist()
        np.testing.assert_allclose(response.json()["probabilities"], model.predict_proba(row))


async def test_a_bad_request_never_fails_its_neighbours(
    served_project: Project, trained: Trained
) -> None:
    model, frame, _ = trained
    bad = b'[{"tenure": 1, "charges": "lots", "plan": "pro"}]'
    bodies = [records(frame.iloc[i : i + 2]) for i in range(20)]
    bodies.insert(7, bad)
    async with serving(create_app(served_project.registry, ["churn"])) as client:
        responses = await asyncio.gather(
            *(client.post("/v1/models/churn/predict", content=body) for body in bodies)
        )
    assert responses[7].status_code == 422
    assert responses[7].json()["column"] == "charges"
    good = responses[:7] + responses[8:]
    for i, response in enumerate(good):
        assert response.status_code == 200
        assert response.json()["predictions"] == model.predict(frame.iloc[i : i + 2]).tolist()


def _columns(*values: float) -> dict[str, np.ndarray]:
    return {"x": np.asarray(values, dtype="float64")}


class GatedModel:
    """Doubles ``x``; blocks its first call until released; fails on a negative value."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.sizes: list[int] = []

    def __call__(self, columns: dict[str, np.ndarray]) -> Prediction:
        if not self.sizes:
            self.release.wait(5)
        self.sizes.append(len(columns["x"]))
        if (columns["x"] < 0).any():
            raise ValueError("negative input")
        return Prediction(columns["x"] * 2)


@asynccontextmanager
async def running(
    run: GatedModel | BatchFunction, settings: BatchSettings
) -> AsyncIterator[MicroBatcher]:
    """A started batcher over ``run``, stopped (queue answered) at the end."""
    with ThreadPoolExecutor(1) as executor:
        batcher = MicroBatcher(run, executor, settings)
        batcher.start()
        try:
            yield batcher
        finally:
            await batcher.stop()


async def blocked_first(batcher: MicroBatcher, value: float) -> asyncio.Future[Prediction]:
    """Submit one request and let its batch start (a GatedModel holds it until released)."""
    first = asyncio.ensure_future(batcher.submit(_columns(value)))
    await asyncio.sleep(0.05)
    return first


async def test_a_model_error_fails_only_its_batch() -> None:
    model = GatedModel()
    async with running(model, BatchSettings(max_batch=8, max_wait=0)) as batcher:
        first = await blocked_first(batcher, 1)  # running: the next requests queue
        poisoned = asyncio.ensure_future(batcher.submit(_columns(-1)))
        neighbour = asyncio.ensure_future(batcher.submit(_columns(2, 3)))
        await asyncio.sleep(0.01)
        model.release.set()
        assert (await first).predictions.tolist() == [2]
        for request in (poisoned, neighbour):
            with pytest.raises(ModelFailedError, match="negative input"):
                await request
        later = await batcher.submit(_columns(4))  # the worker survives a failed batch
    assert later.predictions.tolist() == [8]
    assert model.sizes == [1, 3, 1]


async def test_max_batch_caps_the_rows_of_a_call() -> None:
    model = GatedModel()
    async with running(model, BatchSettings(max_batch=4, max_wait=0)) as batcher:
        first = await blocked_first(batcher, 0)
        queued = [asyncio.ensure_future(batcher.submit(_columns(i))) for i in range(1, 11)]
        await asyncio.sleep(0.01)
        model.release.set()
        results = await asyncio.gather(first, *queued)
    assert [r.predictions.tolist() for r in results] == [[2 * i] for i in range(11)]
    assert model.sizes == [1, 4, 4, 2]


async def test_an_idle_queue_does_not_wait() -> None:
    echo: BatchFunction = lambda columns: Prediction(columns["x"])  # noqa: E731
    async with running(echo, BatchSettings(max_batch=64, max_wait=2.0)) as batcher:
        started = time.perf_counter()
        result = await batcher.submit(_columns(5))
        elapsed = time.perf_counter() - started
    assert result.predictions.tolist() == [5]
    assert elapsed < 1.0  # far below max_wait: a lone request runs at once


async def test_stop_answers_what_is_queued() -> None:
    model = GatedModel()
    async with running(model, BatchSettings(max_wait=0)) as batcher:
        pending = [asyncio.ensure_future(batcher.submit(_columns(i))) for i in range(5)]
        await asyncio.sleep(0.01)
        stopping = asyncio.ensure_future(batcher.stop())
        model.release.set()
        await stopping
        results = await asyncio.gather(*pending)
        with pytest.raises(ShipyardError, match="not accepting requests"):
            await batcher.submit(_columns(1))
    assert [r.predictions.tolist() for r in results] == [[2 * i] for i in range(5)]

"""The app factory: readiness around the lifespan, request ids, access log, startup errors."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from tests.serving.conftest import records, serving

from shipyard import NotFoundError, Project
from shipyard.core.exceptions import ConfigError
from shipyard.core.refs import ModelRef
from shipyard.flavors import LoadedModel
from shipyard.registry import Registry
from shipyard.serving import ServeSettings, create_app

pytestmark = pytest.mark.anyio

Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]


class SlowRegistry(Registry):
    """The project's registry, whose ``load`` waits until the test releases it."""

    def __init__(self, registry: Registry) -> None:
        super().__init__(registry.database, registry.artifacts, registry.settings)
        self.release = threading.Event()

    def load(self, ref: str | ModelRef) -> LoadedModel:
        self.release.wait(10)
        return super().load(ref)


async def test_ready_only_after_every_model_is_warm(served_project: Project) -> None:
    slow = SlowRegistry(served_project.registry)
    app = create_app(slow, ["churn@production", "churn:2"])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shipyard") as client:
        lifespan = app.router.lifespan_context(app)
        starting = asyncio.ensure_future(lifespan.__aenter__())
        await asyncio.sleep(0.05)
        live = await client.get("/health/live")  # the loop keeps answering while models load
        loading = await client.get("/health/ready")
        slow.release.set()
        await starting
        ready = await client.get("/health/ready")
        await lifespan.__aexit__(None, None, None)
    assert live.status_code == 200
    assert loading.status_code == 503
    assert loading.json()["status"] == "loading"
    assert ready.status_code == 200
    assert ready.json()["models"] == ["churn:1", "churn:2"]


async def test_without_lifespan_nothing_is_ready(served_project: Project) -> None:
    app = create_app(served_project.registry, ["churn"])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shipyard") as client:
        ready = await client.get("/health/ready")
        predict = await client.post("/v1/models/churn/predict", json=[{"tenure": 1}])
    assert ready.status_code == 503
    assert predict.status_code == 404
    assert "still loading" in predict.json()["error"]


async def test_request_id_is_echoed_or_made(served_project: Project, trained: Trained) -> None:
    _, frame, _ = trained
    async with serving(create_app(served_project.registry, ["churn"])) as client:
        given = await client.post(
            "/v1/models/churn/predict",
            content=records(frame.head(1)),
            headers={"x-request-id": "abc-123"},
        )
        made = await client.get("/health/live")
        failed = await client.post("/v1/models/churn/predict", content=b"{")
    assert given.headers["x-request-id"] == "abc-123"
    assert given.json()["request_id"] == "abc-123"
    assert len(made.headers["x-request-id"]) == 32
    assert failed.json()["request_id"] == failed.headers["x-request-id"]


async def test_access_log_has_one_json_line_per_request(
    served_project: Project, trained: Trained, caplog: pytest.LogCaptureFixture
) -> None:
    _, frame, _ = trained
    async with serving(create_app(served_project.registry, ["churn@production"])) as client:
        with caplog.at_level(logging.INFO, logger="shipyard.access"):
            await client.post(
                "/v1/models/churn/predict",
                content=records(frame.head(1)),
                headers={"x-request-id": "log-me"},
            )
            await client.post("/v1/models/nope/predict", content=b"[]")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "shipyard.access"]
    assert len(lines) == 2
    first, second = lines
    assert first["method"] == "POST"
    assert first["path"] == "/v1/models/churn/predict"
    assert first["status"] == 200
    assert first["model"] == "churn"
    assert first["version"] == "1"
    assert first["request_id"] == "log-me"
    assert first["duration_ms"] > 0
    assert second["status"] == 404
    assert second["model"] is None


async def test_a_wrong_reference_fails_startup(served_project: Project) -> None:
    app = create_app(served_project.registry, ["churn:42"])
    with pytest.raises(NotFoundError):
        async with serving(app):
            pass


def test_settings_and_references_are_checked(served_project: Project) -> None:
    with pytest.raises(ConfigError, match="no models to serve"):
        create_app(served_project.registry, [])
    assert ServeSettings(max_batch=8, max_wait_ms=5).batching.max_wait == pytest.approx(0.005)
    with pytest.raises(ValueError, match="max_batch"):
        _ = ServeSettings(max_batch=0).batching


_DEFERRED_CONSOLE = """
import asyncio, sys
import httpx
from shipyard import Project
from shipyard.serving import ServeSettings, create_app

CONSOLE = "shipyard.serving.console"


async def main() -> None:
    with Project(sys.argv[1]) as project:
        settings = ServeSettings(prediction_log=False)
        app = create_app(project.registry, ["churn@production"], settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://s") as client:
                ready = await client.get("/health/ready")
                print("ready", ready.status_code, CONSOLE in sys.modules)
                pages = await asyncio.gather(*(client.get("/ui/") for _ in range(3)))
                print("pages", *(page.status_code for page in pages), CONSOLE in sys.modules)


asyncio.run(main())
"""


def test_the_console_is_imported_on_its_first_request(served_project: Project) -> None:
    environment = {**os.environ, "SHIPYARD_DATABASE_URL": str(served_project.database.url)}
    done = subprocess.run(
        [sys.executable, "-c", _DEFERRED_CONSOLE, str(served_project.root)],
        capture_output=True, text=True, env=environment, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["ready 200 False", "pages 200 200 200 True"]

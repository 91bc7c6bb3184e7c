"""Fixtures for the serving tests: a project with registered models, and an app client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from sklearn.pipeline import Pipeline
from tests.helpers import make_settings

from shipyard import Project


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (the server's loop)."""
    return "asyncio"


@pytest.fixture(scope="module")
def served_project(
    tmp_path_factory: pytest.TempPathFactory, trained: tuple[Pipeline, pd.DataFrame, np.ndarray]
) -> Iterator[Project]:
    """A SQLite project with ``churn`` v1 (alias production) and v2, both the trained pipeline."""
    model, frame, _ = trained
    root = tmp_path_factory.mktemp("serving")
    settings = make_settings(root / "proj", f"sqlite:///{root / 'shipyard.db'}")
    with Project(settings=settings) as project:
        project.registry.register("churn", model, input_example=frame, trust=True)
        project.registry.register("churn", model, input_example=frame, trust=True)
        project.registry.promote("churn:1", to="production")
        yield project


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan (load + warm up) and give a client speaking to it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shipyard") as client:
            yield client


def records(frame: pd.DataFrame) -> bytes:
    """Rows as a JSON records body (NaN as null, as JSON clients send it)."""
    return frame.to_json(orient="records").encode()

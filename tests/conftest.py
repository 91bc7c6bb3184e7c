"""Fixtures shared by the whole suite: real databases (SQLite and PostgreSQL) and projects."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder
from tests.helpers import GATES_TOML, make_frame, make_settings

from shipyard import Project

PG_ADMIN_URL = os.environ.get(
    "SHIPYARD_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _pg_schema_url(schema: str) -> str:
    return f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty metadata database: a SQLite file, or a private PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'meta' / 'shipyard.db'}"
        return
    with postgres_schema() as url:
        yield url


@contextmanager
def postgres_schema() -> Iterator[str]:
    """The URL of a new private schema in the test PostgreSQL database, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL)
    try:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not reachable ({exc.orig}); start it")
    try:
        yield _pg_schema_url(schema)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def project(tmp_path: Path, database_url: str) -> Iterator[Project]:
    """A project with gates, on each database backend."""
    settings = make_settings(tmp_path / "proj", database_url, GATES_TOML)
    with Project(settings=settings) as opened:
        yield opened


@pytest.fixture(scope="session")
def trained() -> tuple[Pipeline, pd.DataFrame, np.ndarray]:
    """A fitted scikit-learn pipeline and its training data."""
    frame, target = make_frame(400)
    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        (SimpleImputer(), ["charges"]),
        remainder="passthrough",
    )
    model = make_pipeline(encode, HistGradientBoostingClassifier(max_iter=20)).fit(frame, target)
    return model, frame, target

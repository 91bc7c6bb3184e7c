"""Fixtures of the batch scoring tests: projects with the churn model registered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.batch.support import Trained, register_churn
from tests.helpers import make_settings
from threadpoolctl import threadpool_limits

from shipyard import Project


@pytest.fixture(autouse=True)
def one_thread_per_model() -> Iterator[None]:
    """Models predict on one OpenMP thread: the suite runs two workers on two cores, and
    idle OpenMP threads spinning beside them cost more than they give on chunks this small."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture
def local(tmp_path: Path, trained: Trained) -> Iterator[Project]:
    """A project on SQLite with ``churn:1`` registered (for tests the backend does not matter)."""
    settings = make_settings(tmp_path / "proj", f"sqlite:///{tmp_path / 'proj' / 'meta.db'}")
    with Project(settings=settings) as opened:
        register_churn(opened, trained)
        yield opened


@pytest.fixture
def churn_project(project: Project, trained: Trained) -> Project:
    """The suite's ``project`` (SQLite and PostgreSQL) with ``churn:1`` registered."""
    register_churn(project, trained)
    return project


@pytest.fixture
def sql_url(database_url: str, tmp_path: Path) -> str:
    """A database for SQL inputs and outputs: a SQLite file, or a private PostgreSQL schema."""
    (tmp_path / "meta").mkdir(exist_ok=True)  # the SQLite file's folder
    return database_url

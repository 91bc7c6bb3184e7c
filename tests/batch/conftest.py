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


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real S3-compatible server on loopback (moto's, from the dev extras) with a bucket
    ``scores``; the environment points boto at it. Skipped when moto or s3fs is missing."""
    moto_server = pytest.importorskip("moto.server", reason="needs moto[server] (dev extras)")
    s3fs = pytest.importorskip("s3fs", reason="needs s3fs (the s3 extra)")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "shipyard-tests",
        "AWS_SECRET_ACCESS_KEY": "shipyard-tests",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",  # a refused connection fails at once, not after retries
    }.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()  # fsspec keeps filesystems: not one of another port
    s3fs.S3FileSystem().mkdir("scores")
    try:
        yield endpoint
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()

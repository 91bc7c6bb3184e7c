"""Artifacts on S3: the same registry over a real S3 wire protocol (moto's server on loopback)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from shipyard import ArtifactIntegrityError, Project, Settings
from shipyard.store import ArtifactStore

moto_server = pytest.importorskip("moto.server")
s3fs = pytest.importorskip("s3fs")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An S3 API on 127.0.0.1 with a bucket named ``models``."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}).makedirs("models", exist_ok=True)
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        yield endpoint
    finally:
        server.stop()


def test_blobs_round_trip_and_tampering_is_caught(s3_endpoint: str) -> None:
    store = ArtifactStore("s3://models/shipyard", client_kwargs={"endpoint_url": s3_endpoint})
    digest = store.put_bytes(b"weights")
    assert store.get_bytes(digest) == b"weights"
    store.fs.pipe(f"models/shipyard/sha256/{digest[:2]}/{digest}", b"evil")
    with pytest.raises(ArtifactIntegrityError):
        store.get_bytes(digest)
    assert store.fs.find("models/shipyard/tmp") == []  # temporaries renamed away


def test_a_project_with_artifacts_on_s3(
    s3_endpoint: str,
    tmp_path: Path,
    trained: tuple[Pipeline, pd.DataFrame, np.ndarray],
) -> None:
    model, frame, _ = trained
    (tmp_path / "shipyard.toml").write_text("")
    environ = {"SHIPYARD_ARTIFACTS": "s3://models/churn"}
    with Project(settings=Settings.load(tmp_path, environ=environ)) as project:
        info = project.registry.register("churn", model, input_example=frame, trust=True)
        loaded = project.registry.load(info.ref)
        assert np.array_equal(loaded.predict(frame), model.predict(frame))
    assert not (tmp_path / ".shipyard" / "artifacts").exists()
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint})
    assert fs.exists(f"models/churn/sha256/{info.artifact_digest[:2]}/{info.artifact_digest}")

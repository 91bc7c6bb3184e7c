"""``shipyard serve`` at its edges: a model that does not load, a port already taken.

Both run the real command in a process of its own, as a user types it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from shipyard import Project

Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]
SHIPYARD = Path(sys.executable).parent / "shipyard"


@pytest.fixture
def folder(tmp_path: Path, trained: Trained) -> Path:
    """A project (its own SQLite database) with ``churn:1`` registered."""
    model, frame, _ = trained
    root = tmp_path / "proj"
    root.mkdir()
    (root / "shipyard.toml").write_text('[project]\nname = "edges"\n', encoding="utf-8")
    with Project(root) as project:
        project.registry.register("churn", model, input_example=frame.head(5), trust=True)
    return root


def serve(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``shipyard serve churn:1`` on ``folder`` until it exits (at most 120 s)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    return subprocess.run(
        [str(SHIPYARD), "--project", str(folder), "serve", "churn:1", "--no-prediction-log", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
        check=False,
    )


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another server listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def test_a_corrupt_artifact_is_one_line_and_exit_1(folder: Path) -> None:
    for stored in (folder / ".shipyard" / "artifacts").rglob("*"):
        if stored.is_file() and stored.read_bytes()[:2] == b"PK":  # the model file (a zip)
            stored.write_bytes(b"PK" + bytes(stored.stat().st_size - 2))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = serve(folder, "--port", str(port))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, result.stderr
    assert "was modified after it was stored" in errors[0]
    assert "register the model again" in errors[0]


def test_a_port_in_use_fails_before_loading_the_models(folder: Path, taken_port: int) -> None:
    result = serve(folder, "--port", str(taken_port))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"port {taken_port} on 127.0.0.1 is already in use" in result.stderr
    assert "--port" in result.stderr
    assert "warmed up" not in result.stderr  # no model was loaded
    assert "startup" not in result.stderr.lower()  # uvicorn never started

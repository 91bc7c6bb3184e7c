"""Fixtures of the monitoring tests: a project whose churn model has a reference profile."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.helpers import make_frame, make_settings
from threadpoolctl import threadpool_limits

from shipyard import Project
from shipyard.datasets.monitor_results import MonitorResults
from shipyard.monitoring.run import MonitorOutcome
from shipyard.statistics.report import MonitoringReport

Trained = tuple[Any, pd.DataFrame, np.ndarray]


@pytest.fixture(autouse=True)
def one_thread_per_model() -> Iterator[None]:
    """Models predict on one OpenMP thread (two test workers share two cores)."""
    with threadpool_limits(limits=1):
        yield


def reference_rows(rows: int = 3000, seed: int = 11) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows like the training data (the reference)."""
    return make_frame(rows, seed)


def drifted_rows(rows: int = 2000, seed: int = 12) -> tuple[pd.DataFrame, np.ndarray]:
    """A "next month" where tenure and plan moved: new customers, most on the basic plan."""
    frame, target = make_frame(rows, seed)
    rng = np.random.default_rng(seed)
    frame["tenure"] = rng.integers(0, 12, rows)
    frame["plan"] = rng.choice(["basic", "plus", "pro"], rows, p=[0.8, 0.15, 0.05])
    return frame, target


def register_with_reference(project: Project, trained: Trained, name: str = "churn") -> None:
    """Register the suite's model with 3,000 reference rows (its profile) and an f1 metric."""
    model, frame, _ = trained
    reference, _ = reference_rows()
    project.registry.register(
        name,
        model,
        input_example=frame.head(5),
        reference=reference,
        metrics={"f1": 0.6, "accuracy": 0.7},
        trust=True,
    )


def checked(project: Project, outcome: MonitorOutcome) -> dict[str, Any]:
    """The run's report, checked to round-trip: typed -> dict -> typed -> the same dict, and
    stored (when saved) exactly as printed."""
    report = outcome.report
    assert outcome.typed.to_dict() == report
    assert MonitoringReport.from_dict(report).to_dict() == report
    if outcome.result_id is not None:
        [stored] = MonitorResults(project.database).history(outcome.typed.model, limit=1)
        assert stored.id == outcome.result_id
        assert stored.report == report
        assert MonitoringReport.from_dict(stored.report).to_dict() == stored.report
    return report


@pytest.fixture
def monitored(tmp_path: Path, trained: Trained) -> Iterator[Project]:
    """A SQLite project with ``churn:1`` registered with a reference profile."""
    settings = make_settings(tmp_path / "proj", f"sqlite:///{tmp_path / 'proj' / 'meta.db'}")
    with Project(settings=settings) as opened:
        register_with_reference(opened, trained)
        yield opened


@pytest.fixture
def monitored_any(project: Project, trained: Trained) -> Project:
    """The suite's ``project`` (SQLite and PostgreSQL) with ``churn:1`` and its profile."""
    register_with_reference(project, trained)
    return project


class Receiver:
    """A webhook receiver on loopback: keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A running webhook receiver."""
    hook = Receiver()
    yield hook
    hook.close()

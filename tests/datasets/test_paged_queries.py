"""The paged, filtered and counted queries the console reads, on SQLite and PostgreSQL: runs,
dataset versions, batch jobs, the prediction log, monitoring reports and alert states."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from tests.helpers import monitoring_report

from shipyard.datasets.alert_state import AlertStates
from shipyard.datasets.monitor_results import MonitorResults
from shipyard.datasets.prediction_log import PredictionLogStore
from shipyard.datasets.predictions import PredictionStore
from shipyard.datasets.run_records import Runs
from shipyard.datasets.store import Datasets
from shipyard.statistics.drift import ColumnDrift, DriftReport
from shipyard.statistics.report import Performance
from shipyard.store import ArtifactStore, Database


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """A fresh, migrated database of each backend."""
    opened = Database.open(database_url)
    try:
        yield opened
    finally:
        opened.dispose()


def test_runs_page_filters_and_counts(database: Database, tmp_path: Path) -> None:
    runs = Runs(database)
    for number in range(30):
        run_id = f"20260302T{number:06d}-r{number:05d}"
        pipeline = "train" if number % 3 else "score"
        runs.create(run_id=run_id, pipeline=pipeline, steps=["a", "b"], params={},
                    trigger="manual", actor="t", log_root=tmp_path / run_id)  # fmt: skip
        runs.finish(run_id, "failed" if number % 5 == 0 else "succeeded")
    first, total = runs.page(limit=7)
    assert total == 30
    assert [r.id for r in first] == [f"20260302T{n:06d}-r{n:05d}" for n in range(29, 22, -1)]
    assert [s.step for s in first[0].steps] == ["a", "b"]
    later, _ = runs.page(offset=28, limit=7)
    assert [r.id[-6:] for r in later] == ["r00001", "r00000"]
    train, counted = runs.page(pipeline="train", status="failed", limit=50)
    assert counted == 4
    assert all(r.pipeline == "train" and r.status == "failed" for r in train)
    assert runs.page(pipeline="nothing") == ([], 0)
    assert runs.pipelines() == ["score", "train"]


def test_dataset_pages(database: Database, tmp_path: Path) -> None:
    datasets = Datasets(database, ArtifactStore(str(tmp_path / "artifacts")), "t")
    for name in ("b", "a", "c"):
        datasets.write(f"processed/{name}", pd.DataFrame({"x": [1]}))
    for number in range(5):
        datasets.write("raw/a", pd.DataFrame({"x": [number]}))
    newest, total = datasets.page(limit=2)
    assert total == 4
    assert [d.ref for d in newest] == ["raw/a:5", "processed/a:1"]
    rest, _ = datasets.page(offset=2, limit=10)
    assert [d.ref for d in rest] == ["processed/b:1", "processed/c:1"]
    assert datasets.page("raw")[1] == 1
    versions, count = datasets.versions_page("raw/a", offset=1, limit=2)
    assert count == 5
    assert [v.version for v in versions] == [4, 3]
    assert datasets.versions_page("raw/none") == ([], 0)


def test_jobs_page_newest_first(database: Database, tmp_path: Path) -> None:
    datasets = Datasets(database, ArtifactStore(str(tmp_path / "artifacts")), "t")
    store = PredictionStore(database, datasets)
    for number in range(4):
        store.create_job(
            id=f"job{number}", spec_hash="h", ref="churn:1", model="churn" if number else "x",
            version=1, input="csv:/data/in.csv", output="predictions/churn", engine="local",
            chunk_rows=10, key_columns=[], work_dir=str(tmp_path), created_by="t",
        )  # fmt: skip
    jobs, total = store.jobs_page(limit=2)
    assert total == 4
    assert [j.id for j in jobs] == ["job3", "job2"]
    churn, counted = store.jobs_page(model="churn", offset=2)
    assert counted == 3
    assert [j.id for j in churn] == ["job1"]


def test_the_log_newest_first_with_a_keyset(database: Database) -> None:
    log = PredictionLogStore(database)
    at = datetime(2030, 1, 1, tzinfo=UTC)
    log.append(
        [
            (("churn" if n % 2 else "other"), 1, f"r{n}", at, 2.0, "[]",
             '{"predictions": [1, 0, 1, 1, 0, 1, 1], "rows": 90}', n == 3)
            for n in range(10)
        ]
    )  # fmt: skip
    newest = log.recent(3)
    assert [e.request_id for e in newest] == ["r9", "r8", "r7"]
    assert newest[0].rows == 90
    assert newest[0].predictions == [1, 0, 1, 1, 0]
    assert newest[0].at == at
    assert newest[0].latency_ms == 2.0
    older = log.recent(3, before_id=newest[-1].id, model="churn")
    assert [e.request_id for e in older] == ["r5", "r3", "r1"]
    assert older[1].shadow


def _report(share: float, f1: float) -> object:
    drift = DriftReport(
        (ColumnDrift("tenure", "numeric", "ks", share, 0.05, share > 0.5, "raw", None),),
        share, share > 0.5, 0.5, 100, 50,
    )  # fmt: skip
    return monitoring_report(drift=drift, performance=Performance("classification", 50, {"f1": f1}))


def test_report_summaries_series_and_one_report(database: Database) -> None:
    results = MonitorResults(database)
    saved = [results.save(_report(n / 100, n / 10)) for n in range(1, 31)]  # type: ignore[arg-type]
    results.save(monitoring_report(model="other"))
    page, total = results.summaries("churn", offset=5, limit=3)
    assert total == 30
    assert [s.id for s in page] == [saved[24].id, saved[23].id, saved[22].id]
    assert page[0].drift_share == pytest.approx(0.25)
    assert page[0].rows == 50
    assert [s.model for s in results.newest_summaries()] == ["churn", "other"]
    assert results.newest_summaries()[0].id == saved[-1].id
    assert results.result(saved[3].id).report["drift_share"] == pytest.approx(0.04)
    with pytest.raises(Exception, match="no monitoring report"):
        results.result(saved[3].id, "other")
    shares = results.series("churn", "dataset", "drift_share", points=4)
    assert [p.result_id for p in shares] == [s.id for s in saved[-4:]]
    assert [p.value for p in shares] == pytest.approx([0.27, 0.28, 0.29, 0.30])
    scores = results.series("churn", "drift", "score", points=2)
    assert [(p.column, p.value) for p in scores] == [
        ("tenure", 0.29),
        ("tenure", pytest.approx(0.3)),
    ]
    assert len(results.series("churn", "performance", "f1", points=500)) == 30
    assert results.series("nobody", "dataset", "drift_share") == []
    assert results.models() == ["churn", "other"]


def test_alert_states_listed_firing_first(database: Database) -> None:
    alerts = AlertStates(database)
    alerts.claim("drift", "churn/hourly", True, 0.7)
    alerts.claim("drift", "churn_v2:3", True, 0.9)
    alerts.claim("latency", "churn:2", True, 1.0)
    alerts.claim("latency", "churn:2", False, None)
    listed = alerts.states()
    assert [(a.rule, a.subject, a.active) for a in listed][-1] == ("latency", "churn:2", False)
    assert {a.subject for a in listed if a.active} == {"churn/hourly", "churn_v2:3"}
    churn = alerts.states(model="churn")
    assert {a.subject for a in churn} == {"churn/hourly", "churn:2"}
    assert all(a.model == "churn" for a in churn)

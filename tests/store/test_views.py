"""The dashboards' read-only views (migration 0006): same columns and rows on both backends.

A real project on SQLite and on PostgreSQL gets one of everything the views show: a model
version with a business value promoted to production, logged predictions (one shadow),
ground truth and a stored monitoring report, a batch job and a scheduled pipeline run. Then
every SQL query of every generated Grafana dashboard runs, macros expanded, and returns rows.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from alembic import command
from sklearn.pipeline import Pipeline
from tests.conftest import postgres_schema
from tests.helpers import make_frame, make_settings

from shipyard import Project
from shipyard.datasets.feedback import FeedbackStore, Label
from shipyard.packaging.grafana import expand_macros, grafana_files, sql_queries
from shipyard.packaging.settings import DeploySettings
from shipyard.pipelines import load_module_pipeline
from shipyard.pipelines.runner import Runner
from shipyard.pipelines.schedule import TRIGGER
from shipyard.serving.base import Prediction
from shipyard.serving.predlog import PredictionLog
from shipyard.store.database import _alembic_config
from shipyard.value import business_value

Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]

DOCS = Path(__file__).parents[2] / "docs" / "views.md"
TINY = Path(__file__).parents[1] / "pipelines" / "pipelines_for_tests" / "tiny.py"
FEATURES = ["tenure", "charges", "plan"]
VALUE_TOML = """
[project]
name = "views"

[value]
currency = "EUR"
period = "month"
decisions_per_period = 1000
one_off_cost = 5000
running_cost_per_period = 500

[value.classification]
true_positive = 120
false_positive = -15
"""

COLUMNS = {
    "shipyard_predictions": [
        "id", "request_id", "model", "version", "scored_at", "latency_ms", "row_count", "shadow",
    ],
    "shipyard_batch_jobs": [
        "job_id", "ref", "model", "version", "engine", "status", "input", "output", "row_count",
        "rows_reused", "chunks", "chunks_reused", "chunk_rows", "dataset", "started_at",
        "finished_at", "duration_seconds", "error", "created_by",
    ],
    "shipyard_monitor_values": [
        "id", "result_id", "model", "version", "monitor", "computed_at", "window_start",
        "window_end", "window_rows", "kind", "column_name", "metric", "value",
    ],
    "shipyard_business_value": [
        "model", "version", "status", "registered_at", "registered_by", "roi", "net_per_period",
        "ebitda_low", "ebitda_mid", "ebitda_high", "gain_per_period", "value_per_decision",
        "payback_periods", "uplift_per_period", "aliases", "in_production",
    ],
    "shipyard_runs": [
        "run_id", "pipeline", "status", "triggered_by", "started_at", "finished_at",
        "duration_seconds", "steps", "failed_steps", "cached_steps", "error", "created_by",
    ],
    "shipyard_promotions": [
        "id", "decided_at", "model", "alias", "from_version", "to_version", "outcome", "forced",
        "reason", "actor",
    ],
}  # fmt: skip


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def views_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A fresh metadata database for this module: a SQLite file or a private PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('views') / 'meta.db'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture(scope="module")
def populated(
    views_url: str, tmp_path_factory: pytest.TempPathFactory, trained: Trained
) -> Iterator[Project]:
    """A project with one of everything the views show (see the module docstring)."""
    model, frame, target = trained
    root = tmp_path_factory.mktemp("populated") / "proj"
    with Project(settings=make_settings(root, views_url, VALUE_TOML)) as project:
        assert project.value is not None
        proba = model.predict_proba(frame[FEATURES])[:, 1]
        metrics = business_value(project.value, target, proba=proba, baseline=0).metrics()
        reference, _ = make_frame(1000, seed=3)
        project.registry.register(
            "churn",
            model,
            input_example=frame.head(5),
            reference=reference,
            metrics={"f1": 0.6, **metrics},
            trust=True,
        )
        project.registry.promote("churn:1", to="production", reason="first version")

        current, truth = make_frame(300, seed=4)
        labels, probabilities = model.predict(current).tolist(), model.predict_proba(current)
        log = PredictionLog(project.database)
        for start in range(0, len(current), 3):  # requests of 3 rows, as the server logs them
            part = slice(start, start + 3)
            columns = {c: current[c].to_numpy()[part] for c in FEATURES}
            answer = Prediction(labels[part], probabilities[part].tolist(), [0, 1])
            log.record("churn", 1, f"req-{start}", 0.002, columns, answer)
        log.record("churn", 1, "req-shadow", 0.004, columns, answer, shadow=True)
        log.flush()
        FeedbackStore(project.database).add(
            "churn",
            [Label(int(truth[start + r]), request_id=f"req-{start}", row=r) for start in
             range(0, 150, 3) for r in range(3)],
        )  # fmt: skip
        project.monitor("churn", window="1h")

        batch = root / "batch.parquet"
        current.to_parquet(batch)
        project.predict("churn:1", str(batch))

        (root / "pipelines").mkdir()
        shutil.copy(TINY, root / "pipelines" / "tiny.py")
        runner = Runner(project.settings, project.database, project.artifacts, project.datasets)
        runner.run(load_module_pipeline(root / "pipelines" / "tiny.py"), trigger=TRIGGER)
        yield project


def _rows(project: Project, sql: str) -> list[dict[str, Any]]:
    with project.database.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(sa.text(sql))]


def test_each_view_has_its_documented_columns(populated: Project) -> None:
    docs = DOCS.read_text(encoding="utf-8")
    with populated.database.engine.connect() as connection:
        for view, expected in COLUMNS.items():
            result = connection.execute(sa.text(f"SELECT * FROM {view}"))
            assert list(result.keys()) == expected, view
            section = docs.split(f"## `{view}`")[1].split("\n## ")[0]
            documented = re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE)
            assert documented == expected, f"docs/views.md does not match {view}"


def test_every_dashboard_query_returns_rows(populated: Project) -> None:
    files = grafana_files(DeploySettings(), "views")
    queries = sql_queries(files)
    assert len(queries) >= 15
    dialect = populated.database.backend
    for query in queries:
        assert _rows(populated, expand_macros(query, dialect)), f"no rows from:\n{query}"


def test_an_empty_time_range_is_respected(populated: Project) -> None:
    past = pd.Timestamp("2001-01-01", tz="UTC").to_pydatetime()
    query = "SELECT * FROM shipyard_predictions p WHERE $__timeFilter(p.scored_at)"
    dialect = populated.database.backend
    assert _rows(populated, expand_macros(query, dialect, past, past)) == []


def test_the_views_hold_what_was_recorded(populated: Project) -> None:
    predictions = _rows(populated, "SELECT * FROM shipyard_predictions ORDER BY id")
    assert len(predictions) == 101
    answered = [p for p in predictions if not p["shadow"]]
    assert {p["row_count"] for p in answered} == {3}
    assert answered[0]["latency_ms"] == pytest.approx(2.0)
    assert [bool(p["shadow"]) for p in predictions].count(True) == 1

    (value,) = _rows(populated, "SELECT * FROM shipyard_business_value")
    info = populated.registry.get("churn:1")
    assert (value["model"], value["version"], value["aliases"]) == ("churn", 1, "production")
    assert bool(value["in_production"]) is True
    for name in ("roi", "net_per_period", "ebitda_low", "ebitda_high", "uplift_per_period"):
        assert value[name] == pytest.approx(info.metrics[name])

    (promotion,) = _rows(populated, "SELECT * FROM shipyard_promotions")
    assert promotion["model"] == "churn"
    assert (promotion["alias"], promotion["from_version"], promotion["to_version"]) == (
        "production",
        None,
        1,
    )
    assert (promotion["outcome"], bool(promotion["forced"])) == ("promoted", False)
    assert (promotion["reason"], promotion["actor"]) == ("first version", "tester")

    (run,) = _rows(populated, "SELECT * FROM shipyard_runs")
    assert (run["pipeline"], run["status"], run["triggered_by"]) == ("tiny", "succeeded", TRIGGER)
    assert (run["steps"], run["failed_steps"], run["cached_steps"]) == (2, 0, 0)
    assert 0 < run["duration_seconds"] < 600

    (job,) = _rows(populated, "SELECT * FROM shipyard_batch_jobs")
    assert (job["model"], job["version"], job["status"], job["row_count"]) == (
        "churn",
        1,
        "succeeded",
        300,
    )
    assert job["dataset"].startswith("predictions/")
    assert job["duration_seconds"] >= 0

    values = _rows(populated, "SELECT * FROM shipyard_monitor_values")
    kinds = {(v["kind"], v["metric"]) for v in values}
    assert {("dataset", "drift_share"), ("drift", "score"), ("performance", "f1")} <= kinds
    assert ("performance", "value:net_per_period") in kinds
    assert {(v["model"], v["version"], v["window_rows"]) for v in values} == {("churn", 1, 300)}
    assert {v["column_name"] for v in values if v["kind"] == "drift"} == set(FEATURES)


def test_the_views_go_with_a_downgrade_and_come_back(populated: Project) -> None:
    engine = populated.database.engine
    with engine.begin() as connection:
        command.downgrade(_alembic_config(connection), "0005_monitoring")
    try:
        assert not set(COLUMNS) & set(sa.inspect(engine).get_view_names())
        assert "prediction_log" in sa.inspect(engine).get_table_names()
    finally:
        populated.database.upgrade()
    assert set(COLUMNS) <= set(sa.inspect(engine).get_view_names())

"""Monitoring runs on real windows: batch files and the prediction log, stored as time series."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from tests.monitoring.conftest import Trained, checked, drifted_rows, reference_rows

from shipyard import Project
from shipyard.core.exceptions import InvalidArgumentError, NotFoundError, SchemaError
from shipyard.datasets.feedback import FeedbackStore, Label
from shipyard.serving.base import Prediction
from shipyard.serving.predlog import PredictionLog
from shipyard.statistics.drift import compare
from shipyard.store.tables import MonitorValue, ReferenceProfile

FEATURES = ["tenure", "charges", "plan"]


def write(frame: pd.DataFrame, path: Path) -> str:
    frame.to_parquet(path)
    return str(path)


def test_a_drifted_batch_is_reported_column_by_column(monitored: Project, tmp_path: Path) -> None:
    frame, target = drifted_rows()
    current = write(frame.assign(churned=target), tmp_path / "next.parquet")
    outcome = monitored.monitor("churn", current=current, target="churned")
    report = checked(monitored, outcome)
    assert report["model"] == "churn"
    assert report["version"] == 1
    assert report["rows"] == {"reference": 3000, "current": 2000}
    by_column = {c["column"]: c for c in report["columns"]}
    assert set(by_column) == set(FEATURES)
    assert by_column["tenure"]["drifted"]
    assert by_column["plan"]["drifted"]
    assert not by_column["charges"]["drifted"]
    assert by_column["tenure"]["method"] == "wasserstein"
    assert by_column["plan"]["method"] == "jensenshannon"
    assert by_column["plan"]["source"] == "profile"
    assert report["dataset_drift"] is True  # 2 of 3 columns
    assert report["drift_share"] == pytest.approx(2 / 3)
    outputs = {c["column"] for c in report["prediction_drift"]["columns"]}
    assert outputs == {"prediction", "proba_0", "proba_1"}  # scored, since the file had none
    performance = report["performance"]
    assert performance["rows"] == 2000
    assert performance["task"] == "classification"
    assert set(performance["metrics"]) >= {"accuracy", "f1", "roc_auc", "log_loss"}
    assert performance["comparison"]["f1"]["baseline"] == 0.6
    assert outcome.result_id is not None
    json.dumps(report)  # the --json output is plain JSON


def test_profile_scores_are_within_their_bound_of_the_raw_scores(
    monitored: Project, tmp_path: Path
) -> None:
    reference, _ = reference_rows()
    current, _ = drifted_rows()
    from_profile = monitored.monitor("churn", current=write(current, tmp_path / "c.parquet"))
    raw = compare(reference, current[FEATURES], columns=FEATURES)
    for entry, exact in zip(from_profile.report["columns"], raw.columns, strict=True):
        assert entry["column"] == exact.column
        assert abs(entry["score"] - exact.score) <= (entry["bound"] or 0.0) + 1e-12


def test_a_raw_reference_gives_the_raw_statistics(monitored: Project, tmp_path: Path) -> None:
    reference, _ = reference_rows()
    current, _ = drifted_rows()
    outcome = monitored.monitor(
        "churn",
        reference=write(reference, tmp_path / "ref.parquet"),
        current=write(current, tmp_path / "cur.parquet"),
    )
    raw = compare(reference, current[FEATURES], columns=FEATURES)
    scores = {c["column"]: c["score"] for c in outcome.report["columns"]}
    assert scores == {c.column: c.score for c in raw.columns}
    assert all(c["source"] == "raw" for c in outcome.report["columns"])


def test_the_same_distribution_does_not_drift(monitored: Project, tmp_path: Path) -> None:
    same, _ = reference_rows(2000, seed=99)
    report = monitored.monitor("churn", current=write(same, tmp_path / "same.parquet")).report
    assert report["dataset_drift"] is False
    assert report["drift_share"] == 0.0
    assert report["prediction_drift"]["dataset_drift"] is False
    assert report["performance"] is None  # no ground truth


def test_quality_problems_are_counted(monitored: Project, tmp_path: Path) -> None:
    frame, _ = reference_rows(500, seed=5)
    frame.loc[:9, "plan"] = "platinum"  # never seen
    frame.loc[10:19, "tenure"] = 10_000  # far outside the example's range
    frame = pd.concat([frame, frame.iloc[100:103]], ignore_index=True)
    report = monitored.monitor("churn", current=write(frame, tmp_path / "q.parquet")).report
    quality = report["quality"]
    columns = {c["column"]: c for c in quality["columns"]}
    assert columns["plan"]["unseen"] == 10
    assert columns["plan"]["unseen_examples"] == ["platinum"]
    assert columns["tenure"]["out_of_range"] >= 10
    assert quality["duplicates"] >= 3
    assert quality["failing_rows"] >= 20


def test_results_are_kept_as_a_time_series(monitored: Project, tmp_path: Path) -> None:
    same, _ = reference_rows(1000, seed=7)
    drifted, _ = drifted_rows(1000)
    monitored.monitor("churn", current=write(same, tmp_path / "a.parquet"))
    monitored.monitor("churn", current=write(drifted, tmp_path / "b.parquet"))
    from shipyard.datasets.monitor_results import MonitorResults

    history = MonitorResults(monitored.database).history("churn")
    assert [r.report["dataset_drift"] for r in history] == [False, True]
    query = sa.select(MonitorValue.value).where(
        MonitorValue.model == "churn",
        MonitorValue.kind == "drift",
        MonitorValue.column == "tenure",
        MonitorValue.metric == "score",
    )
    with monitored.database.engine.connect() as connection:
        scores = [row[0] for row in connection.execute(query.order_by(MonitorValue.id))]
    assert len(scores) == 2
    assert scores[1] > scores[0]


def log_requests(
    project: Project, frame: pd.DataFrame, trained: Trained, rows_each: int
) -> list[str]:
    """Log ``frame`` as requests of ``rows_each`` rows through the server's prediction log."""
    model = trained[0]
    log = PredictionLog(project.database)
    ids = []
    for start in range(0, len(frame), rows_each):
        rows = frame.iloc[start : start + rows_each]
        columns = {c: rows[c].to_numpy() for c in FEATURES}
        proba = model.predict_proba(rows[FEATURES])
        prediction = Prediction(model.predict(rows[FEATURES]).tolist(), proba.tolist(), [0, 1])
        request_id = f"req-{start}"
        log.record("churn", 1, request_id, 0.001, columns, prediction)
        ids.append(request_id)
    log.flush()
    return ids


def test_a_window_of_the_prediction_log_with_feedback(
    monitored_any: Project, trained: Trained
) -> None:
    frame, target = drifted_rows(600)
    ids = log_requests(monitored_any, frame, trained, rows_each=3)
    FeedbackStore(monitored_any.database).add(
        "churn",
        [
            Label(int(target[i * 3 + r]), request_id=rid, row=r)
            for i, rid in enumerate(ids)
            for r in range(3)
        ][:300],
    )
    report = checked(monitored_any, monitored_any.monitor("churn", window="1h"))
    assert report["rows"]["current"] == 600
    assert "prediction log of churn:1" in report["current"]
    assert report["dataset_drift"] is True
    performance = report["performance"]
    assert performance["rows"] == 300
    model = trained[0]
    expected = (model.predict(frame.iloc[:300][FEATURES]) == target[:300]).mean()
    assert performance["metrics"]["accuracy"] == pytest.approx(expected)
    assert report["window"]["start"] is not None


def test_a_window_outside_the_log_is_refused(monitored: Project, trained: Trained) -> None:
    frame, _ = drifted_rows(30)
    log_requests(monitored, frame, trained, rows_each=10)
    past = datetime.now(UTC) - timedelta(days=3)
    with pytest.raises(NotFoundError, match="no rows to monitor in prediction log of churn:1"):
        monitored.monitor("churn", window="1d", end=past)


def test_bad_requests_say_what_to_do(monitored: Project, tmp_path: Path, trained: Trained) -> None:
    frame, _ = drifted_rows(50)
    path = write(frame, tmp_path / "x.parquet")
    with pytest.raises(InvalidArgumentError, match="give one of --window"):
        monitored.monitor("churn", current=path, window="1d")
    with pytest.raises(SchemaError, match="--target 'nope' is not a column"):
        monitored.monitor("churn", current=path, target="nope")
    with pytest.raises(InvalidArgumentError, match="is not a window"):
        monitored.monitor("churn", window="soon")
    model, example, _ = trained
    monitored.registry.register("bare", model, input_example=example.head(5), trust=True)
    monitored.registry.register("noprofile", model, trust=True)
    with pytest.raises(SchemaError, match="has no signature, so its inputs cannot be"):
        monitored.monitor("noprofile", current=path)
    with monitored.database.session() as session:  # a version whose profile was lost
        session.execute(sa.delete(ReferenceProfile).where(ReferenceProfile.model == "bare"))
    with pytest.raises(
        NotFoundError,
        match="bare:1 has no reference profile; run 'shipyard profile bare:1 --data FILE'",
    ):
        monitored.monitor("bare", current=path)


def test_a_profile_on_demand_becomes_the_reference(monitored: Project, tmp_path: Path) -> None:
    drifted, _ = drifted_rows(1500)
    info, built, source = monitored.profile("churn", write(drifted, tmp_path / "new.parquet"))
    assert info.version == 1
    assert built.rows == 1500
    assert "on demand" in source
    assert {"tenure", "charges", "plan", "prediction", "proba_1"} <= set(built.columns)
    again, _ = drifted_rows(1000, seed=13)
    report = monitored.monitor("churn", current=write(again, tmp_path / "again.parquet")).report
    assert report["dataset_drift"] is False  # next month looks like the new reference
    assert np.isfinite(report["drift_share"])


def test_a_batch_job_is_monitored_with_its_input_and_feedback_by_key(
    monitored_any: Project, tmp_path: Path, trained: Trained
) -> None:
    frame, target = drifted_rows(800)
    frame.insert(0, "customer_id", [f"c{i:04d}" for i in range(len(frame))])
    path = write(frame, tmp_path / "month.parquet")
    job = monitored_any.predict("churn", path, keys=("customer_id",), chunk_rows=300).job
    FeedbackStore(monitored_any.database).add(
        "churn", [Label(int(target[i]), key=f"c{i:04d}") for i in range(0, 800, 2)]
    )
    report = checked(monitored_any, monitored_any.monitor("churn", batch="latest"))
    assert report["current"].startswith(f"batch job {job.id} of churn:1 (800 rows")
    assert report["dataset_drift"] is True
    assert {c["column"] for c in report["prediction_drift"]["columns"]} == {
        "prediction",
        "proba_0",
        "proba_1",
    }
    assert "customer_id" not in report["quality"]["extra_columns"]
    performance = report["performance"]
    assert performance["rows"] == 400
    model = trained[0]
    expected = (model.predict(frame[FEATURES].iloc[::2]) == target[::2]).mean()
    assert performance["metrics"]["accuracy"] == pytest.approx(expected)
    by_id = checked(monitored_any, monitored_any.monitor("churn", batch=job.id, save=False))
    assert by_id["columns"] == report["columns"]
    with pytest.raises(NotFoundError, match="no batch job"):
        monitored_any.predictions.job("nope")


VALUE_TOML = """
[project]
name = "valued"

[value]
currency = "EUR"
decisions_per_period = 20000
running_cost_per_period = 2500
bootstrap = 200

[value.classification]
true_positive = 120
false_positive = -15
threshold = 0.5
"""


def test_the_business_value_of_a_labelled_window(tmp_path: Path, trained: Trained) -> None:
    from tests.helpers import make_settings
    from tests.monitoring.conftest import register_with_reference

    from shipyard.value import business_value

    root = tmp_path / "valued"
    settings = make_settings(root, f"sqlite:///{root / 'meta.db'}", VALUE_TOML)
    with Project(settings=settings) as project:
        register_with_reference(project, trained)
        frame, target = drifted_rows(1000)
        current = write(frame.assign(churned=target), tmp_path / "labelled.parquet")
        outcome = project.monitor("churn", current=current, target="churned")
        performance = checked(project, outcome)["performance"]
        assert project.value is not None
        proba = trained[0].predict_proba(frame[FEATURES])[:, 1]
        expected = business_value(project.value, target, proba=proba).metrics()
        assert performance["value"] == pytest.approx(expected)
        assert performance["value"]["net_per_period"] == pytest.approx(expected["net_per_period"])


def test_retention_removes_old_reports_and_labels(monitored: Project, tmp_path: Path) -> None:
    from shipyard.datasets.monitor_results import MonitorResults

    same, _ = reference_rows(500, seed=3)
    monitored.monitor("churn", current=write(same, tmp_path / "w.parquet"))
    FeedbackStore(monitored.database).add("churn", [Label(1, key="c1"), Label(0, key="c2")])
    kept = monitored.prune(datetime.now(UTC) - timedelta(days=1))
    assert (kept["feedback"], kept["monitoring"]) == (0, 0)
    removed = monitored.prune(datetime.now(UTC) + timedelta(seconds=1))
    assert (removed["feedback"], removed["monitoring"]) == (2, 1)
    assert MonitorResults(monitored.database).history("churn") == []
    with monitored.database.engine.connect() as connection:
        assert (
            connection.execute(sa.select(sa.func.count()).select_from(MonitorValue)).scalar() == 0
        )


def test_a_regression_model_gets_regression_metrics(monitored: Project, tmp_path: Path) -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame, _ = reference_rows(2000, seed=31)
    price = 3.0 * frame["tenure"] + frame["charges"].fillna(70) + (frame["plan"] == "pro") * 40
    model = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), ["plan"]),
            (SimpleImputer(), ["charges"]),
            remainder="passthrough",
        ),
        LinearRegression(),
    ).fit(frame, price)
    monitored.registry.register(
        "price", model, input_example=frame.head(5), reference=frame, metrics={"mae": 1.0},
        trust=True,
    )  # fmt: skip
    current, _ = drifted_rows(1000)
    truth = (
        3.0 * current["tenure"] + current["charges"].fillna(70) + (current["plan"] == "pro") * 40
    )
    path = write(current.assign(price=truth), tmp_path / "prices.parquet")
    report = checked(monitored, monitored.monitor("price", current=path, target="price"))
    performance = report["performance"]
    assert performance["task"] == "regression"
    assert set(performance["metrics"]) == {"mae", "rmse", "mape", "r2"}
    expected = float(np.abs(model.predict(current[FEATURES]) - truth).mean())
    assert performance["metrics"]["mae"] == pytest.approx(expected)
    assert performance["comparison"]["mae"]["baseline"] == 1.0
    outputs = {c["column"]: c for c in report["prediction_drift"]["columns"]}
    assert set(outputs) == {"prediction"}
    assert outputs["prediction"]["kind"] == "numeric"

"""Windows and models at the edges: what a monitor meets in production, and must not crash on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import RidgeClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from tests.helpers import make_settings
from tests.monitoring.conftest import Receiver, Trained, checked, drifted_rows, reference_rows
from tests.monitoring.test_run import log_requests, write

from shipyard import Project
from shipyard.core.exceptions import ConfigError, SchemaError
from shipyard.datasets.feedback import FeedbackStore, Label


def encoder() -> Any:
    return make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        (SimpleImputer(), ["charges"]),
        remainder="passthrough",
    )


def test_a_classifier_without_probabilities(monitored: Project, tmp_path: Path) -> None:
    frame, target = reference_rows(1500, seed=41)
    model = make_pipeline(encoder(), RidgeClassifier()).fit(frame, target)
    monitored.registry.register("ridge", model, input_example=frame, reference=frame, trust=True)
    current, truth = drifted_rows(800)
    report = checked(
        monitored,
        monitored.monitor(
            "ridge", current=write(current.assign(y=truth), tmp_path / "r.parquet"), target="y"
        ),
    )
    [output] = report["prediction_drift"]["columns"]
    assert (output["column"], output["kind"]) == ("prediction", "categorical")
    metrics = report["performance"]["metrics"]
    assert metrics["accuracy"] == pytest.approx((model.predict(current) == truth).mean())
    assert "roc_auc" not in metrics  # no probabilities


def test_a_feature_with_no_value_in_the_window_is_noted_not_fatal(
    monitored: Project, tmp_path: Path
) -> None:
    frame, _ = reference_rows(300, seed=42)
    frame["charges"] = None  # clients stopped sending it
    report = checked(
        monitored, monitored.monitor("churn", current=write(frame, tmp_path / "n.parquet"))
    )
    assert [c["column"] for c in report["columns"]] == ["tenure", "plan"]
    assert any(n.startswith("charges: no value in the current rows") for n in report["notes"])
    charges = next(c for c in report["quality"]["columns"] if c["column"] == "charges")
    assert charges["missing_share"] == 1.0


def test_from_the_log_a_feature_sent_as_null(monitored: Project, trained: Trained) -> None:
    frame, _ = drifted_rows(60)
    frame["charges"] = np.nan
    log_requests(monitored, frame, trained, rows_each=6)
    report = monitored.monitor("churn", window="1h").report
    assert {c["column"] for c in report["columns"]} == {"tenure", "plan"}
    assert report["rows"]["current"] == 60


def test_labels_that_are_not_the_models_classes_are_named(
    monitored: Project, tmp_path: Path
) -> None:
    frame, target = drifted_rows(200)
    labels = np.where(target == 1, "yes", "no")
    path = write(frame.assign(churned=labels), tmp_path / "yesno.parquet")
    with pytest.raises(SchemaError, match=r"200 labels of .* are not classes of the model \('no'"):
        monitored.monitor("churn", current=path, target="churned")
    as_text = write(frame.assign(churned=target.astype(str)), tmp_path / "text.parquet")
    report = monitored.monitor("churn", current=as_text, target="churned").report
    assert report["performance"]["rows"] == 200  # "1" and "0" are the classes 1 and 0


def test_string_classes_get_their_business_value(tmp_path: Path) -> None:
    toml = (
        '[project]\nname = "v"\n[value]\ncurrency = "EUR"\ndecisions_per_period = 1000\n'
        "[value.classification]\ntrue_positive = 100\nfalse_positive = -10\n"
    )
    root = tmp_path / "v"
    settings = make_settings(root, f"sqlite:///{root / 'meta.db'}", toml)
    frame, target = reference_rows(1500, seed=43)
    words = np.where(target == 1, "yes", "no")
    model = make_pipeline(encoder(), HistGradientBoostingClassifier(max_iter=20)).fit(frame, words)
    with Project(settings=settings) as project:
        project.registry.register("words", model, input_example=frame, trust=True)
        current, truth = drifted_rows(500)
        path = write(current.assign(y=np.where(truth == 1, "yes", "no")), tmp_path / "w.parquet")
        outcome = project.monitor("words", current=path, target="y")
        value = checked(project, outcome)["performance"]["value"]
    assert "error" not in value
    assert set(value) >= {"net_per_period", "roi"}


def test_a_reused_request_id_is_counted_once(monitored: Project, trained: Trained) -> None:
    frame, target = drifted_rows(20)
    log_requests(monitored, frame, trained, rows_each=1)
    log_requests(monitored, frame, trained, rows_each=1)  # every request retried
    FeedbackStore(monitored.database).add(
        "churn", [Label(int(target[i]), request_id=f"req-{i}") for i in range(20)]
    )
    report = monitored.monitor("churn", window="1h").report
    assert report["rows"]["current"] == 40
    assert report["performance"]["rows"] == 20


def test_the_reference_rows_themselves_do_not_fail_quality(
    monitored: Project, tmp_path: Path
) -> None:
    # churn:1 was registered with a 5-row example but 3,000 reference rows: the range a
    # window is held to is the reference's
    reference, _ = reference_rows()
    report = monitored.monitor("churn", current=write(reference, tmp_path / "ref.parquet")).report
    assert report["quality"]["failing_rows"] == 0
    assert report["dataset_drift"] is False


def test_a_file_without_the_models_inputs_says_what_to_do(
    monitored: Project, tmp_path: Path
) -> None:
    scored = pd.DataFrame({"customer_id": ["a", "b"], "prediction": [0, 1], "label": [1, 1]})
    with pytest.raises(SchemaError, match=r"none of the model's input columns .* pass --batch JOB"):
        monitored.monitor("churn", current=write(scored, tmp_path / "s.parquet"))
    frame, target = drifted_rows(100)
    labelled = frame.assign(label=target, customer_id=[f"c{i}" for i in range(100)])
    FeedbackStore(monitored.database).add("churn", [Label(1, key="c1"), Label(0, key="c2")])
    report = monitored.monitor(
        "churn", current=write(labelled, tmp_path / "l.parquet"), key="customer_id"
    ).report  # a user column named "label" does not clash with the labels
    assert report["performance"]["rows"] == 2


def alerting(tmp_path: Path, trained: Trained, hook: str, rule: str = "dataset_drift") -> Project:
    toml = f'[monitoring]\nwebhook = "{hook}"\n[[monitoring.alerts]]\nname = "drift"\n'
    toml += f'when = "{rule}"\n'
    root = tmp_path / "alerts"
    project = Project(settings=make_settings(root, f"sqlite:///{root / 'meta.db'}", toml))
    from tests.monitoring.conftest import register_with_reference

    register_with_reference(project, trained)
    register_with_reference(project, trained)  # churn:2, the same model
    return project


def test_a_report_that_is_not_stored_sends_nothing(
    tmp_path: Path, trained: Trained, receiver: Receiver
) -> None:
    path = write(drifted_rows(500)[0], tmp_path / "d.parquet")
    with alerting(tmp_path, trained, receiver.url) as project:
        dry = checked(project, project.monitor("churn:1", current=path, save=False))
        assert dry["alerts"][0]["state"] == "fired"
        assert "not sent" in dry["alerts"][0]["message"]
        assert receiver.bodies == []
        stored = checked(project, project.monitor("churn:1", current=path))
        assert stored["alerts"][0]["state"] == "fired"
        assert len(receiver.bodies) == 1


def test_two_versions_keep_their_own_alerts(
    tmp_path: Path, trained: Trained, receiver: Receiver
) -> None:
    drifted = write(drifted_rows(500)[0], tmp_path / "d.parquet")
    clean = write(reference_rows(500, seed=44)[0], tmp_path / "c.parquet")
    with alerting(tmp_path, trained, receiver.url) as project:
        for _ in range(3):
            project.monitor("churn:1", current=drifted)
            project.monitor("churn:2", current=clean)
        assert [b["text"] for b in receiver.bodies] == [
            "[shipyard] churn:1: drift — dataset_drift (1)"
        ]
        assert receiver.bodies[0]["shipyard"]["subject"] == "churn:1"


@pytest.mark.parametrize(
    ("rule", "named"),
    [
        ("psi(tenur) > 0.25", "column 'tenur'"),
        ("f1_score < 0.5", "metric 'f1_score'"),
        ("value(profit) < 0", "business value 'profit'"),
    ],
)
def test_a_rule_naming_what_the_model_lacks_is_refused(
    tmp_path: Path, trained: Trained, rule: str, named: str
) -> None:
    path = write(reference_rows(200, seed=45)[0], tmp_path / "x.parquet")
    project = alerting(tmp_path, trained, "http://127.0.0.1:9/", rule)
    with project, pytest.raises(ConfigError, match=f"names the {named}, which this model"):
        project.monitor("churn:1", current=path)

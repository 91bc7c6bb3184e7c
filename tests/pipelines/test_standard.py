"""The standard training road: its configuration, each step on churn data, and a whole run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shipyard import ConfigError, DataQualityError, Project, Settings
from shipyard.demo.churn import make_churn
from shipyard.pipelines import standard_steps as steps
from shipyard.pipelines import standard_training as training
from shipyard.pipelines.plan import resolve_params
from shipyard.pipelines.runner import Runner
from shipyard.pipelines.standard import build_standard, parse_standard

SOURCES = {"customers": {"kind": "csv", "path": "data/customers.csv"}}
TRAIN = {
    "kind": "standard",
    "source": "customers",
    "target": "churned",
    "id_columns": ["customer_id"],
    "model": "logistic_regression",
    "register_as": "churn",
    "promote_to": "prototype",
    "validate": {"ranges": {"tenure_months": [0, 120]}, "min_rows": 100},
}
VALUE = {
    "currency": "EUR",
    "decisions_per_period": 20000,
    "one_off_cost": 40000,
    "running_cost_per_period": 2500,
    "classification": {"true_positive": 120, "false_positive": -15},
}
CHECKS = {"target": "churned", "id_columns": ["customer_id"], "min_rows": 100}
PROJECT_TOML = """
[store]
database = "{database_url}"

[sources.customers]
kind = "csv"
path = "data/customers.csv"

[pipelines.train]
kind = "standard"
source = "customers"
target = "churned"
id_columns = ["customer_id"]
model = "logistic_regression"
register_as = "churn"
promote_to = "prototype"

[pipelines.train.validate]
ranges = {{ tenure_months = [0, 120] }}

[value]
currency = "EUR"
decisions_per_period = 20000
one_off_cost = 40000
running_cost_per_period = 2500

[value.classification]
true_positive = 120
false_positive = -15

[gates.prototype]
rules = ["roc_auc >= 0.70", "roi >= 1.5"]

[gates.production]
rules = ["roc_auc >= 0.99"]
"""


@pytest.fixture(autouse=True)
def _no_store_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    # The steps read settings as an entry point does: keep the developer's variables out.
    for name in ("SHIPYARD_DATABASE_URL", "SHIPYARD_ARTIFACTS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def churn() -> pd.DataFrame:
    return make_churn(1200, seed=3)


@pytest.fixture(scope="module")
def split(churn: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    report = steps.validate(churn, **CHECKS)
    return training.treat(churn, report, target="churned", id_columns=["customer_id"], seed=0)


@pytest.fixture
def project(tmp_path: Path, database_url: str) -> Iterator[Project]:
    """A project with the churn CSV, the standard road and gates, on each backend."""
    root = tmp_path / "proj"
    (root / "data").mkdir(parents=True)
    make_churn(1200, seed=3).to_csv(root / "data" / "customers.csv", index=False)
    (root / "shipyard.toml").write_text(PROJECT_TOML.format(database_url=database_url))
    with Project(root) as opened:
        yield opened


def settings_with(tmp_path: Path, value: Any = None, **changes: Any) -> Settings:
    table = {k: v for k, v in {**TRAIN, **changes}.items() if v is not None}
    return Settings.model_validate(
        {"root": tmp_path, "sources": SOURCES, "pipelines": {"train": table}, "value": value}
    )


# -- configuration ------------------------------------------------------------------------


def test_build_standard_makes_the_seven_steps_from_the_table(tmp_path: Path) -> None:
    pipeline = build_standard(settings_with(tmp_path, value=VALUE), "train")
    assert pipeline.order() == [
        "extract", "validate", "treat", "train", "evaluate", "register", "gate"
    ]  # fmt: skip
    assert pipeline.producers == {
        "raw/customers": "extract",
        "processed/train_quality": "validate",
        "processed/train_train": "treat",
        "processed/train_test": "treat",
        "artifacts/train_model": "train",
        "artifacts/train_evaluation": "evaluate",
        "artifacts/train_version": "register",
        "artifacts/train_gate": "gate",
    }
    params = resolve_params(pipeline, {"train": {"model_params": {"C": 0.5}}})
    assert params["train"]["model"] == "logistic_regression"
    assert params["train"]["model_params"] == {"C": 0.5}
    assert params["validate"]["ranges"] == {"tenure_months": [0.0, 120.0]}
    assert params["evaluate"]["value"] == VALUE
    assert params["register"]["run_id"] == ""  # the runner fills it
    assert params["gate"]["promote_to"] == "prototype"
    assert [n for n, s in pipeline.steps.items() if not s.cache] == ["extract", "gate"]


def test_defaults_name_the_model_after_the_pipeline(tmp_path: Path) -> None:
    config = parse_standard(settings_with(tmp_path, model=None, register_as=None), "train")
    assert config.model == "hist_gradient_boosting"
    pipeline = build_standard(settings_with(tmp_path, register_as=None), "train")
    assert pipeline.steps["register"].params["register_as"] == "train"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"modle": "x"}, r"pipelines\.train\.modle: unknown field"),
        ({"task": "clustering"}, r"pipelines\.train\.task: .*'classification' or 'regression'"),
        ({"target": None}, r"pipelines\.train\.target: Field required"),
        ({"test_size": 1.5}, r"pipelines\.train\.test_size: .*less than 1"),
        ({"source": "nope"}, r"'nope' is not a \[sources\.\*\] table; the sources are customers"),
        ({"model": "linear_regression"}, r"not a classification model; choose one of hist_grad"),
        ({"model_params": {"max_depthh": 3}}, r"model_params \['max_depthh'\] do not fit Logistic"),
        ({"id_columns": ["churned"]}, r"id_columns lists the target 'churned'"),
        ({"features": ["age", "customer_id"]}, r"customer_id is both an id column and a feature"),
        ({"validate": {"max_null_fraction": 2}}, r"validate\.max_null_fraction: .*less than or"),
        ({"validate": {"ranges": {"age": [90, 18]}}}, r"low <= high, got age = \[90, 18\]"),
        ({"promote_to": "9"}, r"'9' is not a valid alias"),
        ({"register_as": "a b"}, r"'a b' is not a valid model name"),
    ],
)  # fmt: skip
def test_invalid_tables_name_the_table_and_field(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        build_standard(settings_with(tmp_path, **changes), "train")
    assert "[pipelines.train]" in str(caught.value)


def test_a_value_model_must_match_the_task(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, value=VALUE, task="regression", model=None)
    with pytest.raises(ConfigError, match="task is 'regression' but \\[value\\] declares a class"):
        build_standard(settings, "train")


def test_an_unknown_pipeline_lists_the_standard_ones(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"no \[pipelines\.other\] .* standard pipelines are train"
    ):
        build_standard(settings_with(tmp_path), "other")


# -- steps, called directly ----------------------------------------------------------------


def test_validate_passes_clean_data_with_one_row_per_check(churn: pd.DataFrame) -> None:
    report = steps.validate(churn, ranges={"tenure_months": [0, 120]}, **CHECKS)
    assert list(report.columns) == steps.REPORT_COLUMNS
    assert report["passed"].all()
    assert set(report["check"]) == {
        "required_column", "target", "nulls", "range", "duplicates", "min_rows"
    }  # fmt: skip
    nulls = report[report["check"] == "nulls"].set_index("column")["value"]
    assert 0 < nulls["total_charges"] < 0.1
    assert "churned" not in nulls.index  # the target check covers missing labels


def test_validate_lists_every_failed_check(churn: pd.DataFrame) -> None:
    broken = churn.drop(columns=["region"]).copy()
    broken.loc[:599, "age"] = np.nan  # half missing
    broken.loc[:4, "tenure_months"] = -5
    broken.loc[10:40, "customer_id"] = "C-dup"
    with pytest.raises(DataQualityError) as caught:
        steps.validate(
            broken,
            features=["age", "tenure_months", "region", "contract"],
            ranges={"tenure_months": [0, 120]},
            **CHECKS,
        )
    error = caught.value
    assert error.status_code == 422
    failed = {(f["check"], f["column"]) for f in error.failures}
    assert failed == {
        ("required_column", "region"),
        ("nulls", "age"),
        ("range", "tenure_months"),
        ("duplicates", "customer_id"),
    }
    for text in ("column 'region' is missing", "50.0% missing", "5 rows outside", "[0, 120]"):
        assert text in error.message


@pytest.mark.parametrize(
    ("labels", "task", "message"),
    [
        ([1] * 200, "classification", "two classes or more, got 1"),
        ([0] * 199 + [1], "classification", "class 1 has one row"),
        ([0.5] * 199 + [None], "regression", "1 rows have no target value"),
        ([0] * 199 + [None], "classification", "1 rows have no target value"),
        (["high"] * 200, "regression", "must be numeric"),
    ],
)
def test_validate_checks_the_target_suits_the_task(
    labels: list[Any], task: str, message: str
) -> None:
    frame = pd.DataFrame({"x": range(200), "y": labels})
    with pytest.raises(DataQualityError, match=message):
        steps.validate(frame, target="y", task=task)


def test_validate_needs_enough_rows() -> None:
    frame = pd.DataFrame({"x": range(20), "y": [0, 1] * 10})
    with pytest.raises(DataQualityError, match=r"min_rows: 20 rows \(limit >= 100\)"):
        steps.validate(frame, target="y")


def test_treat_splits_stratified_without_the_ids(
    churn: pd.DataFrame, split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    train, test = split
    assert (len(train), len(test)) == (900, 300)
    assert "customer_id" not in train.columns
    assert list(train.columns)[-1] == "churned"
    assert abs(train["churned"].mean() - test["churned"].mean()) < 0.01
    again = training.treat(churn, steps.validate(churn, **CHECKS), target="churned",
                        id_columns=["customer_id"], seed=0)  # fmt: skip
    pd.testing.assert_frame_equal(again[0], train)


def test_treat_refuses_data_that_failed_its_checks(churn: pd.DataFrame) -> None:
    report = steps.validate(churn, **CHECKS)
    report.loc[0, "passed"] = False
    with pytest.raises(DataQualityError, match="treat refuses data"):
        training.treat(churn, report, target="churned")


def test_treat_refuses_features_that_are_not_numbers_or_text(churn: pd.DataFrame) -> None:
    dated = churn.assign(signed_up=pd.Timestamp("2024-01-01"))
    with pytest.raises(ConfigError, match=r"signed_up \(datetime64"):
        training.treat(dated, steps.validate(churn, **CHECKS), target="churned")


@pytest.mark.parametrize(
    "model", ["hist_gradient_boosting", "logistic_regression", "random_forest"]
)
def test_train_and_evaluate_give_sensible_metrics(
    split: tuple[pd.DataFrame, pd.DataFrame], model: str
) -> None:
    train, test = split
    params = {"max_iter": 50} if model == "hist_gradient_boosting" else {}
    fitted = training.train(train, target="churned", model=model, model_params=params)
    evaluation = training.evaluate(fitted, test, target="churned")
    metrics = evaluation["metrics"]
    assert set(metrics) == {"roc_auc", "accuracy", "f1", "precision", "recall", "log_loss"}
    assert metrics["roc_auc"] > 0.7
    assert 0.6 < metrics["accuracy"] <= 1.0
    assert evaluation["value_summary"] is None
    assert evaluation["test_rows"] == 300


def test_evaluate_adds_business_value_when_configured(
    split: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, test = split
    fitted = training.train(train, target="churned", model="logistic_regression")
    evaluation = training.evaluate(fitted, test, target="churned", value=VALUE)
    metrics = evaluation["metrics"]
    assert {"roi", "net_per_period", "payback_periods", "uplift_per_period"} <= set(metrics)
    assert metrics["roi"] > 1.5
    assert evaluation["value_summary"].startswith("EBITDA +")


def test_regression_road(churn: pd.DataFrame) -> None:
    frame = churn.drop(columns=["total_charges", "churned"])
    report = steps.validate(
        frame, target="monthly_charges", task="regression", id_columns=["customer_id"]
    )
    train, test = training.treat(frame, report, target="monthly_charges", task="regression",
                              id_columns=["customer_id"])  # fmt: skip
    fitted = training.train(
        train, target="monthly_charges", task="regression", model="linear_regression"
    )
    metrics = training.evaluate(fitted, test, target="monthly_charges", task="regression")[
        "metrics"
    ]
    assert set(metrics) == {"rmse", "mae", "r2"}
    assert metrics["r2"] > 0.7
    assert metrics["mae"] < metrics["rmse"] < 15


def test_unknown_model_params_are_refused_with_the_estimators_parameters() -> None:
    with pytest.raises(ConfigError, match=r"its parameters are .*learning_rate"):
        training.make_estimator("classification", "hist_gradient_boosting", {"eta": 0.1})


# -- register and gate against a real project ----------------------------------------------


def test_register_then_gate_promotes_and_records_refusals(
    project: Project, split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    train, test = split
    root = str(project.root)
    fitted = training.train(train, target="churned", model="logistic_regression")
    evaluation = training.evaluate(fitted, test, target="churned", value=VALUE)
    ref = steps.register(fitted, evaluation, train, test, project_root=root, register_as="churn",
                         target="churned", pipeline="train", training={"model": "logistic"},
                         run_id="run-123")  # fmt: skip
    assert ref == "churn:1"
    version = project.registry.get(ref)
    assert version.metrics["roc_auc"] == pytest.approx(evaluation["metrics"]["roc_auc"])
    assert version.tags == {"pipeline": "train"}
    assert version.params["estimator"] == "LogisticRegression"
    assert "model" not in version.params  # the fitted estimator is recorded, not the config
    assert version.params["train_rows"] == 900
    assert "customer_id" not in version.params["features"]
    assert set(version.lineage["datasets"]) == {"train", "test"}
    assert version.lineage["run_id"] == "run-123"
    assert version.signature is not None
    assert "churned" not in version.signature.columns

    promoted = steps.gate(ref, project_root=root, promote_to="prototype", pipeline="train")
    assert promoted == {"ref": ref, "stage": "prototype", "outcome": "promoted", "failed": []}
    again = steps.gate(ref, project_root=root, promote_to="prototype", pipeline="train")
    assert again["outcome"] == "unchanged"
    refused = steps.gate(ref, project_root=root, promote_to="production", pipeline="train")
    assert refused["outcome"] == "refused"
    assert [f["rule"] for f in refused["failed"]] == ["roc_auc >= 0.99"]
    history = project.registry.history("churn")
    assert [(e.alias, e.outcome) for e in history] == [
        ("prototype", "promoted"), ("production", "refused")
    ]  # fmt: skip
    assert history[-1].reason == "standard pipeline train"
    skipped = steps.gate(ref, project_root=root, promote_to="", pipeline="train")
    assert skipped["outcome"] == "skipped"


def test_extract_reads_the_named_source(project: Project) -> None:
    frame = steps.extract(project_root=str(project.root), source="customers")
    assert len(frame) == 1200
    with pytest.raises(ConfigError, match=r"no source 'other' .* its sources are customers"):
        steps.extract(project_root=str(project.root), source="other")


# -- the whole road, through the runner ----------------------------------------------------


def test_the_standard_road_runs_end_to_end(project: Project) -> None:
    runner = Runner(project.settings, project.database, project.artifacts, project.datasets)
    pipeline = build_standard(project.settings, "train")
    info = runner.run(pipeline)
    assert info.status == "succeeded", info.error
    assert project.datasets.get("raw/customers").row_count == 1200
    report = project.datasets.read("processed/train_quality")
    assert report["passed"].all()
    version = project.registry.get("churn@prototype")
    assert version.metrics["roc_auc"] > 0.7
    assert version.metrics["roi"] > 1.5
    assert version.lineage["run_id"] == info.id

    second = runner.run(pipeline)  # unchanged data and settings: training is reused
    assert second.status == "succeeded", second.error
    status = {s.step: s.status for s in second.steps}
    assert status["extract"] == "succeeded"
    assert status["train"] == "cached"
    assert status["register"] == "cached"  # no duplicate version for an unchanged model
    assert [v.version for v in project.registry.list_versions("churn")] == [1]

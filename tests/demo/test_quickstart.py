"""The quickstart walk-through: the template project, the standard road, gates, cache, serving."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from shipyard import ConflictError, Project
from shipyard.cli.app import app
from shipyard.demo.quickstart import run_quickstart


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    with pytest.MonkeyPatch.context() as patch:
        shared = tmp_path_factory.mktemp("shared")
        # A registry named by the environment must never be touched by the demo.
        patch.setenv("SHIPYARD_DATABASE_URL", f"sqlite:///{shared / 'team.db'}")
        patch.setenv("SHIPYARD_ARTIFACTS", str(shared / "team-artifacts"))
        patch.setenv("SHIPYARD_USER", "quickstart-test")
        directory = tmp_path_factory.mktemp("quickstart") / "demo"
        buffer = io.StringIO()
        summary = run_quickstart(directory, Console(file=buffer, width=120))
        assert not (shared / "team.db").exists()
        assert not (shared / "team-artifacts").exists()
    return directory, summary, buffer.getvalue()


def test_the_road_ends_in_production_with_business_value(
    first_run: tuple[Path, dict[str, Any], str],
) -> None:
    directory, summary, output = first_run
    assert summary["resumed"] is False
    assert summary["refused"] == "refused"  # no business approval yet
    assert summary["promoted"] == "promoted"
    assert summary["production"] == summary["version"] == 1
    metrics = summary["metrics"]
    assert metrics["roc_auc"] >= 0.80
    assert metrics["roi"] >= 1.5
    assert metrics["ebitda_low"] <= metrics["ebitda_mid"] <= metrics["ebitda_high"]
    with Project(directory) as project:
        production = project.registry.get("churn@production")
        assert production.tags["business_value"] == "approved"
        assert production.lineage["run_id"] == summary["runs"][0]
        assert project.runs.get(summary["runs"][0]).status == "succeeded"
    assert "EBITDA per month" in output
    answer = summary["http_answer"]  # a real request to the served production model
    assert (answer["model"], answer["version"]) == ("churn", summary["production"])
    assert len(answer["predictions"]) == len(answer["probabilities"]) == 2
    assert "curl -s -X POST http://127.0.0.1:8000/v1/models/churn/predict" in output
    assert "ignoring SHIPYARD_DATABASE_URL, SHIPYARD_ARTIFACTS" in output


def test_the_rerun_is_cached_and_the_challenger_is_judged_on_value(
    first_run: tuple[Path, dict[str, Any], str],
) -> None:
    _, summary, output = first_run
    assert set(summary["reused"]) >= {"validate", "treat", "train", "evaluate", "register"}
    assert summary["challenger"] == 2
    # The logistic regression scores a similar AUC but is worth less per month than
    # production: the value rule of the production gate refuses it.
    assert summary["challenger_outcome"] == "refused"
    assert "net_per_period >= production.net_per_period * 0.95" in output
    assert summary["outcomes"] == ["promoted", "refused", "promoted", "promoted", "refused"]
    assert summary["elapsed_seconds"] > 0  # timed by `make demo` in the README, not here


def test_the_demo_ends_with_batch_predictions_read_through_the_exposure_api(
    first_run: tuple[Path, dict[str, Any], str],
) -> None:
    directory, summary, output = first_run
    batch = summary["batch"]
    with Project(directory) as project:
        customers = pd.read_csv(directory / "data" / "customers.csv")
        assert batch["rows"] == len(customers)
        scored = project.datasets.read(batch["dataset"])
        assert sorted(scored["customer_id"]) == sorted(customers["customer_id"])
        assert project.predictions.job(batch["job"]).status == "succeeded"
    exposed = summary["exposed"]["predictions"]
    assert len(exposed) == 3
    assert {(r["source"], r["model"], r["batch_id"]) for r in exposed} == {
        ("batch", "churn", batch["job"])
    }
    assert set(scored["customer_id"].astype(str)) >= {r["key"] for r in exposed}
    assert "GET http://127.0.0.1:" in output
    assert "predict churn@production --input" in output


def test_the_demo_ends_with_a_monitoring_report_on_a_drifted_month(
    first_run: tuple[Path, dict[str, Any], str],
) -> None:
    directory, summary, output = first_run
    monitoring = summary["monitoring"]
    assert monitoring["dataset_drift"] is True
    assert {"monthly_charges", "internet_service", "contract"} <= set(monitoring["drifted"])
    assert monitoring["prediction_drift"] is True
    assert 0.5 < monitoring["performance"]["roc_auc"] <= 1.0
    html = Path(monitoring["html"])
    assert html == directory / "reports" / "monitoring.html"
    assert html.read_text(encoding="utf-8").count("<svg") >= 3
    assert "9. Next month drifts" in output
    with Project(directory) as project:
        from shipyard.datasets.monitor_results import MonitorResults

        stored = MonitorResults(project.database).history("churn")
        assert monitoring["result_id"] in [r.id for r in stored]


def test_a_second_run_continues_the_project(first_run: tuple[Path, dict[str, Any], str]) -> None:
    directory, _, _ = first_run
    summary = run_quickstart(directory, Console(file=io.StringIO()))
    assert summary["resumed"] is True
    assert summary["promoted"] == "unchanged"


def test_another_project_is_refused(tmp_path: Path) -> None:
    Project.init(tmp_path / "mine").close()
    with pytest.raises(ConflictError, match="did not create"):
        run_quickstart(tmp_path / "mine", Console(file=io.StringIO()))


def test_the_demo_ends_with_the_two_commands_that_package_it(
    first_run: tuple[Path, dict[str, Any], str], tmp_path: Path
) -> None:
    directory, _, output = first_run
    assert f"build --project {directory}" in output
    assert f"compose --project {directory}" in output
    runner = CliRunner()
    composed = runner.invoke(
        app, ["compose", "--out", str(tmp_path / "deploy"), "--project", str(directory)]
    )
    assert composed.exit_code == 0, composed.output
    assert (tmp_path / "deploy" / "compose.yaml").is_file()
    built = runner.invoke(
        app, ["build", "--out", str(tmp_path / "image"), "--project", str(directory)]
    )
    assert built.exit_code == 0, built.output
    assert (tmp_path / "image" / "project" / "shipyard.toml").is_file()
    assert not (tmp_path / "image" / "project" / "data").exists()

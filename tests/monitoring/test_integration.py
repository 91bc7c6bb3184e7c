"""Monitoring as users reach it: the CLI, the scheduler, and gauges on the server's /metrics."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from tests.helpers import make_settings
from tests.monitoring.conftest import Trained, drifted_rows, register_with_reference
from tests.serving.test_wire import LiveServer
from typer.testing import CliRunner

from shipyard import Project
from shipyard.cli.app import app
from shipyard.cli.orchestrate import build_launcher
from shipyard.datasets.monitor_results import MonitorResults
from shipyard.pipelines.schedule import Scheduler
from shipyard.serving.app import create_app

runner = CliRunner()


def env(project: Project) -> dict[str, str]:
    """The environment that points the CLI at the test project's database."""
    return {"SHIPYARD_DATABASE_URL": project.settings.database_url}


def drifted_file(tmp_path: Path) -> str:
    frame, target = drifted_rows(1500)
    path = tmp_path / "next_month.csv"
    frame.assign(churned=target).to_csv(path, index=False)
    return str(path)


def test_monitor_json_and_html_from_the_command_line(monitored: Project, tmp_path: Path) -> None:
    current = drifted_file(tmp_path)
    html = tmp_path / "report.html"
    root = str(monitored.root)
    result = runner.invoke(
        app,
        [
            "--project",
            root,
            "monitor",
            "churn",
            "--current",
            current,
            "--target",
            "churned",
            "--json",
            "--report",
            str(html),
        ],
        env=env(monitored),
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["dataset_drift"] is True
    assert {"dataset_drift", "drift_share", "columns", "quality", "performance"} <= set(report)
    first = report["columns"][0]
    assert set(first) >= {"column", "method", "score", "threshold", "drifted"}
    assert html.exists()
    assert "<svg" in html.read_text(encoding="utf-8")

    table = runner.invoke(
        app, ["--project", root, "monitor", "churn", "--current", current], env=env(monitored)
    )
    assert table.exit_code == 0, table.output
    assert "DRIFT" in table.output
    assert "tenure" in table.output

    history = runner.invoke(
        app, ["--project", root, "monitor", "churn", "--history", "--json"], env=env(monitored)
    )
    assert history.exit_code == 0, history.output
    assert [h["dataset_drift"] for h in json.loads(history.output)] == [True, True]

    missing = runner.invoke(
        app, ["--project", root, "monitor", "churn", "--current", "nope.csv"], env=env(monitored)
    )
    assert missing.exit_code == 1
    assert "nope.csv does not exist" in missing.output


def test_profile_command_stores_a_new_reference(monitored: Project, tmp_path: Path) -> None:
    current = drifted_file(tmp_path)
    result = runner.invoke(
        app,
        ["--project", str(monitored.root), "profile", "churn:1", "--data", current],
        env=env(monitored),
    )
    assert result.exit_code == 0, result.output
    assert "Stored the reference profile of churn:1: 1,500 rows" in result.output
    assert len(monitored.registry.profiles.list("churn")) == 2


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_a_scheduled_monitor_runs_on_its_cron(tmp_path: Path, trained: Trained) -> None:
    toml = """
[project]
name = "scheduled"

[monitors.hourly]
model = "churn"
cron = "0 * * * *"
reference = "reference.parquet"
window = "2h"
report = "reports/churn.html"
"""
    root = tmp_path / "proj"
    settings = make_settings(root, f"sqlite:///{root / 'meta.db'}", toml)
    with Project(settings=settings) as project:
        register_with_reference(project, trained)
        from tests.monitoring.conftest import reference_rows
        from tests.monitoring.test_run import log_requests

        reference_rows(2000)[0].to_parquet(root / "reference.parquet")
        log_requests(project, drifted_rows(300)[0], trained, rows_each=5)
        schedules = project.monitor_schedules()
        assert list(schedules) == ["monitor:hourly"]
        start = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)
        clock = Clock(start)
        scheduler = Scheduler(
            project.settings, project.database, build_launcher(project),
            schedules=schedules, clock=clock,
        )  # fmt: skip
        assert scheduler.tick() == []  # first sight: 01:00 is the next fire
        clock.now = start + timedelta(minutes=30, seconds=5)
        assert scheduler.tick() == ["monitor:hourly"]
        scheduler.wait()
        scheduler.close()
        assert [f.status for f in scheduler.fires] == ["succeeded"]
        [stored] = MonitorResults(project.database).history("churn")
        assert stored.monitor == "hourly"
        assert stored.report["rows"]["current"] == 300
        assert stored.report["reference"].startswith("reference.parquet")
        assert (root / "reports" / "churn.html").exists()


def test_gauges_of_the_newest_report_on_metrics(monitored: Project, tmp_path: Path) -> None:
    monitored.monitor("churn", current=drifted_file(tmp_path), target="churned")
    server = LiveServer(create_app(monitored.registry, ["churn:1"]))
    server.start()
    try:
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
    finally:
        server.stop()
    lines = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
             if line.startswith("shipyard_") and not line.startswith("#")}  # fmt: skip
    assert lines['shipyard_dataset_drift{model="churn"}'] == 1.0
    assert 0.5 < lines['shipyard_dataset_drift_share{model="churn"}'] <= 1.0
    assert lines['shipyard_feature_drift{feature="tenure",model="churn"}'] > 0.1
    assert lines['shipyard_feature_drifted{feature="charges",model="churn"}'] == 0.0
    assert 'shipyard_prediction_drift{model="churn",output="proba_1"}' in lines
    assert 'shipyard_data_quality{feature="plan",metric="missing_share",model="churn"}' in lines
    assert 0.0 < lines['shipyard_model_performance{metric="accuracy",model="churn"}'] <= 1.0
    assert 'shipyard_monitor_last_run_timestamp_seconds{model="churn"}' in lines


def test_a_quiet_hour_is_not_a_failed_monitor(tmp_path: Path, trained: Trained) -> None:
    toml = '[monitors.quiet]\nmodel = "churn"\ncron = "0 * * * *"\nwindow = "1h"\n'
    root = tmp_path / "quiet"
    settings = make_settings(root, f"sqlite:///{root / 'meta.db'}", toml)
    with Project(settings=settings) as project:
        register_with_reference(project, trained)
        start = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)
        clock = Clock(start)
        scheduler = Scheduler(
            project.settings, project.database, build_launcher(project),
            schedules=project.monitor_schedules(), clock=clock,
        )  # fmt: skip
        scheduler.tick()
        clock.now = start + timedelta(minutes=30, seconds=5)
        assert scheduler.tick() == ["monitor:quiet"]
        scheduler.wait()
        scheduler.close()
        assert [f.status for f in scheduler.fires] == ["succeeded"]  # nothing logged: no report
        assert MonitorResults(project.database).history("churn") == []

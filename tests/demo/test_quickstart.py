"""The quickstart walk-through: a real project, real models, real gates, run end to end."""

from __future__ import annotations

import io
import tomllib
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from shipyard import ConflictError, Project
from shipyard.demo.quickstart import GATES, MARKER, run_quickstart, write_gates


@pytest.fixture(autouse=True)
def _local_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo project keeps its own SQLite database and artifacts, whatever the shell says."""
    monkeypatch.delenv("SHIPYARD_DATABASE_URL", raising=False)
    monkeypatch.delenv("SHIPYARD_ARTIFACTS", raising=False)
    monkeypatch.setenv("SHIPYARD_USER", "quickstart-test")


def _run(directory: Path) -> tuple[dict[str, Any], str]:
    buffer = io.StringIO()
    summary = run_quickstart(directory, Console(file=buffer, width=120))
    return summary, buffer.getvalue()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("SHIPYARD_DATABASE_URL", raising=False)
        patch.delenv("SHIPYARD_ARTIFACTS", raising=False)
        patch.setenv("SHIPYARD_USER", "quickstart-test")
        directory = tmp_path_factory.mktemp("quickstart") / "demo"
        summary, output = _run(directory)
    return directory, summary, output


def test_production_serves_the_boosted_model(first_run: tuple[Path, dict[str, Any], str]) -> None:
    directory, summary, _ = first_run
    assert summary["versions"] == {"baseline": 1, "boosted": 2}
    assert summary["production"] == 2
    assert summary["resumed"] is False
    with Project(directory) as project:
        production = project.registry.get("churn@production")
        assert production.version == summary["versions"]["boosted"]
        assert production.params["estimator"] == "HistGradientBoostingClassifier"
        assert production.metrics["roc_auc"] >= 0.80
        assert production.tags["business_value"] == "approved"
        assert set(production.aliases) == {"poc", "prototype", "production"}
        assert set(production.lineage["datasets"]) == {"train", "test"}
        baseline = project.registry.get("churn:1")
        assert baseline.params["estimator"] == "LogisticRegression"
        assert baseline.aliases == ()
        assert "business_value" not in baseline.tags
    metrics = summary["metrics"]["boosted"]
    assert set(metrics) == {"roc_auc", "accuracy", "f1", "log_loss"}
    assert metrics["roc_auc"] > summary["metrics"]["baseline"]["roc_auc"]
    assert summary["elapsed_seconds"] < 60


def test_history_records_the_refusal_and_the_promotions(
    first_run: tuple[Path, dict[str, Any], str],
) -> None:
    directory, summary, _ = first_run
    with Project(directory) as project:
        history = project.registry.history("churn")
    outcomes = [(e.alias, e.to_version, e.outcome) for e in history]
    assert outcomes == [
        ("poc", 1, "promoted"),
        ("production", 1, "refused"),
        ("poc", 2, "promoted"),
        ("prototype", 2, "promoted"),
        ("production", 2, "promoted"),
    ]
    refused = history[1]
    failed = [r.rule for r in refused.gate if not r.passed]
    assert failed == ["tag business_value = approved"]
    assert [f["rule"] for f in summary["refused"]] == failed
    assert summary["outcomes"] == [e.outcome for e in history]


def test_output_tells_the_story(first_run: tuple[Path, dict[str, Any], str]) -> None:
    directory, summary, output = first_run
    assert "[gates.production]" in output  # the gates are shown as written, not as markup
    assert "refused" in output
    assert "tag 'business_value' is missing" in output
    # Security is explicit: the types trusted at registration are printed.
    assert summary["trusted_types"]["boosted"]
    for trusted in summary["trusted_types"]["boosted"]:
        assert trusted in output
    assert "missing column 'contract'" in output  # input is validated against the signature
    assert "Decision history of churn" in output
    assert f"shipyard models show churn@production --project {directory}" in output
    assert f"shipyard models history churn --project {directory}" in output
    assert len(summary["predictions"]) == 6


def test_gates_are_written_into_shipyard_toml(first_run: tuple[Path, dict[str, Any], str]) -> None:
    directory, _, _ = first_run
    text = (directory / "shipyard.toml").read_text(encoding="utf-8")
    assert text.count(MARKER) == 1
    config = tomllib.loads(text)
    assert config["project"]["name"] == "demo"
    assert config["gates"]["prototype"]["rules"] == ["roc_auc >= 0.75"]
    assert config["gates"]["production"] == {
        "rules": ["roc_auc >= 0.80", "roc_auc >= production.roc_auc - 0.01"],
        "require_tags": {"business_value": "approved"},
    }
    assert not list(directory.glob("*.tmp"))


def test_a_second_run_registers_new_versions(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    _run(directory)
    summary, output = _run(directory)
    assert "earlier quickstart project" in output
    assert summary["resumed"] is True
    assert summary["versions"] == {"baseline": 3, "boosted": 4}
    assert summary["production"] == 4
    with Project(directory) as project:
        assert [v.version for v in project.registry.list_versions("churn")] == [4, 3, 2, 1]
        history = project.registry.history("churn")
    assert len(history) == 10
    # Against a production model now, the baseline also fails the relative rule.
    assert {f["rule"] for f in summary["refused"]} == {
        "roc_auc >= production.roc_auc - 0.01",
        "tag business_value = approved",
    }
    assert (directory / "shipyard.toml").read_text(encoding="utf-8").count(MARKER) == 1


def test_another_project_is_left_alone(tmp_path: Path) -> None:
    directory = tmp_path / "mine"
    Project.init(directory).close()
    before = (directory / "shipyard.toml").read_text(encoding="utf-8")
    with pytest.raises(ConflictError, match="did not create"):
        _run(directory)
    assert (directory / "shipyard.toml").read_text(encoding="utf-8") == before


def test_write_gates_keeps_every_other_setting(tmp_path: Path) -> None:
    config = tmp_path / "shipyard.toml"
    config.write_text(
        '[project]\nname = "x"\n\n[store]\n# keep me\nartifacts = "blobs"\n\n'
        '# old gates\n[gates.staging]\nrules = ["f1 >= 0.5"]\n\n[gates.production]\n'
        "rules = []\nrequire_tags = {}\n\n[extra]\nkey = 1\n",
        encoding="utf-8",
    )
    write_gates(config)
    text = config.read_text(encoding="utf-8")
    data = tomllib.loads(text)
    assert data["store"] == {"artifacts": "blobs"}
    assert data["extra"] == {"key": 1}
    assert set(data["gates"]) == {"prototype", "production"}
    assert "# keep me" in text
    assert "# old gates" not in text
    assert text.endswith(GATES)


def test_a_shared_registry_in_the_environment_is_never_touched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared.db"
    monkeypatch.setenv("SHIPYARD_DATABASE_URL", f"sqlite:///{shared}")
    monkeypatch.setenv("SHIPYARD_ARTIFACTS", str(tmp_path / "shared-artifacts"))
    summary, output = _run(tmp_path / "demo")
    assert "ignoring SHIPYARD_DATABASE_URL, SHIPYARD_ARTIFACTS" in output
    assert summary["production"] == 2
    assert not shared.exists()
    assert not (tmp_path / "shared-artifacts").exists()
    assert (tmp_path / "demo" / ".shipyard" / "shipyard.db").is_file()

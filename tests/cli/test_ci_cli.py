"""``shipyard ci`` and ``shipyard init``: the CI/CD pipelines written into a project."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shipyard.cli.app import app
from shipyard.templates import create_project

runner = CliRunner()
FILES = ["Jenkinsfile", ".github/workflows/shipyard.yml", ".gitlab-ci.yml"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A template project without its CI files."""
    folder = tmp_path / "churn"
    create_project(folder, "churn")
    return folder


def written(root: Path) -> list[str]:
    return [name for name in FILES if (root / name).exists()]


def test_init_writes_the_three_pipelines_into_the_first_commit(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    result = runner.invoke(app, ["init", str(root)])
    assert result.exit_code == 0, result.output
    assert written(root) == FILES
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split()
    assert set(FILES) <= set(tracked)
    jenkinsfile = (root / "Jenkinsfile").read_text()  # the template registers "churn"
    assert "shipyard gate churn@prototype --to production" in jenkinsfile
    assert "docker build --tag shipyard-proj:latest build/image" in jenkinsfile


def test_init_bare_writes_no_pipeline(tmp_path: Path) -> None:
    root = tmp_path / "bare"
    result = runner.invoke(app, ["init", str(root), "--bare", "--no-git"])
    assert result.exit_code == 0, result.output
    assert written(root) == []


def test_ci_writes_every_system_by_default(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(root / "pipelines")  # the project is found from a folder inside it
    result = runner.invoke(app, ["ci"])
    assert result.exit_code == 0, result.output
    assert written(root) == FILES
    assert "wrote .github/workflows/shipyard.yml" in result.stdout
    assert "gate: churn@prototype → production; image: shipyard-churn:latest" in result.stdout


def test_ci_writes_only_the_systems_named(root: Path) -> None:
    result = runner.invoke(app, ["ci", "--github", "--gitlab", "--project", str(root)])
    assert result.exit_code == 0, result.output
    assert written(root) == FILES[1:]
    result = runner.invoke(app, ["--project", str(root), "ci", "--jenkins"])
    assert result.exit_code == 0, result.output
    assert written(root) == FILES


def test_ci_keeps_an_existing_file_unless_forced(root: Path) -> None:
    (root / "Jenkinsfile").write_text("// my own\n")
    result = runner.invoke(app, ["ci", "--project", str(root)])
    assert result.exit_code == 1
    assert "Jenkinsfile already exists" in result.stderr
    assert "--force" in result.stderr
    assert written(root) == ["Jenkinsfile"]  # nothing written when one file is in the way
    assert (root / "Jenkinsfile").read_text() == "// my own\n"
    result = runner.invoke(app, ["ci", "--force", "--project", str(root)])
    assert result.exit_code == 0, result.output
    assert (root / "Jenkinsfile").read_text().startswith("// The delivery pipeline")


def test_ci_outside_a_project_or_without_a_standard_pipeline_says_what_to_do(
    tmp_path: Path,
) -> None:
    result = runner.invoke(app, ["ci", "--project", str(tmp_path)])
    assert result.exit_code == 1
    assert "no shipyard.toml" in result.stderr
    (tmp_path / "shipyard.toml").write_text('[project]\nname = "bare"\n')
    result = runner.invoke(app, ["ci", "--project", str(tmp_path)])
    assert result.exit_code == 1
    assert 'set [pipelines] default to a pipeline with kind = "standard"' in " ".join(
        result.stderr.split()
    )

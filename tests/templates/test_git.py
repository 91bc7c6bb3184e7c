"""``shipyard init`` puts the new project under git: a first commit, data and secrets kept out."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shipyard.cli.app import app
from shipyard.templates.git import init_repository

runner = CliRunner()


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_init_commits_the_template_and_ignores_what_it_makes(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    result = runner.invoke(app, ["init", str(root)])
    assert result.exit_code == 0, result.output
    assert "git repository with a first commit" in result.stdout
    assert git(root, "log", "--format=%s") == "shipyard init: the project template"
    tracked = git(root, "ls-files").splitlines()
    assert "shipyard.toml" in tracked
    assert ".gitignore" in tracked
    assert not [name for name in tracked if name.startswith(".shipyard/")]
    assert git(root, "status", "--porcelain") == ""  # the database it just made is ignored
    for made in ("reports/monitoring.html", "deploy/.env", ".shipyard/runs/x.log"):
        assert git(root, "check-ignore", made) == made


def test_inside_a_repository_or_with_no_git_no_repository_is_made(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    result = runner.invoke(app, ["init", str(tmp_path / "inner"), "--bare"])
    assert result.exit_code == 0, result.output
    assert f"inside the git repository {tmp_path}" in " ".join(result.stdout.split())
    assert not (tmp_path / "inner" / ".git").exists()
    result = runner.invoke(app, ["init", str(tmp_path / "other" / "p"), "--bare", "--no-git"])
    assert result.exit_code == 0, result.output
    assert "code:" not in result.stdout


def test_without_git_the_project_is_made_and_the_user_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert "git is not installed" in init_repository(tmp_path)

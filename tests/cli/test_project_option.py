"""``--project DIR`` is accepted the same way by every command, after the subcommand too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

from shipyard.cli.app import app

#: Commands that create a project take its folder as their argument instead.
CREATE_A_PROJECT = {("init",), ("quickstart",)}


def leaf_commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every command that runs something (not a group), with the words that reach it."""
    if isinstance(command, TyperGroup):
        found = []
        ctx = typer.Context(command)
        for name in sorted(command.list_commands(ctx)):  # the root imports them on demand
            found += leaf_commands(command.get_command(ctx, name), (*path, name))
        return found
    return [(path, command)]


COMMANDS = leaf_commands(typer.main.get_command(app))


def test_every_command_is_listed() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"tokens create", "tokens list", "feedback add", "db current", "run", "serve"} <= names


@pytest.mark.parametrize(
    "path", [p for p, _ in COMMANDS if p not in CREATE_A_PROJECT], ids=" ".join
)
def test_every_command_takes_project_after_the_subcommand(path: tuple[str, ...]) -> None:
    command = dict(COMMANDS)[path]
    options = {opt for param in command.params for opt in getattr(param, "opts", [])}
    assert {"--project", "-p"} <= options, f"shipyard {' '.join(path)} has no --project / -p"
    result = CliRunner().invoke(app, [*path, "--project", "somewhere", "--help"])
    assert result.exit_code == 0, result.output
    assert "--project" in result.output


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder on its embedded SQLite, while the current folder is not a project."""
    for name in ("SHIPYARD_DATABASE_URL", "SHIPYARD_ARTIFACTS"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "proj"
    root.mkdir()
    (root / "shipyard.toml").write_text('[project]\nname = "p"\n', encoding="utf-8")
    away = tmp_path / "away"
    away.mkdir()
    monkeypatch.chdir(away)
    return root


def test_tokens_feedback_and_db_act_on_the_project_given_after_the_subcommand(
    elsewhere: Path,
) -> None:
    project = ["--project", str(elsewhere)]

    def shipyard(*args: str) -> str:
        result = CliRunner().invoke(app, list(args))
        assert result.exit_code == 0, result.output
        return result.stdout

    assert "created token ci" in shipyard("tokens", "create", "ci", "--scope", "read", *project)
    assert "ci" in shipyard("tokens", "list", *project)
    assert "revoked token ci" in shipyard("tokens", "revoke", "ci", "-p", str(elsewhere))
    assert "newest:" in shipyard("db", "current", *project)
    assert "is at revision" in shipyard("db", "upgrade", *project)
    assert shipyard("runs", "list", *project).startswith("no runs yet")
    labels = elsewhere / "labels.csv"
    labels.write_text("id,churned\na,1\n", encoding="utf-8")
    result = CliRunner().invoke(
        app,
        ["feedback", "add", "churn", "--file", str(labels), "--label-column", "churned",
         "--key-column", "id", *project],
    )  # fmt: skip
    assert result.exit_code == 1  # the project was found: it has no model churn
    assert "churn" in result.stderr
    assert "shipyard.toml" not in result.stderr

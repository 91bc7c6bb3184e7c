"""``shipyard datasets list | show | head`` on a real project."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from shipyard import Project
from shipyard.cli.app import app

runner = CliRunner()


def test_list_show_head(tmp_path: Path) -> None:
    with Project.init(tmp_path / "p") as project:
        project.datasets.write("raw/customers", pd.DataFrame({"id": [1, 2, 3], "x": [1.0, 2, 3]}))
        project.datasets.write("raw/customers", pd.DataFrame({"id": [1, 2], "x": [1.0, 2]}))
    root = str(tmp_path / "p")
    listed = runner.invoke(app, ["datasets", "list", "--json", "--project", root])
    assert listed.exit_code == 0, listed.output
    assert [d["ref"] for d in json.loads(listed.stdout)] == ["raw/customers:2"]
    shown = runner.invoke(app, ["datasets", "show", "raw/customers:1", "--project", root])
    assert shown.exit_code == 0
    assert "3 rows" in shown.stdout
    assert "versions: 2, 1" in shown.stdout
    head = runner.invoke(
        app, ["datasets", "head", "raw/customers", "-n", "1", "--json", "-p", root]
    )
    assert json.loads(head.stdout) == [{"id": 1, "x": 1.0}]
    missing = runner.invoke(app, ["datasets", "show", "raw/nope", "--project", root])
    assert missing.exit_code == 1
    assert "no dataset raw/nope" in missing.stderr

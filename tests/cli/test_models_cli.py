"""The CLI as a user types it: one project folder, real files, JSON for tools, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline
from typer.testing import CliRunner

from shipyard.cli.app import app
from shipyard.store import head_revision

Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]
runner = CliRunner()

GATES = """
[gates.production]
rules = ["roc_auc >= 0.80"]
require_tags = {business_value = "approved"}
"""


def shipyard(project: Path, *args: str) -> tuple[int, str, str]:
    """Run the CLI on ``project``; return exit code, stdout and stderr."""
    result = runner.invoke(app, ["--project", str(project), *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def folder(tmp_path: Path, trained: Trained) -> Path:
    """A project made by 'shipyard init', with a production gate and a .skops model and example."""
    root = tmp_path / "proj"
    result = runner.invoke(app, ["init", str(root), "--name", "demo", "--bare"])
    assert result.exit_code == 0, result.output
    config = root / "shipyard.toml"
    default_gate = "[gates.production]\nrules = []\nrequire_tags = {}\n"
    assert default_gate in config.read_text()
    config.write_text(config.read_text().replace(default_gate, GATES.lstrip()))
    model, frame, _ = trained
    sio.dump(model, root / "model.skops")
    frame.to_csv(root / "example.csv", index=False)
    return root


def test_register_list_show_promote_history(folder: Path) -> None:
    code, _, err = shipyard(
        folder, "models", "register", str(folder / "model.skops"), "-n", "churn"
    )
    assert code == 1
    assert "numpy.dtype" in err
    assert "--trust" in err
    assert "Traceback" not in err

    args = ["models", "register", str(folder / "model.skops"), "-n", "churn", "--trust"]
    args += ["--input-example", str(folder / "example.csv"), "--metric", "roc_auc=0.84"]
    args += ["--tag", "team=growth", "--json"]
    code, out, err = shipyard(folder, *args)
    assert code == 0, err
    registered = json.loads(out)
    assert registered["ref"] == "churn:1"
    assert registered["signature"]["inputs"][0]["name"] == "tenure"

    code, out, _ = shipyard(folder, "models", "list", "--json")
    assert json.loads(out)[0]["latest_version"] == 1
    code, out, _ = shipyard(folder, "models", "list")
    assert "churn" in out
    code, out, _ = shipyard(folder, "models", "list", "churn", "--json")
    assert [v["version"] for v in json.loads(out)] == [1]
    code, out, _ = shipyard(folder, "models", "show", "churn:1")
    assert code == 0
    assert "roc_auc=0.84" in out
    assert "plan" in out

    code, _, err = shipyard(folder, "models", "promote", "churn:1", "--to", "production")
    assert code == 1
    assert "business_value" in err
    code, out, _ = shipyard(folder, "models", "tag", "churn:1", "business_value=approved")
    assert code == 0
    code, out, err = shipyard(folder, "models", "promote", "churn:1", "--to", "production")
    assert code == 0, err
    assert "promoted to production" in out
    code, out, _ = shipyard(folder, "models", "show", "churn@production", "--json")
    assert json.loads(out)["aliases"] == ["production"]

    code, out, _ = shipyard(folder, "models", "history", "churn", "--json")
    assert [e["outcome"] for e in json.loads(out)] == ["refused", "promoted"]
    code, out, _ = shipyard(folder, "models", "history", "churn")
    assert "refused" in out


def test_alias_archive_delete(folder: Path) -> None:
    for _ in range(2):
        args = ["models", "register", str(folder / "model.skops"), "-n", "churn", "--trust"]
        assert shipyard(folder, *args)[0] == 0
    assert shipyard(folder, "models", "alias", "churn:1", "champion")[0] == 0
    code, _, err = shipyard(folder, "models", "delete", "churn:1", "--yes")
    assert code == 1
    assert "champion" in err
    assert shipyard(folder, "models", "alias", "churn", "champion", "--remove")[0] == 0
    assert shipyard(folder, "models", "archive", "churn:2")[0] == 0
    code, out, _ = shipyard(folder, "models", "show", "churn", "--json")
    assert json.loads(out)["version"] == 1
    assert shipyard(folder, "models", "delete", "churn:1", "--yes")[0] == 0
    code, _, err = shipyard(folder, "models", "show", "churn:1")
    assert code == 1
    assert "no version 1" in err


def test_user_errors_are_one_line_without_traceback(folder: Path, tmp_path: Path) -> None:
    cases = [
        (["models", "show", "churn@@x"], "not a model reference"),
        (["models", "show", "ghost"], "no registered model named 'ghost'"),
        (["models", "register", str(tmp_path / "none.skops"), "-n", "x"], "no model file"),
        (["models", "register", str(folder / "model.skops"), "-n", "x", "--metric", "a"],
         "KEY=VALUE"),
    ]  # fmt: skip
    for args, message in cases:
        code, _, err = shipyard(folder, *args)
        assert code == 1, args
        assert message in err
        assert "Traceback" not in err
    result = runner.invoke(app, ["models", "list"], catch_exceptions=False)
    assert result.exit_code == 1 or "no shipyard.toml" in result.stderr


def test_init_refuses_an_existing_project_and_db_upgrade_works(folder: Path) -> None:
    result = runner.invoke(app, ["init", str(folder)])
    assert result.exit_code == 1
    assert "not empty" in result.stderr
    code, out, _ = shipyard(folder, "db", "upgrade")
    assert code == 0
    assert head_revision() in out


def test_the_console_script_finds_the_project_from_a_subfolder(folder: Path) -> None:
    sub = folder / "notebooks"
    sub.mkdir()
    script = Path(sys.executable).parent / "shipyard"
    done = subprocess.run(
        [str(script), "models", "list", "--json"], cwd=sub, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    done = subprocess.run(
        [str(script), "models", "list"], cwd=folder.parent, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "no shipyard.toml" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_import_mlflow_folder_predicts_like_mlflow(folder: Path, trained: Trained) -> None:
    import mlflow.pyfunc
    import mlflow.sklearn

    model, frame, _ = trained
    target = folder / "mlflow-model"
    mlflow.sklearn.save_model(
        model, str(target), serialization_format="cloudpickle", input_example=frame.head(5)
    )
    code, _, err = shipyard(folder, "models", "import-mlflow", str(target), "-n", "churn")
    assert code == 1
    assert "pickle" in err
    code, out, err = shipyard(
        folder, "models", "import-mlflow", str(target), "-n", "churn", "--trust", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["flavor"] == "mlflow"
    from shipyard import Project

    with Project(folder) as project:
        ours = project.registry.load("churn").predict(frame)
    theirs = mlflow.pyfunc.load_model(str(target)).predict(frame)
    assert np.array_equal(ours, np.asarray(theirs))

"""``shipyard predict`` and ``shipyard predictions list | prune`` as a user types them."""

from __future__ import annotations

import json
import subprocess
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from tests.batch.support import (
    Trained,
    clean_env,
    customers,
    register_churn,
    shipyard_command,
)
from typer.testing import CliRunner

from shipyard import Project
from shipyard.cli.app import app
from shipyard.core.clock import utcnow

runner = CliRunner()


def shipyard(root: Path, *args: str) -> tuple[int, str, str]:
    """Run the CLI on the project ``root``; exit code, stdout (whitespace joined) and stderr."""
    result = runner.invoke(app, [*args, "--project", str(root)])
    return result.exit_code, " ".join(result.stdout.split()), " ".join(result.stderr.split())


@pytest.fixture
def folder(tmp_path: Path, trained: Trained) -> Path:
    """A project made by ``Project.init`` with ``churn:1`` and an input file ``in.csv``."""
    with Project.init(tmp_path / "proj") as project:
        register_churn(project, trained)
    customers(450).to_csv(tmp_path / "proj" / "in.csv", index=False)
    return tmp_path / "proj"


def test_predict_text_and_json(folder: Path) -> None:
    source = str(folder / "in.csv")
    code, out, err = shipyard(
        folder, "predict", "churn", "--input", source, "--key", "customer_id", "--chunk-rows", "100"
    )
    assert code == 0, err
    assert out.startswith("Scored 450 rows with churn:1 in ")
    assert "rows/s) → predictions/churn:1 job " in out
    assert "Read them: shipyard datasets head predictions/churn:1" in out
    assert "resumed" not in out
    assert "also written" not in out

    code, out, err = shipyard(
        folder,
        "predict",
        "churn:1",
        "-i",
        source,
        "--chunk-rows",
        "200",
        "--resume",
        "-o",
        str(folder / "out.csv"),
        "--json",
    )
    assert code == 0, err
    data = json.loads(out)
    assert (data["rows"], data["chunks"], data["rows_reused"], data["resumed"]) == (
        450,
        3,
        0,
        False,
    )
    assert (data["status"], data["dataset"], data["ref"]) == (
        "succeeded",
        "predictions/churn:2",
        "churn:1",
    )
    assert data["output"] == f"csv:{folder / 'out.csv'}"
    assert (folder / "out.csv").exists()

    code, out, _ = shipyard(
        folder, "predict", "churn", "-i", source, "--resume", "-o", str(folder / "again.csv")
    )
    assert code == 0
    assert "nothing to resume for these arguments: ran a new job" in out
    assert f"alsowrittentocsv:{folder / 'again.csv'}" in "".join(out.split())  # paths wrap


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--chunk-rows", "0"], "error: chunk rows must be at least 1 but got 0"),
        (["--engine", "dask"], "error: the dask engine needs --scheduler ADDRESS"),
        (["--query", "SELECT 1"], "error: --query goes with a database URL as --input"),
        (["--table", "t"], "error: --table goes with a database URL as --output"),
        (["-o", "out.xlsx"], "error: --output out.xlsx: the suffix '.xlsx' is not a format"),
        (["--key", "nope"], "error: key column 'nope' is not in the input"),
    ],
)
def test_predict_errors_are_one_line(folder: Path, args: list[str], message: str) -> None:
    code, out, err = shipyard(folder, "predict", "churn", "-i", str(folder / "in.csv"), *args)
    assert code == 1
    assert message in err
    assert "Traceback" not in err + out


def test_predict_a_missing_input(folder: Path) -> None:
    code, _, err = shipyard(folder, "predict", "churn", "-i", str(folder / "nope.parquet"))
    assert code == 1
    assert "nope.parquet does not exist: give a CSV or Parquet file or folder" in err


def test_predictions_list(folder: Path) -> None:
    code, out, _ = shipyard(folder, "predictions", "list")
    assert code == 0
    assert "No batch jobs yet: 'shipyard predict MODEL --input FILE' runs one." in out
    for rows in ("100", "1000"):
        assert (
            shipyard(
                folder, "predict", "churn", "-i", str(folder / "in.csv"), "--chunk-rows", rows
            )[0]
            == 0
        )
    code, out, _ = shipyard(folder, "predictions", "list", "--json")
    jobs = json.loads(out)
    assert [(j["dataset"], j["chunks"], j["status"]) for j in jobs] == [
        ("predictions/churn:1", 5, "succeeded"),
        ("predictions/churn:2", 1, "succeeded"),
    ]
    code, out, _ = shipyard(folder, "predictions", "list")
    assert code == 0
    assert "Batch jobs" in out  # a table as wide as the terminal (80 columns here)
    assert "┃ job" in out
    assert out.count("│ churn:1 │") == 2
    for job in jobs:  # whole ids (what --batch and the API take), however narrow the table
        assert f"│ {job['id']}" in out
    code, out, _ = shipyard(folder, "predictions", "list", "--model", "other", "--json")
    assert json.loads(out) == []
    code, out, _ = shipyard(folder, "predictions", "list", "--limit", "1", "--json")
    assert [j["id"] for j in json.loads(out)] == [jobs[1]["id"]]  # the newest


def test_predictions_prune(folder: Path) -> None:
    code, _, err = shipyard(folder, "predictions", "prune")
    assert code == 1
    assert (
        "error: no retention set: give --older-than-days N or set [predictions] "
        "retention_days in shipyard.toml"
    ) in err
    for _ in range(2):
        assert shipyard(folder, "predict", "churn", "-i", str(folder / "in.csv"))[0] == 0
    code, out, _ = shipyard(folder, "predictions", "prune", "--older-than-days", "30")
    assert code == 0
    assert (
        "removed 0 batch jobs, 0 prediction datasets, 0 online log rows, 0 feedback labels and "
        "0 monitoring reports older than 30"
    ) in out

    config = folder / "shipyard.toml"
    config.write_text(config.read_text() + "\n[predictions]\nretention_days = 30\n")
    engine = sa.create_engine(f"sqlite:///{folder / '.shipyard' / 'shipyard.db'}")
    with engine.begin() as connection:  # both jobs ran two months ago
        old = utcnow() - timedelta(days=60)
        connection.execute(
            sa.text("UPDATE batch_jobs SET started_at = :t, finished_at = :t"), {"t": old}
        )
    engine.dispose()
    code, out, _ = shipyard(folder, "predictions", "prune", "--json")
    assert code == 0
    assert json.loads(out) == {
        "jobs": 1,
        "datasets": 1,
        "online": 0,
        "feedback": 0,
        "monitoring": 0,
    }
    with Project(folder) as project:
        assert [j.dataset for j in project.predictions.jobs()] == ["predictions/churn:2"]
        assert [d.ref for d in project.datasets.versions("predictions/churn")] == [
            "predictions/churn:2"
        ]


def test_predict_into_a_folder_and_a_parquet_file(folder: Path) -> None:
    source = str(folder / "in.csv")
    code, out, err = shipyard(folder, "predict", "churn", "-i", source, "-o",
                              f"{folder}/scores/", "--chunk-rows", "200")  # fmt: skip
    assert code == 0, err
    assert f"alsowrittentoparquet:{folder / 'scores'}/" in "".join(out.split())
    assert sorted(p.name for p in (folder / "scores").iterdir()) == [
        "_SUCCESS",
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    code, out, err = shipyard(
        folder, "predict", "churn", "-i", source, "-o", str(folder / "s.parquet"), "--json"
    )
    assert code == 0, err
    assert json.loads(out)["output"] == f"parquet:{folder / 's.parquet'}"
    assert json.loads(out)["notes"] == []


def test_a_models_warnings_are_one_note_each(folder: Path, tmp_path: Path) -> None:
    from tests.batch.test_scoring import Noisy

    frame = customers(450)
    frame["charges"] = frame["charges"].fillna(70.0)
    frame.to_parquet(tmp_path / "in.parquet")
    with Project(folder) as project, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # registering runs the model on its example
        project.registry.register("noisy", Noisy(), input_example=frame.head(5), trust=True)
    code, _, err = shipyard(
        folder, "predict", "noisy", "-i", str(tmp_path / "in.parquet"), "--chunk-rows", "100"
    )
    assert code == 0, err
    assert err.count("noisy model") == 1
    assert "note: the model warned: UserWarning: noisy model (5 times)" in err


def test_a_model_fitted_on_arrays_prints_no_warning(folder: Path, tmp_path: Path) -> None:
    """As a user runs it: a fresh process with Python's default warning filters."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(4)
    rows = rng.normal(size=(2000, 3))
    model = LogisticRegression().fit(rows, (rows[:, 0] > 0).astype(int))
    frame = pd.DataFrame(rows, columns=["a", "b", "c"])
    with Project(folder) as project, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        project.registry.register("plain", model, input_example=frame.head(5), trust=True)
    frame.to_parquet(tmp_path / "in.parquet")
    done = subprocess.run(
        [*shipyard_command(), "predict", "plain", "-i", str(tmp_path / "in.parquet"),
         "--chunk-rows", "300", "--project", str(folder)],
        capture_output=True, text=True, env=clean_env(), timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Scored 2,000 rows with plain:1" in done.stdout
    assert "Warning" not in done.stderr
    assert "note:" not in done.stderr

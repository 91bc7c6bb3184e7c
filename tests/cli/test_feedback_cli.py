"""``shipyard feedback add | list``: label files stored for a registered model, both databases."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from tests.helpers import make_settings
from typer.testing import CliRunner

from shipyard import Project
from shipyard.cli.app import app

runner = CliRunner()
Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]


@pytest.fixture
def root(tmp_path: Path, database_url: str, trained: Trained) -> Path:
    """A project folder with ``churn`` registered."""
    model, frame, _ = trained
    settings = make_settings(tmp_path / "proj", database_url)
    with Project(settings=settings) as project:
        project.registry.register("churn", model, input_example=frame.head(5), trust=True)
    return tmp_path / "proj"


def shipyard(root: Path, database_url: str, *args: str) -> tuple[int, str, str]:
    env = {"SHIPYARD_DATABASE_URL": database_url, "SHIPYARD_USER": "alice", "COLUMNS": "200"}
    result = runner.invoke(app, ["--project", str(root), *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def listed(root: Path, database_url: str, *args: str) -> list[dict[str, object]]:
    code, out, err = shipyard(root, database_url, "feedback", "list", "churn", "--json", *args)
    assert code == 0, err
    return list(json.loads(out))


def test_add_a_csv_of_batch_labels_then_list_them(root: Path, database_url: str) -> None:
    labels = root / "labels.csv"
    labels.write_text("customer_id,churned\n007,1\nC-2,0\n13,1\n", encoding="utf-8")
    args = ("feedback", "add", "churn", "--file", str(labels), "--label-column", "churned")
    code, out, err = shipyard(root, database_url, *args, "--key-column", "customer_id")
    assert code == 0, err
    assert "Stored 3 labels of churn from labels.csv: batch (by key) predictions" in out
    rows = listed(root, database_url)
    assert [(r["key"], r["label"], r["request_id"], r["row"]) for r in rows] == [
        ("007", 1, None, None),  # keys stay the text the file holds
        ("C-2", 0, None, None),
        ("13", 1, None, None),
    ]
    assert datetime.fromisoformat(str(rows[0]["received_at"])).tzinfo is not None
    # a different label for a labelled prediction is refused, then replaced when asked
    labels.write_text("customer_id,churned\n007,0\n", encoding="utf-8")
    code, out, err = shipyard(root, database_url, *args, "--key-column", "customer_id")
    assert code == 1
    assert "1 label(s) differ" in err
    assert "--replace" in err
    code, out, err = shipyard(
        root, database_url, *args, "--key-column", "customer_id", "--json", "--replace"
    )
    assert code == 0, err
    assert json.loads(out) == {"model": "churn", "accepted": 1, "file": str(labels)}
    assert sorted((r["key"], r["label"]) for r in listed(root, database_url)) == [
        ("007", 0),
        ("13", 1),
        ("C-2", 0),
    ]
    code, table, err = shipyard(root, database_url, "feedback", "list", "churn")
    assert code == 0, err
    assert "Labels of churn" in table
    assert "key 007" in table
    code, table, _ = shipyard(root, database_url, "feedback", "list", "churn", "--limit", "1")
    assert "the newest 1 of 3" in table


def test_add_a_parquet_of_online_labels_by_request_and_row(root: Path, database_url: str) -> None:
    labels = root / "online.parquet"
    pd.DataFrame(
        {"rid": ["a1", "a1", "b2"], "n": [0, 1, 0], "truth": ["yes", "no", "yes"]}
    ).to_parquet(labels)
    code, out, err = shipyard(
        root, database_url, "feedback", "add", "churn", "-f", str(labels),
        "--label-column", "truth", "--request-id-column", "rid", "--row-column", "n",
    )  # fmt: skip
    assert code == 0, err
    assert "Stored 3 labels of churn from online.parquet: online (by request id)" in out
    rows = listed(root, database_url)
    assert [(r["request_id"], r["row"], r["label"], r["key"]) for r in rows] == [
        ("a1", 0, "yes", None),
        ("a1", 1, "no", None),
        ("b2", 0, "yes", None),
    ]
    # without --row-column every label is row 0 of its request: a1 gets two labels
    code, _, err = shipyard(
        root, database_url, "feedback", "add", "churn", "-f", str(labels),
        "--label-column", "truth", "--request-id-column", "rid",
    )  # fmt: skip
    assert code == 1
    assert "labels[0] and labels[1] give different labels" in err
    pd.DataFrame({"rid": ["c3"], "truth": ["no"]}).to_parquet(labels)
    code, _, err = shipyard(
        root, database_url, "feedback", "add", "churn", "-f", str(labels),
        "--label-column", "truth", "--request-id-column", "rid",
    )  # fmt: skip
    assert code == 0, err
    assert len(listed(root, database_url)) == 4  # c3 row 0 added


def test_list_since_a_time(root: Path, database_url: str) -> None:
    labels = root / "labels.csv"
    labels.write_text("id,y\n1,1\n", encoding="utf-8")
    add = ("feedback", "add", "churn", "-f", str(labels), "--label-column", "y", "--key-column")
    assert shipyard(root, database_url, *add, "id")[0] == 0
    time.sleep(0.01)
    middle = datetime.now(UTC)
    time.sleep(0.01)
    labels.write_text("id,y\n2,0\n", encoding="utf-8")
    assert shipyard(root, database_url, *add, "id")[0] == 0
    assert [r["key"] for r in listed(root, database_url, "--since", middle.isoformat())] == ["2"]
    naive = middle.replace(tzinfo=None).isoformat()  # no zone: UTC
    assert [r["key"] for r in listed(root, database_url, "--since", naive)] == ["2"]
    assert listed(root, database_url, "--since", "2999-01-01") == []
    code, out, _ = shipyard(
        root, database_url, "feedback", "list", "churn", "--since", "2999-01-01"
    )
    assert code == 0
    assert "No labels for churn since 2999-01-01" in out
    code, _, err = shipyard(root, database_url, "feedback", "list", "churn", "--since", "yesterday")
    assert code == 1
    assert "--since must be an ISO-8601 date or datetime" in err


def test_clear_errors_and_nothing_stored(root: Path, database_url: str) -> None:
    labels = root / "labels.csv"
    labels.write_text("customer_id,churned\nA,1\nB,\nC,0\n", encoding="utf-8")
    base = ("feedback", "add", "churn", "--file", str(labels), "--label-column", "churned")
    cases = [
        (
            ("feedback", "add", "churn", "--file", str(root / "nope.csv"),
             "--label-column", "y", "--key-column", "k"),
            "does not exist; give --file the path of a CSV or Parquet file",
        ),
        (base, "--key-column COL (batch predictions, by key) or --request-id-column COL"),
        (
            (*base, "--key-column", "customer_id", "--request-id-column", "customer_id"),
            "not both",
        ),
        ((*base, "--key-column", "customer_id", "--row-column", "n"), "--row-column goes with"),
        (
            (*base, "--key-column", "id"),
            "labels.csv has no column 'id'; its columns are: customer_id, churned",
        ),
        (
            (*base, "--key-column", "customer_id"),
            r"labels.csv: labels[1].label is missing (nan)",
        ),
        (
            (*base, "--request-id-column", "customer_id", "--row-column", "churned"),
            "labels.csv: labels[1].row must be a whole number from 0",
        ),
    ]  # fmt: skip
    for args, message in cases:
        code, _, err = shipyard(root, database_url, *args)
        assert code == 1, args
        assert message in " ".join(err.split()), err
    assert listed(root, database_url) == []  # all or nothing
    text = root / "labels.txt"
    text.write_text("k,y\n1,1\n", encoding="utf-8")
    code, _, err = shipyard(
        root, database_url, "feedback", "add", "churn", "-f", str(text),
        "--label-column", "y", "--key-column", "k",
    )  # fmt: skip
    assert code == 1
    assert "neither CSV nor Parquet" in err
    labels.write_text("k,y\n1,1\n", encoding="utf-8")
    for model, message in (
        ("fraud", "no registered model named 'fraud'"),
        ("churn:1", "model must be a registered model's name"),
    ):
        code, _, err = shipyard(
            root, database_url, "feedback", "add", model, "-f", str(labels),
            "--label-column", "y", "--key-column", "k",
        )  # fmt: skip
        assert code == 1
        assert message in " ".join(err.split()), err

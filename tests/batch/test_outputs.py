"""Where predictions go: the predictions zone always; a CSV file or a SQL table besides."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from tests.batch.support import Trained, assert_scored, customers

from shipyard import Project
from shipyard.batch.exports import write_sql
from shipyard.batch.outputs import OutputSpec, parse_output
from shipyard.core.exceptions import DataSourceError, InvalidArgumentError


def test_parse_output(tmp_path: Path) -> None:
    assert parse_output(None, None, "churn") == OutputSpec("predictions/churn")
    assert parse_output("predictions/nightly", None, "churn") == OutputSpec("predictions/nightly")
    spec = parse_output("out/scores.CSV", None, "churn")
    assert (spec.kind, spec.target) == ("csv", str(Path("out/scores.CSV").resolve()))
    assert spec.describe() == f"csv:{Path('out/scores.CSV').resolve()}"
    # a file name, even below a folder named like a zone (it was taken for a dataset name)
    assert parse_output("predictions/scores.csv", None, "churn").kind == "csv"
    assert parse_output("raw/scores.parquet", None, "churn").kind == "parquet"
    parquet = parse_output("scores.pq", None, "churn")
    assert (parquet.kind, parquet.dataset) == ("parquet", "predictions/churn")
    assert parquet.describe() == f"parquet:{Path('scores.pq').resolve()}"
    folder = parse_output("out/scores/", None, "churn")
    assert (folder.kind, folder.target) == ("folder", str(Path("out/scores").resolve()))
    assert folder.describe() == f"parquet:{Path('out/scores').resolve()}/"
    assert parse_output(str(tmp_path), None, "churn").kind == "folder"  # an existing folder
    assert parse_output("predictions/nightly/", None, "churn").kind == "folder"
    local = parse_output(f"file://{tmp_path}/s.parquet", None, "churn")
    assert (local.kind, local.target, local.local) == ("parquet", f"{tmp_path}/s.parquet", True)
    s3 = parse_output("s3://bucket/runs/scores.parquet", None, "churn")
    assert (s3.kind, s3.target, s3.local) == ("parquet", "s3://bucket/runs/scores.parquet", False)
    assert parse_output("s3://bucket/runs/scores/", None, "churn").describe() == (
        "parquet:s3://bucket/runs/scores/"
    )
    secret = parse_output("ftp://ann:pw@host/scores.csv", None, "churn")
    assert secret.describe() == "csv:ftp://ann:***@host/scores.csv"
    db = parse_output("postgresql+psycopg://ann:pw@db/crm", "churn_scores", "churn")
    assert (db.kind, db.target, db.table, db.dataset) == (
        "sql",
        "postgresql+psycopg://ann:pw@db/crm",
        "churn_scores",
        "predictions/churn",
    )
    assert db.describe() == "sql:postgresql+psycopg://ann:***@db/crm#churn_scores"


def test_zone_dataset_output(local: Project, trained: Trained, tmp_path: Path) -> None:
    frame = customers(500)
    frame.to_parquet(tmp_path / "in.parquet")
    first = local.predict("churn", str(tmp_path / "in.parquet"), chunk_rows=200)
    assert (first.job.dataset, first.job.output) == ("predictions/churn:1", "predictions/churn")
    named = local.predict(
        "churn", str(tmp_path / "in.parquet"), output="predictions/nightly", chunk_rows=200
    )
    assert named.job.dataset == "predictions/nightly:1"
    info = local.datasets.get("predictions/nightly")
    assert (info.layout, info.row_count, info.source) == ("parts", 500, f"batch:{named.job.id}")
    assert len(local.datasets.parts(info)) == 3
    assert_scored(local.datasets.read("predictions/nightly"), trained[0], frame)


def test_csv_output(local: Project, trained: Trained, tmp_path: Path) -> None:
    frame = customers(450)
    frame.to_csv(tmp_path / "in.csv", index=False)
    target = tmp_path / "out" / "scores.csv"
    result = local.predict(
        "churn", str(tmp_path / "in.csv"), output=str(target), keys=("customer_id",), chunk_rows=100
    )
    assert result.job.output == f"csv:{target}"
    assert [p.name for p in target.parent.iterdir()] == ["scores.csv"]  # no temporary left
    written = pd.read_csv(target)
    zone = local.datasets.read(result.job.dataset or "")
    assert list(written.columns) == list(zone.columns)
    assert written["customer_id"].tolist() == frame["customer_id"].tolist()
    assert written["prediction"].tolist() == zone["prediction"].tolist()
    pd.testing.assert_series_equal(written["proba_1"], zone["proba_1"], rtol=1e-12)
    assert_scored(zone, trained[0], frame, ["customer_id"])


def copy_parts(project: Project, dataset: str, folder: Path) -> Path:
    """A finished job's parts back in a folder, as a resumed job has them."""
    folder.mkdir()
    info = project.datasets.get(dataset)
    for number, digest in enumerate(project.datasets.parts(info)):
        project.artifacts.download(digest, folder / f"part-{number:06d}.parquet")
    return folder


def count(url: str, where: str = "") -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.exec_driver_sql(f"SELECT COUNT(*) FROM scores {where}").scalar())
    finally:
        engine.dispose()


def test_sql_table_output(local: Project, trained: Trained, sql_url: str, tmp_path: Path) -> None:
    frame = customers(600)
    frame.to_parquet(tmp_path / "a.parquet")
    frame.head(250).to_csv(tmp_path / "b.csv", index=False)
    first = local.predict(
        "churn",
        str(tmp_path / "a.parquet"),
        output=sql_url,
        table="scores",
        keys=("customer_id",),
        chunk_rows=250,
    )
    assert first.job.output.startswith("sql:")
    assert first.job.output.endswith("#scores")
    assert count(sql_url) == 600
    engine = sa.create_engine(sql_url)
    back = pd.read_sql("SELECT * FROM scores ORDER BY customer_id", engine)
    engine.dispose()
    assert back["customer_id"].tolist() == frame["customer_id"].tolist()
    zone = local.datasets.read(first.job.dataset or "")
    assert back["prediction"].tolist() == zone["prediction"].tolist()
    assert back["proba_1"].tolist() == pytest.approx(zone["proba_1"].tolist(), rel=1e-12)
    assert set(back["batch_id"]) == {first.job.id}

    second = local.predict(
        "churn",
        str(tmp_path / "b.csv"),
        output=sql_url,
        table="scores",
        keys=("customer_id",),
        chunk_rows=100,
    )
    assert count(sql_url) == 850  # appended
    assert count(sql_url, f"WHERE batch_id = '{second.job.id}'") == 250

    # the export of a job written again (a resumed job does this) replaces its rows
    parts = copy_parts(local, first.job.dataset or "", tmp_path / "parts")
    assert write_sql(parts, sql_url, "scores", first.job.id) == 600
    assert write_sql(parts, sql_url, "scores", first.job.id) == 600
    assert count(sql_url) == 850
    assert count(sql_url, f"WHERE batch_id = '{first.job.id}'") == 600


def test_a_table_that_is_not_a_predictions_table_is_refused_before_scoring(
    local: Project, sql_url: str, tmp_path: Path
) -> None:
    engine = sa.create_engine(sql_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE scores (id INTEGER, note TEXT)")
        connection.exec_driver_sql("INSERT INTO scores VALUES (1, 'keep me')")
    engine.dispose()
    customers(100).to_parquet(tmp_path / "in.parquet")
    with pytest.raises(InvalidArgumentError, match="table scores exists without a batch_id"):
        local.predict("churn", str(tmp_path / "in.parquet"), output=sql_url, table="scores")
    assert count(sql_url) == 1
    assert local.predictions.jobs() == []  # refused before a job was recorded
    assert local.datasets.list("predictions") == []


def test_an_unreachable_output_database_is_refused_before_scoring(
    local: Project, tmp_path: Path
) -> None:
    customers(10).to_parquet(tmp_path / "in.parquet")
    url = "postgresql+psycopg://nobody@127.0.0.1:1/nowhere"
    with pytest.raises(DataSourceError, match="cannot reach the output database sql:postgresql"):
        local.predict("churn", str(tmp_path / "in.parquet"), output=url, table="scores")
    assert local.predictions.jobs() == []

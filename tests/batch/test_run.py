"""``predict_batch``: job records, progress, and bad requests refused with nothing half-written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from tests.batch.support import Trained, customers, write_parquet_folder

from shipyard import NotFoundError, Project
from shipyard.batch import BatchRequest
from shipyard.batch.inputs import ParquetInput
from shipyard.batch.parts import write_part
from shipyard.batch.run import _check_parts
from shipyard.core.exceptions import (
    DataSourceError,
    InvalidArgumentError,
    SchemaError,
    ShipyardError,
)


def test_a_job_is_recorded_with_what_it_did(churn_project: Project, tmp_path: Path) -> None:
    customers(1000).to_parquet(tmp_path / "in.parquet")
    seen: list[tuple[int, int | None]] = []
    result = churn_project.predict(
        "churn:1",
        str(tmp_path / "in.parquet"),
        chunk_rows=300,
        progress=lambda done, total: seen.append((done, total)),
    )
    job = result.job
    assert (job.status, job.ref, job.model, job.version, job.engine) == (
        "succeeded",
        "churn:1",
        "churn",
        1,
        "local",
    )
    assert (job.rows, job.rows_reused, job.chunks, job.chunks_reused) == (1000, 0, 4, 0)
    assert (job.chunk_rows, job.key_columns, job.created_by) == (300, [], "tester")
    assert job.dataset == "predictions/churn:1"
    assert job.finished_at is not None
    assert job.finished_at >= job.started_at
    assert not result.resumed
    assert result.seconds > 0
    assert result.rows_per_s > 0
    assert not Path(job.work_dir).exists()  # its parts are blobs of the dataset now
    data = result.to_dict()
    assert (data["id"], data["rows"], data["resumed"]) == (job.id, 1000, False)
    assert {"seconds", "rows_per_s", "dataset", "started_at", "finished_at"} <= set(data)
    assert "work_dir" not in data
    assert "spec_hash" not in data
    assert seen[0] == (0, 1000)
    assert seen[-1] == (1000, 1000)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert churn_project.predictions.jobs() == [job]
    assert churn_project.predictions.job(job.id) == job


def test_the_newest_version_is_scored_and_each_job_adds_a_version(
    local: Project, trained: Trained, tmp_path: Path
) -> None:
    frame = customers(300)
    frame.to_csv(tmp_path / "in.csv", index=False)
    model, example, _ = trained
    local.registry.register("churn", model, input_example=example, trust=True)
    first = local.predict("churn", str(tmp_path / "in.csv"), chunk_rows=1000)
    second = local.predict("churn", str(tmp_path / "in.csv"), chunk_rows=1000)
    assert (first.job.version, first.job.dataset) == (2, "predictions/churn:1")
    assert second.job.dataset == "predictions/churn:2"  # every job is its own version
    assert first.job.chunks == 1
    out = local.datasets.read("predictions/churn:2")
    assert set(out["model_version"]) == {2}
    assert set(out["batch_id"]) == {second.job.id}
    progress: list[tuple[int, int | None]] = []
    local.predict(
        "churn:1",
        str(tmp_path / "in.csv"),
        chunk_rows=100,
        progress=lambda done, total: progress.append((done, total)),
    )
    assert progress[-1] == (300, None)  # a CSV's length is known only once it is read


# -- bad requests: a clear message, and nothing half-written ---------------------------------


def nothing_written(project: Project, csv: Path | None = None) -> list[str]:
    """No prediction dataset, no export, no parts; the error of any failed job."""
    assert project.datasets.list("predictions") == []
    if csv is not None:
        assert not csv.exists()
        assert list(csv.parent.glob(f".{csv.name}*")) == []
    errors = []
    for job in project.predictions.jobs():
        assert job.status == "failed"
        assert list(Path(job.work_dir).glob("parts/*")) == []
        errors.append(job.error)
    return errors


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"chunk_rows": 0}, InvalidArgumentError, "chunk rows must be at least 1 but got 0"),
        ({"workers": 0}, InvalidArgumentError, "workers must be at least 1 but got 0"),
        ({"engine": "spark"}, InvalidArgumentError, "engine must be one of local, dask but"),
        ({"engine": "dask"}, InvalidArgumentError, "the dask engine needs --scheduler ADDRESS"),
        ({"scheduler": "tcp://x:8786"}, InvalidArgumentError, "--scheduler goes with --engine"),
        ({"query": "SELECT 1"}, InvalidArgumentError, "--query goes with a database URL"),
        ({"output": "scores.json"}, InvalidArgumentError, "--output scores.json: the suffix"),
        ({"table": "scores"}, InvalidArgumentError, "--table goes with a database URL"),
        ({"output": "sqlite:///x.db"}, InvalidArgumentError, "a database output needs --table"),
    ],
)
def test_bad_arguments_are_refused_before_a_job_is_recorded(
    local: Project, tmp_path: Path, options: dict[str, Any], error: type, message: str
) -> None:
    customers(10).to_parquet(tmp_path / "in.parquet")
    with pytest.raises(error, match=message):
        local.predict("churn", str(tmp_path / "in.parquet"), **options)
    assert nothing_written(local) == []
    assert local.predictions.jobs() == []


def test_missing_inputs_and_models(local: Project, tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match=r"input .*nope\.csv does not exist: give a CSV"):
        local.predict("churn", str(tmp_path / "nope.csv"))
    with pytest.raises(NotFoundError, match="no dataset processed/nope"):
        local.predict("churn", "processed/nope")
    with pytest.raises(InvalidArgumentError, match="sqlite:// is a database: give the rows"):
        local.predict("churn", f"sqlite:///{tmp_path / 'x.db'}")
    customers(10).to_parquet(tmp_path / "in.parquet")
    with pytest.raises(NotFoundError, match="no registered model named 'nope'"):
        local.predict("nope", str(tmp_path / "in.parquet"))
    assert local.predictions.jobs() == []


def test_missing_feature_or_key_column(local: Project, tmp_path: Path) -> None:
    customers(500).drop(columns=["charges"]).to_csv(tmp_path / "in.csv", index=False)
    target = tmp_path / "out.csv"
    with pytest.raises(SchemaError, match="the input has no column 'charges', which churn:1"):
        local.predict("churn", str(tmp_path / "in.csv"), output=str(target), chunk_rows=100)
    customers(500).to_parquet(tmp_path / "in.parquet")
    with pytest.raises(SchemaError, match=r"key column 'id' is not in the input \(its columns"):
        local.predict("churn", str(tmp_path / "in.parquet"), keys=("id",), output=str(target))
    [charges, key] = nothing_written(local, target)
    assert charges.startswith("the input has no column 'charges'")
    assert key.startswith("key column 'id' is not in the input")


def test_a_column_missing_from_a_later_file_fails_the_job_without_output(
    local: Project, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    write_parquet_folder(folder, customers(400), [200, 200], 100)
    table = pq.read_table(folder / "data-01.parquet").drop_columns(["plan"])
    pq.write_table(table, folder / "data-01.parquet")
    with pytest.raises(SchemaError, match="the input has no column 'plan'"):
        local.predict("churn", str(folder), chunk_rows=100)
    assert local.datasets.list("predictions") == []
    [job] = local.predictions.jobs()
    assert job.status == "failed"
    # the chunks scored before the failure stay for --resume, nothing else is written
    assert sorted(p.name for p in Path(job.work_dir, "parts").iterdir()) == [
        "part-000000.parquet",
        "part-000001.parquet",
    ]


def test_empty_inputs(local: Project, tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("customer_id,tenure,charges,plan\n")
    target = tmp_path / "out.csv"
    with pytest.raises(DataSourceError, match=r"the input csv:.*in\.csv has no rows to score"):
        local.predict("churn", str(tmp_path / "in.csv"), output=str(target))
    customers(5).head(0).to_parquet(tmp_path / "in.parquet")
    with pytest.raises(DataSourceError, match=r"the input parquet:.*in\.parquet has no rows"):
        local.predict("churn", str(tmp_path / "in.parquet"), output=str(target))
    url = f"sqlite:///{tmp_path / 'in.db'}"
    engine = sa.create_engine(url)
    customers(5).to_sql("customers", engine, index=False)
    engine.dispose()
    with pytest.raises(DataSourceError, match=r"the input sql:sqlite:.* has no rows to score"):
        local.predict("churn", url, query="SELECT * FROM customers WHERE n > 100")
    assert len(nothing_written(local, target)) == 3


def test_check_parts_finds_missing_and_short_chunks(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": range(10)})
    frame.to_parquet(tmp_path / "in.parquet")
    source = ParquetInput.open(tmp_path / "in.parquet")
    parts = tmp_path / "parts"
    for index, rows in [(0, 4), (2, 2)]:
        write_part(str(parts), index, pa.table({"x": list(range(rows))}))
    with pytest.raises(ShipyardError, match=r"chunks \[1\] of the job are missing; run the same"):
        _check_parts(parts, source, 4, 10)
    write_part(str(parts), 1, pa.table({"x": [0, 1, 2]}))
    with pytest.raises(ShipyardError, match="parts hold 9 rows but the input has 10; the input"):
        _check_parts(parts, source, 4, 10)
    write_part(str(parts), 1, pa.table({"x": [0, 1, 2, 3]}))
    assert _check_parts(parts, source, 4, 10) == (3, 10)


def test_request_defaults() -> None:
    request = BatchRequest("churn", "in.csv")
    assert (request.chunk_rows, request.engine, request.resume, request.keys) == (
        100_000,
        "local",
        False,
        (),
    )

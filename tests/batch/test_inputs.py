"""Every kind of input, cut into the same numbered chunks every time and scored row for row."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from tests.batch.support import Trained, assert_scored, customers, write_parquet_folder

import shipyard.batch.inputs as inputs_module
from shipyard import Project
from shipyard.batch.inputs import (
    BatchInput,
    CsvInput,
    InputSpec,
    ParquetInput,
    SqlInput,
    is_dataset_ref,
    is_sql_url,
)
from shipyard.core.exceptions import DataSourceError, InvalidArgumentError


def chunk_list(
    source: BatchInput, chunk_rows: int, skip: frozenset[int] = frozenset()
) -> list[tuple[int, int, pd.DataFrame]]:
    """(index, first row, rows) of every chunk not in ``skip``."""
    return [(i, first, t.to_pandas()) for i, first, t in source.chunks(chunk_rows, skip)]


def test_urls_and_dataset_refs_are_told_from_paths(tmp_path: Path) -> None:
    assert is_sql_url("postgresql+psycopg://u@h/db")
    assert is_sql_url("sqlite:///x.db")
    assert not is_sql_url("s3://bucket/data.parquet")
    assert not is_sql_url("data.csv")
    assert is_dataset_ref("processed/customers:3")
    assert not is_dataset_ref("nozone/customers")
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "x.csv").write_text("a\n1\n")
    assert not is_dataset_ref(str(tmp_path / "raw" / "x.csv"))


def test_csv_chunks_are_numbered_from_zero_whatever_the_parser_blocks(tmp_path: Path) -> None:
    frame = customers(1000)
    path = tmp_path / "in.csv"
    frame.to_csv(path, index=False)
    source = CsvInput(path, block_bytes=1500)  # blocks of ~30 rows, never aligned with chunks
    assert len(list(source.tables())) > 10
    chunks = chunk_list(source, 77)
    assert [(i, first, len(t)) for i, first, t in chunks] == [
        (i, 77 * i, 77 if i < 12 else 1000 - 77 * 12) for i in range(13)
    ]
    joined = pd.concat([t for *_, t in chunks], ignore_index=True)
    assert joined["n"].tolist() == list(range(1000))
    again = chunk_list(source, 77, skip=frozenset({0, 5, 12}))
    assert [i for i, *_ in again] == [i for i in range(13) if i not in (0, 5, 12)]
    for _i, first, table in again:
        assert table["n"].tolist() == list(range(first, min(first + 77, 1000)))


@pytest.mark.parametrize(("groups", "chunk_rows"), [(30, 100), (300, 100), (100, 100)])
def test_parquet_folder_chunks_cross_files_and_row_groups(
    tmp_path: Path, groups: int, chunk_rows: int
) -> None:
    frame = customers(1000)
    write_parquet_folder(tmp_path / "in", frame, [250, 1, 349, 400], groups)
    (tmp_path / "in" / "notes.txt").write_text("not data")  # only *.parquet files are read
    source = ParquetInput.open(tmp_path / "in")
    assert source.random_access
    assert source.total_rows() == 1000
    chunks = chunk_list(source, chunk_rows)
    assert [(i, first) for i, first, _ in chunks] == [(i, i * chunk_rows) for i in range(10)]
    for index, first, table in chunks:
        assert table["n"].tolist() == list(range(first, first + chunk_rows))
        alone = source.read_chunk(index, chunk_rows).to_pandas()  # what a Dask worker reads
        pd.testing.assert_frame_equal(alone, table)
    # the same rows front to back, and in chunks of another size (the last one short)
    assert sum(t.num_rows for t in source.tables()) == 1000
    assert [len(t) for *_, t in chunk_list(source, 333)] == [333, 333, 333, 1]
    with pytest.raises(InvalidArgumentError, match="chunk 10 is past the end"):
        source.read_chunk(10, chunk_rows)


def test_parquet_inputs_that_cannot_be_read(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataSourceError, match=r"is a folder without \*\.parquet files"):
        ParquetInput.open(tmp_path / "empty")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DataSourceError, match=r"bad\.parquet is not a readable Parquet file"):
        ParquetInput.open(tmp_path / "bad.parquet")
    with pytest.raises(DataSourceError, match="does not exist"):
        ParquetInput.open(tmp_path / "nope.parquet")


def test_parquet_files_whose_types_differ_are_read_as_one(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(pa.table({"x": pa.array([1, 2, 3])}), folder / "a.parquet")
    pq.write_table(pa.table({"x": pa.array([0.5, None])}), folder / "b.parquet")
    [(_, _, table)] = ParquetInput.open(folder).chunks(10)
    assert table.column("x").type == pa.float64()
    assert table.column("x").to_pylist() == [1.0, 2.0, 3.0, 0.5, None]


def test_sql_fetches_keep_one_type_per_column(tmp_path: Path) -> None:
    """A column NULL (or integral) throughout one fetch must not break the chunks that cross it."""
    url = f"sqlite:///{tmp_path / 'in.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (id INTEGER, x NUMERIC)")
        for i in range(30):  # NUMERIC affinity: 2.0 comes back as the integer 2
            x = "NULL" if 10 <= i < 20 else (str(i) if i < 10 else f"{i}.5")
            connection.exec_driver_sql(f"INSERT INTO t VALUES ({i}, {x})")
    engine.dispose()
    source = SqlInput(url, "SELECT id, x FROM t ORDER BY id", fetch_rows=10)
    chunks = chunk_list(source, 7)
    assert [len(t) for *_, t in chunks] == [7, 7, 7, 7, 2]
    types = [t.schema.field("x").type for *_, t in source.chunks(7)]
    assert types == [pa.int64()] * 2 + [pa.float64()] * 3  # widened, never back to null
    joined = pd.concat([t for *_, t in chunks], ignore_index=True)
    assert joined["id"].tolist() == list(range(30))
    assert joined["x"].isna().tolist() == [10 <= i < 20 for i in range(30)]


def test_sql_description_hides_the_password() -> None:
    source = SqlInput("postgresql+psycopg://ann:s3cret@db:5432/crm", "SELECT 1")
    assert "s3cret" not in source.describe()
    assert source.describe().startswith("sql:postgresql+psycopg://ann:***@db:5432/crm")


def test_sql_query_that_fails_says_where(tmp_path: Path) -> None:
    source = SqlInput(f"sqlite:///{tmp_path / 'x.db'}", "SELECT * FROM missing_table")
    with pytest.raises(DataSourceError, match=r"the query failed on sql:sqlite:///.*missing_table"):
        list(source.chunks(10))


def test_an_input_is_parsed_once_and_mismatched_arguments_refused(
    local: Project, tmp_path: Path
) -> None:
    scratch = tmp_path / "scratch"
    with pytest.raises(InvalidArgumentError, match="sqlite:// is a database: give the rows"):
        InputSpec.parse("sqlite:///x.db", None)
    (tmp_path / "in.csv").write_text("a\n1\n")
    with pytest.raises(InvalidArgumentError, match="--query goes with a database URL"):
        InputSpec.parse(str(tmp_path / "in.csv"), "SELECT 1")
    missing = InputSpec.parse("nope.csv", None)
    with pytest.raises(DataSourceError, match=r"input nope\.csv does not exist"):
        missing.open(datasets=local.datasets, scratch=scratch)
    with pytest.raises(DataSourceError, match=r"input nope\.csv does not exist"):
        missing.identity(local.datasets)
    assert InputSpec.parse("sqlite:///x.db", "SELECT 1").kind == "sql"
    assert InputSpec.parse("raw/customers", None).kind == "dataset"
    found = InputSpec.parse(str(tmp_path / "in.csv"), None)
    assert found.identity(local.datasets) == found.identity(local.datasets)
    assert found.open(datasets=local.datasets, scratch=scratch).describe().endswith("in.csv")


def test_csv_reads_empty_fields_as_missing_and_float_features_as_floats(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    rows = ["charges,plan"] + [f"{i},basic" for i in range(2000)] + ["12.5,", ",pro"]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    source = CsvInput(path, block_bytes=4096, column_types={"charges": pa.float64()})
    table = pa.concat_tables(list(source.tables()))  # the first blocks hold only integers
    assert table.schema.field("charges").type == pa.float64()
    assert table.column("charges").to_pylist()[-2:] == [12.5, None]
    assert table.column("plan").to_pylist()[-2:] == [None, "pro"]  # as pandas reads it
    inferred = CsvInput(path, block_bytes=4096)
    with pytest.raises(DataSourceError, match="is not a readable CSV file"):
        list(inferred.tables())  # what a job without the signature's types would meet


def test_a_job_reads_its_float_features_as_floats(
    local: Project, trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inputs_module, "CSV_BLOCK_BYTES", 4096)  # many blocks in 400 rows
    frame = customers(400)
    frame["charges"] = frame["charges"].fillna(70.0).round()
    frame.loc[399, "charges"] = 70.25
    text = [str(int(v)) for v in frame["charges"][:399]] + ["70.25"]  # "70", not "70.0"
    frame.assign(charges=text).to_csv(tmp_path / "in.csv", index=False)
    result = local.predict("churn", str(tmp_path / "in.csv"), chunk_rows=100)
    assert_scored(local.datasets.read(result.job.dataset or ""), trained[0], frame)


# -- every input kind, scored end to end ----------------------------------------------------


def test_csv_input_with_a_key(local: Project, trained: Trained, tmp_path: Path) -> None:
    frame = customers(1234)
    frame.to_csv(tmp_path / "in.csv", index=False)
    result = local.predict("churn", str(tmp_path / "in.csv"), keys=("customer_id",), chunk_rows=100)
    assert (result.job.rows, result.job.chunks) == (1234, 13)
    assert result.job.input == f"csv:{tmp_path / 'in.csv'}"
    assert_scored(local.datasets.read(result.job.dataset or ""), trained[0], frame, ["customer_id"])


def test_parquet_file_input_gives_row_ids(local: Project, trained: Trained, tmp_path: Path) -> None:
    frame = customers(1000)
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "in.parquet", row_group_size=128)
    result = local.predict("churn", str(tmp_path / "in.parquet"), chunk_rows=300)
    assert (result.job.rows, result.job.chunks) == (1000, 4)
    assert_scored(local.datasets.read(result.job.dataset or ""), trained[0], frame)


@pytest.mark.parametrize("groups", [40, 700])
def test_parquet_folder_input(
    local: Project, trained: Trained, tmp_path: Path, groups: int
) -> None:
    frame = customers(1500)
    write_parquet_folder(tmp_path / "in", frame, [600, 100, 800], groups)
    result = local.predict("churn", str(tmp_path / "in"), chunk_rows=250, keys=("n",))
    assert (result.job.rows, result.job.chunks) == (1500, 6)
    assert_scored(local.datasets.read(result.job.dataset or ""), trained[0], frame, ["n"])


def test_zone_dataset_input_file_layout(local: Project, trained: Trained) -> None:
    frame = customers(700)
    info = local.datasets.write("processed/customers", frame)
    assert info.layout == "file"
    result = local.predict(
        "churn", "processed/customers", chunk_rows=200, keys=("customer_id", "n")
    )
    assert result.job.input == "dataset:processed/customers:1"
    out = local.datasets.read(result.job.dataset or "")
    assert_scored(out, trained[0], frame, ["customer_id", "n"])
    assert not Path(result.job.work_dir).exists()  # the verified copy went with the job


def test_zone_dataset_input_parts_layout(local: Project, trained: Trained, tmp_path: Path) -> None:
    frame = customers(900)
    write_parquet_folder(tmp_path / "parts", frame, [300, 300, 300], 100)
    staged = local.datasets.stage_parts("processed/customers", tmp_path / "parts")
    [info] = local.datasets.commit([staged])
    assert info.layout == "parts"
    assert len(local.datasets.parts(info)) == 3
    result = local.predict("churn", "processed/customers:1", chunk_rows=400)
    assert (result.job.rows, result.job.chunks) == (900, 3)
    assert_scored(local.datasets.read(result.job.dataset or ""), trained[0], frame)


def test_sql_query_input(local: Project, trained: Trained, sql_url: str) -> None:
    frame = customers(1100)
    engine = sa.create_engine(sql_url)
    frame.sample(frac=1, random_state=0).to_sql("customers", engine, index=False)
    engine.dispose()
    query = "SELECT customer_id, plan, charges, tenure FROM customers ORDER BY n"
    result = local.predict("churn", sql_url, query=query, chunk_rows=300, keys=("customer_id",))
    assert (result.job.rows, result.job.chunks) == (1100, 4)
    assert result.job.input.startswith("sql:")
    assert result.job.input.endswith(query)
    assert_scored(local.datasets.read(result.job.dataset or ""), trained[0], frame, ["customer_id"])


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_uuid_numeric_and_date_columns(
    local: Project, trained: Trained, database_url: str, tmp_path: Path
) -> None:
    """Keys as PostgreSQL stores them: a uuid is kept as its text, not as 16 opaque bytes."""
    frame = customers(400)
    frame["customer_id"] = [str(uuid.UUID(int=i)) for i in range(400)]
    engine = sa.create_engine(database_url)
    frame.to_sql("customers", engine, index=False)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "ALTER TABLE customers ALTER COLUMN customer_id TYPE uuid USING customer_id::uuid, "
            "ALTER COLUMN charges TYPE numeric(8, 2), ADD COLUMN since date DEFAULT '2024-01-31'"
        )
    engine.dispose()
    query = "SELECT * FROM customers ORDER BY n"
    result = local.predict(
        "churn",
        database_url,
        query=query,
        chunk_rows=150,
        keys=("customer_id", "since"),
        output=str(tmp_path / "out.csv"),
    )
    out = local.datasets.read(result.job.dataset or "")
    assert out["customer_id"].tolist() == frame["customer_id"].tolist()
    assert set(out["since"]) == {date(2024, 1, 31)}
    assert_scored(out, trained[0], frame.assign(since=date(2024, 1, 31)), ["customer_id", "since"])
    written = pd.read_csv(tmp_path / "out.csv")
    assert written["customer_id"].tolist() == frame["customer_id"].tolist()

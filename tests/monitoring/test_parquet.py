"""Parquet read as pandas would type it: whole, by column, in batches; what the footers tell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shipyard.core.exceptions import DataSourceError
from shipyard.monitoring.parquet import ParquetRows


def table_with_gaps(rows: int = 1000) -> pa.Table:
    """An integer column with one null (in the last rows only), text, floats with NaN."""
    rng = np.random.default_rng(3)
    count = pa.array([*range(rows - 1), None], pa.int64())
    floats = rng.normal(size=rows)
    floats[::7] = np.nan
    return pa.table(
        {
            "count": count,
            "whole": pa.array(range(rows), pa.int64()),
            "plan": pa.array(rng.choice(["basic", "plus", None], rows).tolist(), pa.string()),
            "x": pa.array(floats),  # NaN, not null
            "empty": pa.nulls(rows, pa.float64()),
        }
    )


def test_columns_have_the_types_pandas_gives_them(tmp_path: Path) -> None:
    pq.write_table(table_with_gaps(), tmp_path / "a.parquet", row_group_size=128)
    rows = ParquetRows(tmp_path / "a.parquet")
    table = rows.table()
    frame = pd.read_parquet(tmp_path / "a.parquet")
    assert table.schema.field("count").type == pa.float64()  # pandas: float64 with NaN
    assert frame["count"].dtype == np.float64
    assert table.schema.field("whole").type == pa.int64()
    assert pa.types.is_dictionary(table.schema.field("plan").type)
    assert rows.encoded == {"plan"}
    assert rows.read_schema.field("count").type == pa.float64()
    assert rows.column("count").type == pa.float64()
    # in batches too, also those without a null (the null is in the last one)
    batches = list(rows.batches(["count", "whole"], 100))
    assert {b.schema.field("count").type for b in batches} == {pa.float64()}
    assert pa.concat_tables(batches).column("whole").to_pylist() == list(range(1000))
    assert rows.rows == 1000


def test_a_nullable_integer_of_pandas_stays_an_integer(tmp_path: Path) -> None:
    frame = pd.DataFrame({"n": pd.array([1, None, 3], dtype="Int64")})
    frame.to_parquet(tmp_path / "n.parquet")
    assert ParquetRows(tmp_path / "n.parquet").table().schema.field("n").type == pa.int64()


def test_batches_follow_the_rows_of_a_folder_and_its_partitions(tmp_path: Path) -> None:
    for part, values in (("a", range(0, 250)), ("b", range(250, 400))):
        folder = tmp_path / f"part={part}"
        folder.mkdir()
        pq.write_table(pa.table({"v": list(values)}), folder / "0.parquet", row_group_size=60)
    rows = ParquetRows(tmp_path)
    assert rows.names == ["v", "part"]
    plain = pa.concat_tables(rows.batches(["v"], 64))
    assert plain.column("v").to_pylist() == list(range(400))
    partitioned = pa.concat_tables(rows.batches(["v", "part"], 64))
    assert partitioned.column("v").to_pylist() == list(range(400))
    assert partitioned.column("part").to_pylist() == ["a"] * 250 + ["b"] * 150


def test_what_the_footers_tell_about_values(tmp_path: Path) -> None:
    table = table_with_gaps().append_column("nan", pa.array([np.nan] * 1000))
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=128)
    rows = ParquetRows(tmp_path / "a.parquet")
    assert rows.holds_values("plan") is True
    assert rows.holds_values("x") is True
    assert rows.holds_values("empty") is False
    assert rows.holds_values("nan") is not True  # NaN is no value; the footers cannot say
    pq.write_table(table, tmp_path / "bare.parquet", write_statistics=False)
    assert ParquetRows(tmp_path / "bare.parquet").holds_values("x") is None


def test_only_the_columns_kept_are_read(tmp_path: Path) -> None:
    pq.write_table(table_with_gaps(), tmp_path / "a.parquet")
    rows = ParquetRows(tmp_path / "a.parquet", keep=lambda name: name in ("x", "plan"))
    assert rows.names == ["plan", "x"]
    assert rows.table().column_names == ["plan", "x"]


def test_an_unreadable_file_says_which(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataSourceError, match=r"cannot read Parquet .*bad\.parquet"):
        ParquetRows(tmp_path / "bad.parquet")

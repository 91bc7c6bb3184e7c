"""A window's columns as the statistics read them: numbers held as text, values, views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shipyard.core.exceptions import SchemaError
from shipyard.core.schema import ColumnSpec, Signature
from shipyard.monitoring.columns import WindowColumns, as_numbers, has_value, inputs_to_test
from shipyard.monitoring.parquet import ParquetRows

SIGNATURE = Signature(
    (
        ColumnSpec("tenure", "int64", nullable=True),
        ColumnSpec("charges", "float64", nullable=True),
        ColumnSpec("plan", "string", nullable=True),
    )
)


@pytest.mark.parametrize(
    "values",
    [
        ["1", "2.5", "x", None, " 7", "1e3", "inf", "-0"],
        ["12", "13", None],
        ["n/a", None],
    ],
)
@pytest.mark.parametrize("kind", [pa.string(), pa.large_string(), "dictionary"])
def test_text_reads_as_pandas_reads_objects(values: list[str | None], kind: object) -> None:
    array = pa.array(values, pa.string())
    column = pa.chunked_array(
        [array.dictionary_encode() if kind == "dictionary" else array.cast(kind)]
    )
    expected = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
    got = as_numbers(column).to_pandas()
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got.to_numpy(), expected.to_numpy())


def test_booleans_with_nulls_and_nulls_become_floats() -> None:
    flags = pa.chunked_array([pa.array([True, None, False])])
    assert as_numbers(flags).to_pylist() == [1.0, None, 0.0]
    assert as_numbers(pa.chunked_array([pa.nulls(2)])).type == pa.float64()
    numbers = pa.chunked_array([pa.array([1, 2])])
    assert as_numbers(numbers) is numbers


def test_a_value_is_neither_null_nor_nan() -> None:
    assert not has_value(pa.chunked_array([pa.array([None, np.nan], pa.float64())]))
    assert has_value(pa.chunked_array([pa.array([None, np.nan, 1.0])]))
    assert not has_value(pa.chunked_array([pa.array([None], pa.string())]))
    assert has_value(pa.chunked_array([pa.array(["a"]).dictionary_encode()]))


def window_file(tmp_path: Path) -> Path:
    frame = pd.DataFrame(
        {
            "tenure": pd.Series(["3", "4", "x", None], dtype="str"),
            "charges": [np.nan, np.nan, np.nan, np.nan],
            "plan": ["basic", "pro", None, "basic"],
            "extra": [1, None, 3, 4],
        }
    )
    frame.to_parquet(tmp_path / "w.parquet")
    return tmp_path / "w.parquet"


def test_views_of_one_parquet_window(tmp_path: Path) -> None:
    rows = ParquetRows(window_file(tmp_path))
    numbers = ["tenure", "charges"]
    drift = WindowColumns(rows, encoded=rows.encoded, numbers=numbers)
    assert drift.schema.field("tenure").type == pa.float64()  # text read as numbers
    assert drift.read("tenure").to_pylist() == [3, 4, None, None]
    assert pa.types.is_dictionary(drift.schema.field("plan").type)
    as_read = WindowColumns(rows, encoded=rows.encoded, decode=True)
    assert as_read.schema.field("tenure").type == pa.string()  # text, as quality reports it
    assert as_read.schema.field("plan").type == pa.string()
    assert as_read.read("plan").type == pa.string()
    assert as_read.schema.field("extra").type == pa.float64()  # an integer with a null
    outputs = pa.table({"prediction": [0, 1, 1, 0]})
    scored = WindowColumns(rows, encoded=rows.encoded, extra=outputs, decode=True)
    assert scored.schema.names[-1] == "prediction"
    assert scored.table(["prediction", "plan", "prediction"]).column_names == ["prediction", "plan"]
    with pytest.raises(SchemaError, match="'nope' is not in the window"):
        scored.read("nope")


def test_testable_inputs_from_the_footers_or_the_values(tmp_path: Path) -> None:
    rows = ParquetRows(window_file(tmp_path))
    drift = WindowColumns(rows, encoded=rows.encoded, numbers=["tenure", "charges"])
    assert drift.holds_values("plan") is True  # the footers tell
    assert drift.holds_values("tenure") is None  # text: only reading it tells
    features, notes = inputs_to_test(drift, SIGNATURE)
    assert features == ["tenure", "plan"]
    assert notes == ["charges: no value in the current rows, so no drift test (see quality)"]
    from_table = WindowColumns(rows.table(), encoded=rows.encoded, numbers=["tenure", "charges"])
    assert inputs_to_test(from_table, SIGNATURE) == (features, notes)


def test_a_window_without_inputs_says_so(tmp_path: Path) -> None:
    pq.write_table(pa.table({"other": [1, 2]}), tmp_path / "o.parquet")
    with pytest.raises(SchemaError, match="none of the model's input columns"):
        inputs_to_test(WindowColumns(ParquetRows(tmp_path / "o.parquet")), SIGNATURE)

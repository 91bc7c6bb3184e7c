"""Data quality of a window: each kind of problem counted exactly, on pandas and Arrow input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from shipyard.core.exceptions import InvalidArgumentError
from shipyard.core.schema import ColumnSpec, Signature
from shipyard.statistics import TableSource
from shipyard.statistics.quality import MAX_UNSEEN_EXAMPLES, QualityReport, check_quality


def sig(*columns: ColumnSpec) -> Signature:
    """A signature of the given input columns."""
    return Signature(inputs=columns)


def test_nan_and_none_both_count_as_missing_in_pandas() -> None:
    frame = pd.DataFrame(
        {
            "x": [1.0, np.nan, None, 2.0],
            "plan": pd.Series(["a", None, np.nan, "b"], dtype=object),
            "n": pd.array([1, None, 3, 4], dtype="Int64"),
        }
    )
    spec = sig(
        ColumnSpec("x", "float64", nullable=True),
        ColumnSpec("plan", "string", nullable=True),
        ColumnSpec("n", "int64", nullable=True),
    )
    report = check_quality(frame, spec)
    assert [(c.missing, c.missing_share) for c in report.columns] == [(2, 0.5), (2, 0.5), (1, 0.25)]
    assert report.failing_rows == 0  # every column is nullable


def test_nan_and_null_both_count_as_missing_in_arrow() -> None:
    table = pa.table(
        {
            "x": pa.array([1.0, float("nan"), None, 2.0]),
            "plan": pa.array(["a", None, "nan", "b"]),
        }
    )
    report = check_quality(table, sig(ColumnSpec("x", "float64"), ColumnSpec("plan", "string")))
    assert report.column("x").missing == 2
    assert report.column("plan").missing == 1  # the text "nan" is a value of a string column
    assert report.failing_rows == 2  # rows 1 and 2, neither column is nullable
    assert report.failing_share == 0.5


def test_only_non_nullable_columns_make_missing_values_fail() -> None:
    frame = pd.DataFrame({"opt": [np.nan, 1.0, np.nan, 4.0], "req": [1.0, np.nan, 3.0, 4.0]})
    spec = sig(ColumnSpec("opt", "float64", nullable=True), ColumnSpec("req", "float64"))
    report = check_quality(frame, spec)
    assert (report.column("opt").missing, report.column("req").missing) == (2, 1)
    assert report.failing_rows == 1


def test_type_violations_per_dtype() -> None:
    frame = pd.DataFrame(
        {
            "f": pd.Series([1.5, "abc", None, 2, "3e2"], dtype=object),
            "i": [1.0, 1.5, 2.0, np.nan, 4.0],
            "u": [1, 2, 300, -1, 5],
            "s": pd.Series(["a", 1, 2.5, None, "b"], dtype=object),
            "b": ["true", "FALSE", "maybe", None, "1"],
            "d": ["2024-01-01", "2024-02-30", "soon", None, "2024-03-01T10:00:00"],
        }
    )
    spec = sig(
        ColumnSpec("f", "float64", nullable=True),
        ColumnSpec("i", "int64", nullable=True),
        ColumnSpec("u", "uint8"),
        ColumnSpec("s", "string", nullable=True),
        ColumnSpec("b", "bool", nullable=True),
        ColumnSpec("d", "datetime", nullable=True),
    )
    report = check_quality(frame, spec)
    violations = {c.column: c.type_violations for c in report.columns}
    assert violations == {"f": 1, "i": 1, "u": 2, "s": 0, "b": 1, "d": 2}
    assert report.column("f").missing == 1
    assert report.failing_rows == 3  # rows 1, 2 and 3; rows 0 and 4 read cleanly


def test_text_numbers_in_an_arrow_string_column() -> None:
    table = pa.table({"x": pa.array(["1", "2.5", "x", None, "-inf", " 7"])})
    report = check_quality(table, sig(ColumnSpec("x", "float64", nullable=True)))
    assert (report.column("x").type_violations, report.column("x").missing) == (2, 1)
    assert [(c.column, c.expected, c.actual) for c in report.changed_types] == [
        ("x", "float64", "string")
    ]


def test_out_of_range_counts_readable_numbers_only() -> None:
    frame = pd.DataFrame({"age": [-1.0, 5.0, 11.0, np.nan, 10.5, np.inf, 10.0]})
    spec = ColumnSpec("age", "int64", nullable=True, minimum=0, maximum=10)
    report = check_quality(frame, sig(spec))
    quality = report.column("age")
    # 10.5 and inf cannot be int64: type violations, not out of range.
    assert (quality.out_of_range, quality.type_violations, quality.missing) == (2, 2, 1)
    only_max = check_quality(frame, sig(ColumnSpec("age", "float64", True, maximum=10)))
    assert only_max.column("age").out_of_range == 3  # 11, 10.5 and inf


def test_unseen_categories_from_the_signature_or_the_reference() -> None:
    frame = pd.DataFrame({"plan": ["a", "c", "d", "c", None, "b"]})
    spec = sig(ColumnSpec("plan", "string", nullable=True, categories=("a", "b")))
    report = check_quality(frame, spec)
    assert (report.column("plan").unseen, report.column("plan").unseen_examples) == (3, ("c", "d"))
    assert report.failing_rows == 3
    widened = check_quality(frame, spec, reference_categories={"plan": ["a", "b", "c"]})
    assert (widened.column("plan").unseen, widened.column("plan").unseen_examples) == (1, ("d",))


def test_unseen_categories_of_a_categorical_column_and_few_examples() -> None:
    values = [f"v{i}" for i in range(25)]
    frame = pd.DataFrame({"code": pd.Categorical(values + ["ok"] * 5)})
    spec = sig(ColumnSpec("code", "category", categories=("ok",)))
    report = check_quality(frame, spec)
    assert report.column("code").unseen == 25
    assert report.column("code").unseen_examples == tuple(values[:MAX_UNSEEN_EXAMPLES])
    assert report.changed_types == ()


def test_unseen_categories_compare_across_types() -> None:
    table = pa.table({"level": pa.array(["1", "2", "3"])})
    report = check_quality(table, sig(ColumnSpec("level", "string", categories=(1, 2))))
    assert report.column("level").unseen == 1


@pytest.mark.parametrize("as_arrow", [False, True])
def test_duplicates_count_rows_beyond_the_first(as_arrow: bool) -> None:
    frame = pd.DataFrame(
        {
            "x": [1.0, 1.0, np.nan, np.nan, 1.0, -0.0, 0.0],
            "plan": ["a", "a", None, None, "a", "b", "b"],
            "n": [1, 1, 2, 2, 1, 3, 3],
            "row_id": range(7),
        }
    )
    data = pa.Table.from_pandas(frame, preserve_index=False) if as_arrow else frame
    spec = sig(ColumnSpec("x", "float64", True), ColumnSpec("plan", "string", True))
    assert check_quality(data, spec, ignore=["row_id"]).duplicates == 4
    assert check_quality(data, spec).duplicates == 0  # row_id tells every row apart


def test_schema_changes_against_the_signature() -> None:
    frame = pd.DataFrame({"a": ["1", "2"], "c": [1, 2], "prediction": [0, 1]})
    spec = sig(ColumnSpec("a", "int64"), ColumnSpec("b", "float64"))
    report = check_quality(frame, spec, ignore=("prediction",))
    assert report.missing_columns == ("b",)
    assert report.extra_columns == ("c",)
    assert [(c.column, c.expected, c.actual, c.against) for c in report.changed_types] == [
        ("a", "int64", "string", "signature")
    ]
    assert report.column("b").missing == 2
    assert report.failing_rows == 2  # "b" is absent and not nullable: every row lacks it


def test_an_absent_nullable_column_fails_no_row() -> None:
    frame = pd.DataFrame({"a": [1, 2]})
    report = check_quality(frame, sig(ColumnSpec("a", "int64"), ColumnSpec("b", "float64", True)))
    assert (report.missing_columns, report.failing_rows) == (("b",), 0)


def test_castable_dtypes_are_not_changes() -> None:
    frame = pd.DataFrame({"i": [1.0, 2.0], "f": [1, 2], "flag": [True, False]})
    spec = sig(ColumnSpec("i", "int64"), ColumnSpec("f", "float64"), ColumnSpec("flag", "bool"))
    assert check_quality(frame, spec).changed_types == ()


def test_schema_changes_against_the_previous_window() -> None:
    spec = sig(ColumnSpec("x", "float64"))
    first = check_quality(pd.DataFrame({"x": [1, 2], "extra": ["a", "b"]}), spec)
    assert first.dtypes == {"x": "int64", "extra": "string"}
    second = pa.table({"x": pa.array([1.5, 2.5]), "extra": pa.array(["a", "b"])})
    report = check_quality(second, spec, previous_columns=first.dtypes)
    assert [(c.column, c.expected, c.actual, c.against) for c in report.changed_types] == [
        ("x", "int64", "float64", "previous")
    ]
    # Arrow's and pandas' spellings of the same dtypes are no change.
    same = check_quality(second, spec, previous_columns={"x": "double", "extra": "large_string"})
    assert same.changed_types == ()


def test_a_row_with_several_problems_fails_once() -> None:
    frame = pd.DataFrame(
        {
            "x": [np.nan, 1.0, 2.0],
            "n": pd.Series(["bad", 1, 2], dtype=object),
            "m": [99.0, 1.0, 2.0],
            "plan": ["new", "a", "a"],
        }
    )
    spec = sig(
        ColumnSpec("x", "float64"),
        ColumnSpec("n", "int64"),
        ColumnSpec("m", "float64", maximum=10),
        ColumnSpec("plan", "string", categories=("a",)),
    )
    report = check_quality(frame, spec)
    assert report.failing_rows == 1
    assert pytest.approx(report.failing_share) == 1 / 3


def test_report_is_json_with_flat_gauges() -> None:
    frame = pd.DataFrame({"x": [1.0, np.nan, 1.0, 50.0], "plan": ["a", "z", "a", "a"]})
    spec = sig(
        ColumnSpec("x", "float64", maximum=10),
        ColumnSpec("plan", "string", categories=("a",)),
    )
    report = check_quality(frame, spec)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["rows"] == 4
    assert data["duplicates"] == 1
    assert data["columns"][1] == {
        "column": "plan",
        "missing": 0,
        "missing_share": 0.0,
        "type_violations": 0,
        "out_of_range": 0,
        "unseen": 1,
        "unseen_examples": ["z"],
    }
    gauges = report.gauges()
    assert gauges["missing_share"] == 1 / 8
    assert gauges["failing_share"] == 0.5
    assert (gauges["duplicates"], gauges["out_of_range"], gauges["unseen"]) == (1.0, 1.0, 1.0)
    assert all(isinstance(v, float) for v in gauges.values())
    assert report.column_gauges()["x"] == {
        "missing": 1.0,
        "missing_share": 0.25,
        "type_violations": 0.0,
        "out_of_range": 1.0,
        "unseen": 0.0,
    }


def test_from_dict_reads_back_what_to_dict_wrote() -> None:
    spec = sig(
        ColumnSpec("x", "int64", maximum=10),
        ColumnSpec("plan", "string", categories=("a",)),
        ColumnSpec("gone", "float64"),
    )
    frame = pd.DataFrame({"x": [1.5, np.nan, 50.0, 50.0], "plan": ["a", "z", "a", "a"], "e": 1})
    report = check_quality(frame, spec, previous_columns={"x": "int64"})
    assert report.changed_types
    assert report.missing_columns
    assert report.extra_columns
    data = json.loads(json.dumps(report.to_dict()))
    assert QualityReport.from_dict(data) == report
    assert QualityReport.from_dict(data).to_dict() == data
    del data["failing_rows"]
    with pytest.raises(InvalidArgumentError, match="lacks the key 'failing_rows'"):
        QualityReport.from_dict(data)


def test_an_empty_window_has_zero_shares() -> None:
    report = check_quality(
        pd.DataFrame({"x": pd.Series([], dtype=float)}), sig(ColumnSpec("x", "float64"))
    )
    assert (report.rows, report.failing_share, report.gauges()["missing_share"]) == (0, 0.0, 0.0)


def test_wrong_data_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="must be a pyarrow Table or a pandas DataFrame"):
        check_quality([[1.0]], sig(ColumnSpec("x", "float64")))  # type: ignore[arg-type]
    frame = pd.DataFrame([[1, 2]], columns=["x", "x"])
    with pytest.raises(InvalidArgumentError, match="'x' appears twice"):
        check_quality(frame, sig(ColumnSpec("x", "int64")))


def test_a_million_rows_of_25_columns() -> None:
    rows = 1_000_000
    rng = np.random.default_rng(7)
    columns: dict[str, np.ndarray] = {f"f{i}": rng.normal(size=rows) for i in range(20)}
    columns.update({f"i{i}": rng.integers(0, 100, rows) for i in range(3)})
    columns.update({f"s{i}": rng.choice(["a", "b", "c"], rows) for i in range(2)})
    for values in columns.values():
        values[-1000:] = values[:1000]  # the last 1,000 rows repeat the first 1,000
    index = np.arange(rows)
    columns["f0"][index % 10 == 5] = np.nan  # 100,000 missing, in copies and originals alike
    columns["i0"][5000] = 500  # out of range
    columns["s1"] = np.where(index % 100_000 == 50_000, "z", columns["s1"])  # 10 unseen
    frame = pd.DataFrame(columns)
    specs = [ColumnSpec(f"f{i}", "float64", nullable=i == 0) for i in range(20)]
    specs += [ColumnSpec(f"i{i}", "int64", minimum=0, maximum=99) for i in range(3)]
    specs += [ColumnSpec(f"s{i}", "string", categories=("a", "b", "c")) for i in range(2)]
    table = pa.Table.from_pandas(frame, preserve_index=False)
    report: QualityReport = check_quality(table, Signature(inputs=tuple(specs)))
    assert report.rows == rows
    assert report.column("f0").missing == 100_000
    assert report.column("i0").out_of_range == 1
    assert (report.column("s1").unseen, report.column("s1").unseen_examples) == (10, ("z",))
    assert report.duplicates == 1000
    assert report.failing_rows == 11


def test_a_categorical_column_is_read_as_its_values() -> None:
    frame = pd.DataFrame({"n": pd.Categorical([1, 2, 3, 2]), "x": pd.Categorical(["1.5", "a"] * 2)})
    spec = sig(ColumnSpec("n", "int64", maximum=2), ColumnSpec("x", "float64"))
    report = check_quality(frame, spec)
    assert (report.column("n").out_of_range, report.column("x").type_violations) == (1, 2)
    assert [c.column for c in report.changed_types] == ["n", "x"]  # category is not a number


class CountingSource(TableSource):
    """A table read one column at a time, counting the reads."""

    def __init__(self, table: pa.Table) -> None:
        super().__init__(table)
        self.reads: list[str] = []

    def read(self, name: str) -> pa.ChunkedArray:
        self.reads.append(name)
        return super().read(name)


@pytest.mark.parametrize("repeats", [0, 30])
def test_a_column_source_is_read_a_column_at_a_time(repeats: int) -> None:
    rng = np.random.default_rng(11)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=500),
            "plan": rng.choice(["a", "b", None], 500),
            "n": rng.integers(0, 5, 500),
            "extra": rng.integers(0, 3, 500),
        }
    )
    frame = pd.concat([frame, frame.iloc[:repeats]], ignore_index=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    spec = sig(
        ColumnSpec("x", "float64", maximum=1.0),
        ColumnSpec("plan", "string", categories=("a",)),
        ColumnSpec("n", "int64"),
    )
    source = CountingSource(table)
    report = check_quality(source, spec, ignore={"n"})
    assert report.to_dict() == check_quality(table, spec, ignore={"n"}).to_dict()
    assert report.duplicates == repeats
    # each input once; for duplicates, the float column alone rules out unrepeated rows
    others = ["plan", "extra"] if repeats else []
    assert source.reads == ["x", "plan", "n", "x", *others]

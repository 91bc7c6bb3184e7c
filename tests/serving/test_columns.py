"""Column validation and casting against a signature, without pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shipyard.core.exceptions import InvalidArgumentError, SchemaError
from shipyard.core.schema import ColumnSpec, Signature
from shipyard.serving.columns import (
    ColumnCaster,
    MatrixColumns,
    records_to_columns,
    split_to_columns,
    to_frame,
    to_matrix,
)

SIGNATURE = Signature(
    inputs=(
        ColumnSpec("count", "int64"),
        ColumnSpec("amount", "float64", nullable=True),
        ColumnSpec("plan", "category", categories=("basic", "pro")),
        ColumnSpec("note", "string", nullable=True),
        ColumnSpec("active", "bool"),
    )
)


def test_cast_gives_signature_dtypes_in_order() -> None:
    columns = ColumnCaster(SIGNATURE).cast(
        {
            "active": [True, False],
            "note": ["a", None],
            "plan": [b"pro", "basic"],
            "amount": [1, None],
            "count": [3.0, 4],
        }
    )
    assert list(columns) == ["count", "amount", "plan", "note", "active"]
    assert columns["count"].dtype == np.int64
    assert columns["amount"].dtype == np.float64
    assert np.isnan(columns["amount"][1])
    assert columns["plan"].tolist() == ["pro", "basic"]
    assert columns["note"].tolist() == ["a", None]
    assert columns["active"].dtype == np.bool_


def test_frame_matches_signature_validate() -> None:
    raw = {
        "count": [3, 4],
        "amount": [1.5, None],
        "plan": ["pro", "other"],
        "note": ["a", "b"],
        "active": [True, False],
    }
    frame = to_frame(ColumnCaster(SIGNATURE).cast(raw), SIGNATURE)
    expected = SIGNATURE.validate(pd.DataFrame(raw))
    pd.testing.assert_frame_equal(frame, expected, check_dtype=True)


def test_numeric_blocks_become_one_matrix() -> None:
    columns = {"a": np.array([1.0, 2.0]), "b": np.array([3, 4])}
    assert to_matrix(columns).tolist() == [[1.0, 3.0], [2.0, 4.0]]
    frame = to_frame({"a": np.array([1.0, 2.0]), "b": np.array([3.0, 4.0])}, None)
    assert list(frame.columns) == ["a", "b"]


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"count": [1]}, "missing column 'amount'"),
        (
            {"count": [1.5], "amount": [1], "plan": ["pro"], "note": ["a"], "active": [True]},
            "fractional",
        ),
        (
            {"count": [1], "amount": [1], "plan": ["pro"], "note": ["a"], "active": ["yes"]},
            "expects bool",
        ),
        (
            {"count": [1], "amount": ["1"], "plan": ["pro"], "note": ["a"], "active": [True]},
            "expects float64",
        ),
        (
            {"count": [1], "amount": [1], "plan": [None], "note": ["a"], "active": [True]},
            "missing value",
        ),
        (
            {"count": [1, 2], "amount": [1], "plan": ["pro"], "note": ["a"], "active": [True]},
            "one value per row",
        ),
        ({"count": [], "amount": [], "plan": [], "note": [], "active": []}, "at least one row"),
    ],
)
def test_cast_names_the_problem(columns: dict[str, list[object]], message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        ColumnCaster(SIGNATURE).cast(columns)


def test_without_signature_columns_pass_through() -> None:
    columns = ColumnCaster(None).cast({"b": [1, 2], "a": ["x", "y"]})
    assert list(columns) == ["b", "a"]
    assert columns["a"].tolist() == ["x", "y"]


def test_request_shapes() -> None:
    assert records_to_columns([{"a": 1}, {"a": 2, "b": 3}]) == {"a": [1, 2], "b": [None, 3]}
    assert split_to_columns({"columns": ["a", "b"], "data": [[1, 2]]}) == {"a": [1], "b": [2]}
    with pytest.raises(InvalidArgumentError, match="row 1 must be an object"):
        records_to_columns([{"a": 1}, 2])
    with pytest.raises(InvalidArgumentError, match="non-empty list"):
        records_to_columns([])


FLOATS = Signature(inputs=tuple(ColumnSpec(n, "float64", nullable=n == "b") for n in "abc"))


@pytest.mark.parametrize(
    "columns",
    [
        {"c": [3.0, 0.5], "a": [1, 2], "b": [2.5, -1]},  # lists, ints among the floats
        {"a": np.array([1.0, 2.0]), "b": np.array([2.5, -1.0]), "c": np.array([3.0, 0.5])},
        {"a": [2**60, 1.0], "b": [0.0, 0.0], "c": [1.0, 1e308]},  # values float64 rounds
    ],
)
def test_float_columns_in_one_step_equal_the_column_by_column_cast(
    columns: dict[str, object],
) -> None:
    fast = ColumnCaster(FLOATS).cast(columns)
    assert isinstance(fast, MatrixColumns)
    assert list(fast) == ["a", "b", "c"]
    for name in "abc":
        values = columns[name]
        general = np.asarray(values).astype("float64")  # what the per-column cast gives
        np.testing.assert_array_equal(fast[name], general)
        assert fast[name].dtype == np.float64
    matrix = MatrixColumns(np.asarray(fast.matrix), ["a", "b", "c"])
    assert ColumnCaster(FLOATS).cast(matrix) is matrix  # a decoded matrix is taken as it is


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"a": [float("nan")], "b": [1.0], "c": [1.0]}, "column 'a' has 1 missing value"),
        ({"a": [True], "b": [1.0], "c": [1.0]}, "column 'a' expects float64 but got booleans"),
        ({"a": [1.0, 2.0], "b": [1.0], "c": [1.0]}, "every column needs one value per row"),
        ({"a": ["1.0"], "b": [1.0], "c": [1.0]}, "expects float64"),
        ({"a": [1.0], "b": [1.0]}, "missing column 'c'"),
        ({"a": [], "b": [], "c": []}, "at least one row"),
    ],
)
def test_anything_unusual_takes_the_general_cast_and_its_errors(
    columns: dict[str, list[object]], message: str | None
) -> None:
    caster = ColumnCaster(FLOATS)
    if message is None:
        assert not isinstance(caster.cast(columns), MatrixColumns)
        return
    with pytest.raises(SchemaError, match=message):
        caster.cast(columns)
    nullable = {"a": [1.0], "b": [float("nan")], "c": [2.0]}  # NaN where allowed: per column
    cast = caster.cast(nullable)
    assert not isinstance(cast, MatrixColumns)
    assert np.isnan(cast["b"][0])

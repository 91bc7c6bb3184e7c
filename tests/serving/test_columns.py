"""Column validation and casting against a signature, without pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shipyard.core.exceptions import InvalidArgumentError, SchemaError
from shipyard.core.schema import ColumnSpec, Signature
from shipyard.serving.columns import (
    ColumnCaster,
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

"""Signatures: inferred from example rows, enforced on input with errors that name the column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shipyard import ColumnSpec, SchemaError, Signature

EXAMPLE = pd.DataFrame(
    {
        "age": [31, 45, 22],
        "income": [52.5, np.nan, 40.0],
        "plan": ["basic", "pro", "basic"],
        "active": [True, False, True],
        "segment": pd.Categorical(["a", "b", "a"], categories=["a", "b", "c"]),
    }
)


def test_infer_reads_dtypes_nulls_categories_and_ranges() -> None:
    sig = Signature.infer(EXAMPLE)
    assert sig.columns == ["age", "income", "plan", "active", "segment"]
    assert (sig.column("age").dtype, sig.column("age").minimum, sig.column("age").maximum) == (
        "int64",
        22.0,
        45.0,
    )
    assert sig.column("income").nullable
    assert not sig.column("age").nullable
    assert sig.column("plan").categories == ("basic", "pro")
    assert sig.column("active").dtype == "bool"
    assert sig.column("segment").categories == ("a", "b", "c")
    assert Signature.from_dict(sig.to_dict()) == sig


def test_validate_orders_and_casts_lossless_differences() -> None:
    sig = Signature.infer(EXAMPLE)
    rows = pd.DataFrame(
        {
            "segment": ["c", "a"],
            "active": [True, True],
            "plan": ["pro", "gold"],  # unseen categories are allowed for string columns
            "income": [10, 20],  # ints into a float column
            "age": [40.0, 41.0],  # integral floats into an int column
        }
    )
    out = sig.validate(rows)
    assert list(out.columns) == sig.columns
    assert out["income"].dtype == np.float64
    assert out["age"].dtype == np.int64
    assert isinstance(out["segment"].dtype, pd.CategoricalDtype)
    assert list(out["segment"].cat.categories) == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns="plan"), "missing column 'plan'"),
        (lambda f: f.assign(extra=1), "unknown column 'extra'"),
        (lambda f: f.assign(age="old"), "column 'age' expects int64"),
        (lambda f: f.assign(age=[1.5, 2.0, 3.0]), "column 'age' expects int64 but got fractional"),
        (lambda f: f.assign(plan=[1, 2, 3]), "column 'plan' expects string"),
        (lambda f: f.assign(age=[1, None, 3]), "column 'age' has 1 missing value"),
        (lambda f: f.assign(active=[1.0, 0.0, 1.0]), "column 'active' expects bool"),
        (lambda f: f.astype(object).assign(plan=["a", 2, "b"]), "column 'plan' expects string"),
    ],
)
def test_validate_names_the_offending_column(change, message: str) -> None:  # type: ignore[no-untyped-def]
    sig = Signature.infer(EXAMPLE)
    with pytest.raises(SchemaError, match=message) as caught:
        sig.validate(change(EXAMPLE.copy()))
    assert caught.value.column is not None


def test_bad_examples_are_refused() -> None:
    with pytest.raises(SchemaError, match="at least one row"):
        Signature.infer(EXAMPLE.head(0))
    with pytest.raises(SchemaError, match="must be a pandas DataFrame"):
        Signature.infer([[1, 2]])  # type: ignore[arg-type]
    mixed = pd.DataFrame({"x": pd.Series(["a", 1], dtype=object)})
    with pytest.raises(SchemaError, match="column 'x' mixes value types"):
        Signature.infer(mixed)


def test_with_nullable_widens_only_the_named_columns() -> None:
    sig = Signature.infer(EXAMPLE)
    wider = sig.with_nullable(["age", "plan"])
    assert [c.name for c in wider.inputs if c.nullable] == ["age", "income", "plan"]
    assert wider.column("age").dtype == "int64"
    out = wider.validate(EXAMPLE.assign(age=[1, None, 3], plan=["a", None, "b"]))
    assert out["age"].dtype == np.float64  # an integer column with nulls is fed as float64
    assert out["plan"].isna().tolist() == [False, True, False]
    with pytest.raises(SchemaError, match="no column 'nope'"):
        sig.with_nullable(["nope"])


def test_with_example_keeps_declared_types_and_reads_ranges() -> None:
    declared = Signature(
        inputs=(
            ColumnSpec("age", "int64"),
            ColumnSpec("income", "float64", nullable=True),
            ColumnSpec("plan", "string"),
        )
    )
    rows = pd.DataFrame({"age": [30.0, 50.0], "income": [1, None], "plan": ["pro", "basic"]})
    seen = declared.with_example(rows)
    assert [(c.name, c.dtype, c.nullable) for c in seen.inputs] == [
        ("age", "int64", False),
        ("income", "float64", True),
        ("plan", "string", False),
    ]
    assert (seen.column("age").minimum, seen.column("age").maximum) == (30.0, 50.0)
    assert seen.column("plan").categories == ("basic", "pro")
    with pytest.raises(SchemaError, match="column 'plan' has 1 missing value"):
        declared.with_example(rows.assign(plan=["pro", None]))


def test_missing_value_errors_say_why_and_how_to_fix() -> None:
    sig = Signature.infer(EXAMPLE)
    with pytest.raises(SchemaError, match="integer \\(int64\\) column") as integer:
        sig.validate(EXAMPLE.assign(age=[1, None, 3]))
    assert "log the column as double" in str(integer.value)
    with pytest.raises(SchemaError, match="nothing in the model handles them") as text:
        sig.validate(EXAMPLE.assign(plan=["a", None, "b"]))
    assert text.value.column == "plan"
    assert "such as an imputer" in str(text.value)

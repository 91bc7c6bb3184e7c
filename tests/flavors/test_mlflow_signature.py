"""Reading an MLmodel signature by MLflow's rules: optional columns, integers, tensors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shipyard.flavors.mlflow import read_input_example, read_signature


def meta(inputs: list[dict[str, Any]], outputs: list[dict[str, Any]] | None = None) -> Any:
    signature = {"inputs": json.dumps(inputs), "outputs": json.dumps(outputs or [])}
    return {"signature": signature}


def tensor(dtype: str, shape: list[int], name: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "tensor", "tensor-spec": {"dtype": dtype, "shape": shape}}
    return {**spec, "name": name} if name else spec


def test_optional_columns_take_missing_values_but_integers_never() -> None:
    read = read_signature(
        meta(
            [
                {"type": "double", "name": "amount", "required": False},
                {"type": "long", "name": "tenure", "required": False},
                {"type": "integer", "name": "visits"},
                {"type": "string", "name": "plan", "required": False},
                {"type": "double", "name": "score", "required": True},
            ],
            [{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}],
        )
    )
    assert read.signature is not None
    assert [(c.name, c.dtype, c.nullable) for c in read.signature.inputs] == [
        ("amount", "float64", True),
        ("tenure", "int64", False),
        ("visits", "int32", False),
        ("plan", "string", True),
        ("score", "float64", False),
    ]
    assert read.optional == ("amount", "plan")
    assert read.integers == ("tenure", "visits")
    assert read.signature.outputs is not None
    assert read.signature.outputs.dtype == "int64"
    [note] = read.notes
    assert "'tenure' is an integer column the MLmodel marks optional" in note
    assert "log the column as double" in note


def test_one_unnamed_tensor_becomes_numbered_columns() -> None:
    read = read_signature(meta([tensor("float32", [-1, 3])]))
    assert read.signature is not None
    assert [(c.name, c.dtype, c.nullable) for c in read.signature.inputs] == [
        ("0", "float32", False),
        ("1", "float32", False),
        ("2", "float32", False),
    ]
    assert read.tensor == {"dtype": "float32", "width": 3}
    assert read.from_tensors
    assert "one float32 tensor of 3 columns" in read.notes[0]
    integers = read_signature(meta([tensor("int64", [-1, 2])]))
    assert integers.integers == ("0", "1")


def test_named_column_tensors_become_columns() -> None:
    read = read_signature(
        meta(
            [tensor("float64", [-1], "x"), tensor("int32", [-1, 1], "n"), tensor("str", [-1], "s")]
        )
    )
    assert read.signature is not None
    assert [(c.name, c.dtype) for c in read.signature.inputs] == [
        ("x", "float64"),
        ("n", "int32"),
        ("s", "string"),
    ]
    assert read.tensor is None
    assert read.integers == ("n",)


@pytest.mark.parametrize(
    "inputs",
    [
        [tensor("float32", [-1, 28, 28])],  # an image
        [tensor("float32", [-1, 2], "a"), tensor("float32", [-1, 2], "b")],
        [tensor("object", [-1, 3])],  # one tensor of text
        [{"type": "tensor", "tensor-spec": {"dtype": "float32"}}],  # no shape
    ],
    ids=["image", "named-matrices", "text-matrix", "no-shape"],
)
def test_tensors_that_are_not_a_table_give_no_signature(inputs: list[dict[str, Any]]) -> None:
    read = read_signature(meta(inputs))
    assert read.signature is None
    assert read.from_tensors
    assert "input is not validated" in read.notes[0]


def test_unnamed_columns_or_no_signature_give_none() -> None:
    assert read_signature(meta([{"type": "double"}])).signature is None
    assert read_signature({}).signature is None
    assert read_signature({"signature": {"inputs": "not json"}}).signature is None


def test_tensor_examples_are_rows_in_column_order(tmp_path: Path) -> None:
    read = read_signature(meta([tensor("float64", [-1, 2])]))
    (tmp_path / "input_example.json").write_text("[[1.5, null], [2, 3.25]]")
    example = read_input_example(tmp_path, {}, read.signature)
    assert example is not None
    assert list(example.columns) == ["0", "1"]
    assert example["0"].tolist() == [1.5, 2.0]
    assert example["1"].isna().tolist() == [True, False]
    (tmp_path / "input_example.json").unlink()
    (tmp_path / "serving_input_example.json").write_text('{"inputs": [[4.0, 5.0]]}')
    served = read_input_example(tmp_path, {}, read.signature)
    assert served is not None
    assert served.to_dict("list") == {"0": [4.0], "1": [5.0]}

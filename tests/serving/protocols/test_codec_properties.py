"""Hypothesis properties of the request codecs and the signature checks.

- Any table of the signature's dtypes sent as native records / split, MLflow's JSON forms,
  CSV, or Open Inference v2 tensors (JSON and the binary extension) decodes to the same
  columns.
- Arbitrary JSON (or bytes) never raises anything but shipyard's own errors.
- The cast to the signature refuses or keeps each value exactly: never a wrapped integer, a
  boolean read as a number, or a non-finite float where the signature takes no missing values.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipyard.core.exceptions import InvalidArgumentError, SchemaError, ShipyardError
from shipyard.core.schema import ColumnSpec, Signature
from shipyard.serving.columns import ColumnCaster, records_to_columns, split_to_columns
from shipyard.serving.http import parse_json
from shipyard.serving.protocols.mlflow import csv_columns, json_columns
from shipyard.serving.protocols.native import body_columns
from shipyard.serving.protocols.v2_codec import decode_request

SIGNATURE = Signature(
    (
        ColumnSpec("tenure", "int64"),
        ColumnSpec("charges", "float64", nullable=True),
        ColumnSpec("plan", "string"),
        ColumnSpec("active", "bool"),
    )
)
NAMES = SIGNATURE.columns
CASTER = ColumnCaster(SIGNATURE)
INT64 = (-(2**63), 2**63 - 1)
PROPERTIES = settings(max_examples=100, deadline=None)
#: Text without lone surrogates (not encodable as UTF-8, so no client can send them).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)


@dataclass(frozen=True)
class Model:
    """What the MLflow decoders read of a served model: its name, version and signature."""

    signature: Signature
    name: str = "churn"
    version: int = 1


MODEL = Model(SIGNATURE)


def rows(
    floats: st.SearchStrategy[float] | None = None, text: st.SearchStrategy[str] = TEXT
) -> st.SearchStrategy[list[dict[str, Any]]]:
    """1 to 8 rows of the signature's dtypes (charges may be null)."""
    number = st.floats(allow_nan=False, allow_infinity=False) if floats is None else floats
    row = st.fixed_dictionaries(
        {
            "tenure": st.integers(*INT64),
            "charges": st.none() | number,
            "plan": text,
            "active": st.booleans(),
        }
    )
    return st.lists(row, min_size=1, max_size=8)


def expected(table: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {name: [row[name] for row in table] for name in NAMES}


def assert_same(columns: dict[str, np.ndarray], table: list[dict[str, Any]]) -> None:
    """``columns`` (cast) hold exactly the table's values, null as NaN."""
    assert list(columns) == NAMES
    want = expected(table)
    assert columns["tenure"].dtype == np.int64
    assert columns["tenure"].tolist() == want["tenure"]
    charges = [math.nan if v is None else v for v in want["charges"]]
    np.testing.assert_array_equal(columns["charges"].astype(float), charges)
    assert list(columns["plan"]) == want["plan"]
    assert [bool(v) for v in columns["active"]] == want["active"]


def wire(payload: Any) -> Any:
    """``payload`` as a server reads it: through JSON bytes."""
    return parse_json(orjson.dumps(payload))


@PROPERTIES
@given(rows())
def test_native_bodies_decode_to_the_same_columns(table: list[dict[str, Any]]) -> None:
    split = {"columns": NAMES, "data": [[row[n] for n in NAMES] for row in table]}
    for body in (table, {"records": table}, split):
        assert_same(CASTER.cast(body_columns(wire(body))), table)
    assert_same(CASTER.cast(records_to_columns(wire(table))), table)
    assert_same(CASTER.cast(split_to_columns(wire(split))), table)


@PROPERTIES
@given(rows())
def test_mlflow_json_forms_decode_to_the_same_columns(table: list[dict[str, Any]]) -> None:
    positional = [[row[n] for n in NAMES] for row in table]
    bodies = [
        {"dataframe_records": table},
        {"dataframe_split": {"columns": NAMES, "data": positional}},
        {"dataframe_split": {"data": positional}},  # the signature's order
        {"instances": table},
        {"inputs": positional},
        {"inputs": expected(table), "params": {}},
    ]
    for body in bodies:
        assert_same(CASTER.cast(json_columns(wire(body), MODEL)), table)  # type: ignore[arg-type]


#: Floats whose shortest text pandas' CSV reader parses back exactly (pandas' default float
#: parser may round the last digit of arbitrary doubles).
CSV_FLOATS = st.integers(-(10**9), 10**9).map(lambda n: n / 8)
#: Text pandas reads back as itself: no blank cells, nor NA markers such as "nan" or "NULL".
CSV_TEXT = st.text("abcdefgh0123 ,'\"", min_size=1, max_size=12).filter(lambda s: s.strip())


@PROPERTIES
@given(rows(CSV_FLOATS, CSV_TEXT))
def test_csv_decodes_to_the_same_columns(table: list[dict[str, Any]]) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(NAMES)
    for row in table:
        writer.writerow(["" if row[n] is None else row[n] for n in NAMES])
    columns = csv_columns(out.getvalue().encode(), MODEL)  # type: ignore[arg-type]
    assert_same(CASTER.cast(columns), table)


_DATATYPES = {"tenure": "INT64", "charges": "FP64", "plan": "BYTES", "active": "BOOL"}


def _v2_json(table: list[dict[str, Any]]) -> bytes:
    inputs = [
        {"name": n, "shape": [len(table)], "datatype": _DATATYPES[n], "data": expected(table)[n]}
        for n in NAMES
    ]
    return orjson.dumps({"inputs": inputs})


def _binary(name: str, values: list[Any]) -> bytes:
    if name == "plan":
        return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)
    dtype = {"tenure": "<i8", "charges": "<f8", "active": "?"}[name]
    return np.asarray(values, dtype=dtype).tobytes()


@PROPERTIES
@given(rows(floats=st.floats(allow_nan=False, allow_infinity=False)), st.data())
def test_v2_tensors_decode_to_the_same_columns(
    table: list[dict[str, Any]], data: st.DataObject
) -> None:
    for row in table:  # FP64 tensors carry nulls in JSON only; binary ones would be NaN
        row["charges"] = 0.5 if row["charges"] is None else row["charges"]
    decoded = decode_request(_v2_json(table), None, SIGNATURE)
    assert_same(CASTER.cast(decoded.columns), table)
    binary_names = data.draw(st.sets(st.sampled_from(NAMES)), label="binary tensors")
    inputs, chunks = [], []
    for name in NAMES:
        entry: dict[str, Any] = {"name": name, "shape": [len(table)], "datatype": _DATATYPES[name]}
        if name in binary_names:
            chunks.append(_binary(name, expected(table)[name]))
            entry["parameters"] = {"binary_data_size": len(chunks[-1])}
        else:
            entry["data"] = expected(table)[name]
        inputs.append(entry)
    header = orjson.dumps({"inputs": inputs})
    decoded = decode_request(header + b"".join(chunks), len(header), SIGNATURE)
    assert_same(CASTER.cast(decoded.columns), table)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | TEXT
    | st.sampled_from(NAMES),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(TEXT | st.sampled_from(NAMES), inner, max_size=4)
    ),
    max_leaves=24,
)


def _decoders(payload: Any) -> list[Any]:
    return [
        lambda: CASTER.cast(body_columns(payload)),
        lambda: CASTER.cast(json_columns(payload, MODEL)),  # type: ignore[arg-type]
        lambda: CASTER.cast(records_to_columns(payload)),
        lambda: CASTER.cast(split_to_columns(payload)),
        lambda: CASTER.cast(payload),
    ]


@PROPERTIES
@given(JSON_VALUES)
def test_arbitrary_json_raises_only_shipyard_errors(payload: Any) -> None:
    for decode in _decoders(payload):
        with contextlib.suppress(ShipyardError):
            decode()
    body = json.dumps(payload).encode()  # NaN, Infinity and big integers as Python writes them
    for attempt in (lambda: parse_json(body), lambda: decode_request(body, None, SIGNATURE)):
        with contextlib.suppress(ShipyardError):
            attempt()


@PROPERTIES
@given(JSON_VALUES, st.binary(max_size=64), st.integers(-5, 200) | st.none())
def test_arbitrary_v2_bodies_raise_only_shipyard_errors(
    doc: Any, tail: bytes, length: int | None
) -> None:
    inputs = {"inputs": doc if isinstance(doc, list) else [doc]}
    for header in (json.dumps(doc).encode(), json.dumps(inputs).encode()):
        with contextlib.suppress(ShipyardError):
            decode_request(header + tail, length, SIGNATURE)


@PROPERTIES
@given(st.binary(max_size=200) | TEXT.map(str.encode))
def test_arbitrary_csv_raises_only_shipyard_errors(body: bytes) -> None:
    with contextlib.suppress(ShipyardError):
        CASTER.cast(csv_columns(body, MODEL))  # type: ignore[arg-type]


CELLS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | TEXT
    | st.integers(-3, 3).map(float)
)


#: Columns whose cast keeps or refuses every value: all of them.
EXACT = list(SIGNATURE.inputs)


@PROPERTIES
@given(st.lists(CELLS, min_size=1, max_size=6), st.sampled_from(EXACT))
def test_the_cast_refuses_or_keeps_every_value_exactly(values: list[Any], spec: ColumnSpec) -> None:
    """No silent wrong answer: a value is refused (SchemaError naming the column) or kept."""
    table = {name: ["x"] * len(values) if name == "plan" else None for name in NAMES}
    table.update(tenure=[1] * len(values), charges=[1.0] * len(values), active=[True] * len(values))
    table[spec.name] = values
    try:
        cast = CASTER.cast(table)
    except (SchemaError, InvalidArgumentError) as exc:
        refused = exc
    else:
        refused = None
    if refused is not None:  # refused: the error names the column at fault
        assert not isinstance(refused, SchemaError) or refused.column in (spec.name, None)
        return
    for got, sent in zip(cast[spec.name].tolist(), values, strict=True):
        if spec.dtype == "int64":
            assert type(sent) in (int, float)
            assert math.isfinite(sent)
            assert INT64[0] <= sent <= INT64[1]
            assert got == sent
        elif spec.dtype == "float64":
            assert type(sent) is not bool
            if sent is None or (isinstance(sent, float) and not math.isfinite(sent)):
                assert math.isnan(got)  # missing, where the signature takes missing values
            else:
                assert type(sent) in (int, float)
                assert got == float(sent)
        elif spec.dtype == "string":
            assert type(sent) is str
            assert got == sent
        else:
            assert type(sent) is bool
            assert got is sent


@PROPERTIES
@given(rows(floats=st.floats(allow_nan=False, allow_infinity=False, width=64)))
def test_the_cast_agrees_with_the_signatures_frame_validation(
    table: list[dict[str, Any]],
) -> None:
    """The server's cast (numpy, per column) and Signature.validate (pandas) agree."""
    frame = pd.DataFrame(expected(table)).astype({"plan": "string", "active": bool})
    validated = SIGNATURE.validate(frame)
    cast = CASTER.cast(records_to_columns(wire(table)))
    assert list(validated.columns) == NAMES
    for name in NAMES:
        left = validated[name].to_numpy(dtype=object if name == "plan" else None)
        np.testing.assert_array_equal(left, cast[name])


@pytest.mark.parametrize("values", [["a", 1], ["a", False], ["a", 1.5]])
def test_a_text_column_refuses_numbers_mixed_with_text(values: list[Any]) -> None:
    with pytest.raises(SchemaError, match="plan"):
        CASTER.cast(
            {
                **expected([{"tenure": 1, "charges": 1.0, "plan": "x", "active": True}] * 2),
                "plan": values,
            }
        )


def test_text_keeps_trailing_nul_characters() -> None:
    table = [{"tenure": 1, "charges": 1.0, "plan": plan, "active": True} for plan in ("", "a\x00")]
    assert_same(CASTER.cast(body_columns(wire(table))), table)

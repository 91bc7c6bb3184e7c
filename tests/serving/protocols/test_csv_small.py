"""A small CSV body read without pandas gives exactly pandas' columns, or nothing.

Generated bodies mix every kind of field pandas reads its own way (integers with signs and
leading zeros or past int64, decimals of every length and exponent, ``inf``, NA markers,
booleans, text with spaces, quotes and commas, short and long rows, unknown and repeated
header names); for each, ``small_csv_columns`` must return ``None`` or pandas' columns,
dtype for dtype and bit for bit.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipyard.core.exceptions import InvalidArgumentError
from shipyard.core.schema import ColumnSpec, Signature
from shipyard.serving.protocols.csv_small import SMALL_CSV_BYTES, small_csv_columns
from shipyard.serving.protocols.mlflow import pandas_csv_columns

SIGNATURE = Signature(
    (
        ColumnSpec("tenure", "int64"),
        ColumnSpec("charges", "float64", nullable=True),
        ColumnSpec("plan", "string", nullable=True),
        ColumnSpec("region", "category"),
        ColumnSpec("ratio", "float32"),
        ColumnSpec("active", "bool"),
    )
)
NUMERIC = ["tenure", "charges", "ratio"]
TEXT_NAMES = ["plan", "region"]
NA_MARKERS = ["", "NA", "N/A", "NULL", "null", "nan", "NaN", "-nan", "None", "<NA>", "#N/A"]

DIGITS = st.text("0123456789", max_size=20)
DECIMALS = st.builds(
    lambda sign, whole, point, fraction, exponent: sign + whole + point + fraction + exponent,
    st.sampled_from(["", "-", "+"]),
    DIGITS,
    st.sampled_from(["", "."]),
    DIGITS,
    st.sampled_from(["", "e5", "E-3", "e+22", "e-23", "e300", "e-330", "e"]),
)
INTEGERS = st.integers(-(10**20), 10**20).map(str) | st.integers(0, 999).map(lambda n: f"00{n}")
FLOATS = st.floats().map(repr) | st.floats(allow_nan=False).map(lambda x: f"{x:.17g}")
ODD = st.sampled_from(
    ["inf", "-inf", "Infinity", "1.", ".5", "0x10", "1_000", " 7", "7 ", "True", "false", "TRUE"]
)
TEXT = st.text("abcxyz019 ,.-'\"e", max_size=8)
FIELDS = INTEGERS | DECIMALS | FLOATS | ODD | st.sampled_from(NA_MARKERS) | TEXT


PLAIN_NUMBERS = (
    st.integers(-(10**12), 10**12).map(str)
    | st.integers(-(10**9), 10**9).map(lambda n: str(n / 64))
    | st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: f"{x:.6g}")
    | st.sampled_from(NA_MARKERS)
)
PLAIN_TEXT = st.text("abcxyz019.-", min_size=1, max_size=8) | st.sampled_from(NA_MARKERS)


def cell(name: str, odd: bool) -> st.SearchStrategy[str]:
    if odd:
        return FIELDS
    return PLAIN_NUMBERS if name in NUMERIC else PLAIN_TEXT


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """A CSV body: a header of signature (and odd) names, then rows of fitting or odd fields;
    mostly plain ones, so most bodies are read here and compared."""
    if draw(st.integers(0, 4)) == 0:
        pool = st.sampled_from([*SIGNATURE.columns, "extra", ""])
        names = draw(st.lists(pool, min_size=1, max_size=7))
    else:
        plain = [n for n in SIGNATURE.columns if n != "active"]
        names = draw(st.permutations(plain))[: draw(st.integers(1, len(plain)))]
    width = len(names)
    rows = []
    for _ in range(draw(st.integers(0, 5))):
        cells = [draw(cell(name, draw(st.integers(0, 19)) == 0)) for name in names]
        extra = draw(st.integers(-1, 1)) if draw(st.integers(0, 9)) == 0 else 0
        rows.append(cells[: width + extra] if extra < 0 else cells + ["9"] * extra)
    out = io.StringIO()
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_NONNUMERIC, csv.QUOTE_ALL]))
    writer = csv.writer(out, lineterminator=draw(st.sampled_from(["\n", "\r\n"])), quoting=quoting)
    raw = draw(st.integers(0, 4)) > 0
    if raw:
        out.write(",".join(names) + "\n")
    else:
        writer.writerow(names)
    for row in rows:
        if raw:
            out.write(",".join(row) + "\n")  # as pandas writes: no quotes unless needed
        else:
            writer.writerow(row)
    return out.getvalue().encode()


def _same(ours: np.ndarray, theirs: np.ndarray) -> bool:
    if ours.dtype != theirs.dtype or ours.shape != theirs.shape:
        return False
    if ours.dtype.kind == "f":
        return bool(
            np.array_equal(ours, theirs, equal_nan=True)
            and np.array_equal(np.signbit(ours), np.signbit(theirs))
        )
    return all(
        (isinstance(a, float) and math.isnan(a) and isinstance(b, float) and math.isnan(b))
        or (type(a) is type(b) and a == b)
        for a, b in zip(ours.tolist(), theirs.tolist(), strict=True)
    )


def assert_as_pandas(body: bytes) -> dict[str, Any] | None:
    ours = small_csv_columns(body, SIGNATURE)
    try:
        theirs = pandas_csv_columns(body, SIGNATURE)
    except InvalidArgumentError:
        assert ours is None, body
        return None
    if ours is not None:
        assert list(ours) == list(theirs), body
        for name in ours:
            assert _same(ours[name], np.asarray(theirs[name])), (body, name, ours, theirs)
    return ours


@settings(max_examples=600, deadline=None)
@given(bodies())
def test_a_small_body_reads_as_pandas_reads_it_or_not_at_all(body: bytes) -> None:
    assert_as_pandas(body)


def test_plain_bodies_are_read_here() -> None:
    frame = pd.DataFrame(
        {
            "tenure": [13, 0, -4],
            "charges": [65.91, None, 1e-3],
            "plan": ["basic", None, "pro plus"],
            "region": ["east", "NA", "west"],
            "ratio": [0.5, 2.0, 7.0],
        }
    )
    body = frame.to_csv(index=False).encode()
    columns = assert_as_pandas(body)
    assert columns is not None
    assert columns["tenure"].dtype == np.int64
    assert columns["ratio"].dtype == np.float64
    assert math.isnan(columns["charges"][1])
    assert math.isnan(columns["region"][1])  # pandas' NA marker, even in a text column


@pytest.mark.parametrize(
    "body",
    [
        b"tenure,active\n1,True\n",  # a boolean column: pandas reads several spellings
        b'tenure,plan\n1,"a,b"\n',  # a quote
        b"tenure,plan\n1, b\n",  # surrounding space
        b"tenure\n123456789012345678901\n",  # past int64
        b"charges\n0.1234567890123456\n",  # 16 significant digits
        b"tenure,plan\n1,a,b\n",  # a longer row
        b"tenure,tenure\n1,2\n",  # a repeated name
        b"tenure\n",  # no row
        b"\xef\xbb\xbftenure\n1\n",  # a byte-order mark
        b"tenure\n" + b"1\n" * (SMALL_CSV_BYTES // 2),  # big: pandas is faster
    ],
)
def test_anything_else_is_left_to_pandas(body: bytes) -> None:
    assert small_csv_columns(body, SIGNATURE) is None

"""A small CSV body read without pandas, exactly as ``pandas.read_csv`` reads it.

MLflow's scoring protocol reads a ``text/csv`` body with ``pandas.read_csv``, and so does
``/invocations`` here (:func:`shipyard.serving.protocols.mlflow.csv_columns`): the same
columns, dtypes and errors. For a one-row body that costs ~1 ms of the event loop, three
hundred times a JSON body's parse. :func:`small_csv_columns` reads the bodies whose reading
is unambiguous with the standard library's ``csv`` module instead (~20 µs a row), and
returns ``None`` for anything else, which pandas then reads as before:

- at most :data:`SMALL_CSV_BYTES`, UTF-8 without a byte-order mark, no quote character, no
  carriage return and no NUL;
- a header naming signature columns, each once, and at least one row, every row with one
  field per header column (pandas shifts a longer row into its index, fills a shorter one);
- no field with surrounding whitespace; a missing value is an empty field or one of pandas'
  NA markers (``NA``, ``null``, ``nan``...), NaN in the column as pandas puts it;
- text columns (``string``, ``category``: read as text, as ``csv_columns`` asks pandas to)
  as object arrays of ``str`` (NaN where missing);
- numeric columns whose fields are all plain integers of at most 18 digits (``int64``, as
  pandas infers them), else plain decimals (``-12.5``, ``3e-4``, ``7``) with at most 15
  significant digits and a decimal exponent within ±22, or missing (``float64``): within
  those bounds pandas' parser, like Python's ``float``, rounds once, so both give the same
  double;
- no column of another dtype (booleans: pandas reads several spellings).

``tests/serving/protocols/test_codec_properties.py`` checks on generated bodies that the
result is ``None`` or equal to pandas' columns, dtype for dtype and value for value.
"""

from __future__ import annotations

import codecs
import csv
import importlib
import io
import math
import re

import numpy as np

from shipyard.core.schema import ColumnSpec, Signature

__all__ = ["SMALL_CSV_BYTES", "small_csv_columns"]

#: Bodies up to this size are read here: about 120 rows, where the loop still beats pandas
#: (bench/csv_bench.py: 43 µs against 1.0 ms for one row, 0.7 ms against 1.2 ms for 100).
SMALL_CSV_BYTES = 8 * 1024

_TEXT_DTYPES = ("string", "category")
_INTEGER = re.compile(r"-?[0-9]{1,18}")
_NEGATIVE_ZERO = re.compile(r"-0+")
_DECIMAL = re.compile(r"-?([0-9]*)(?:\.([0-9]*))?(?:[eE]([-+]?[0-9]{1,3}))?")
_SIGNIFICANT = 15
_EXACT_POWERS = 22  # 10**22 is the largest power of ten a double holds exactly
_UNSAFE = ('"', "\r", "\x00")


def _na_markers() -> frozenset[str]:
    """The fields pandas reads as missing by default (``na_values``)."""
    parsers = importlib.import_module("pandas._libs.parsers")  # where pandas keeps them
    return frozenset(str(marker) for marker in parsers.STR_NA_VALUES) | {""}


_NA = _na_markers()


def small_csv_columns(body: bytes, signature: Signature) -> dict[str, np.ndarray] | None:
    """The columns of ``body`` as ``pandas.read_csv`` gives them (text columns read as
    text), or ``None`` when the body is not one this module reads (see the module doc)."""
    if len(body) > SMALL_CSV_BYTES or body.startswith(codecs.BOM_UTF8):
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(mark in text for mark in _UNSAFE):
        return None
    try:
        records = [record for record in csv.reader(io.StringIO(text)) if record]
    except csv.Error:
        return None
    if len(records) < 2:
        return None
    header, rows = records[0], records[1:]
    specs = {spec.name: spec for spec in signature.inputs}
    width = len(header)
    if len(set(header)) != width or any(name not in specs for name in header):
        return None
    if any(len(row) != width for row in rows):
        return None
    columns: dict[str, np.ndarray] = {}
    for index, name in enumerate(header):
        values = [row[index] for row in rows]
        if any(value != value.strip() for value in values):
            return None
        column = _column(values, specs[name])
        if column is None:
            return None
        columns[name] = column
    return columns


def _column(values: list[str], spec: ColumnSpec) -> np.ndarray | None:
    """One column as pandas infers it from ``values``, or None."""
    missing = [value in _NA for value in values]
    if spec.dtype in _TEXT_DTYPES:
        column = np.empty(len(values), dtype=object)
        column[:] = values
        if any(missing):
            column[np.array(missing)] = np.nan
        return column
    if not spec.is_numeric:
        return None
    present = [value for value, absent in zip(values, missing, strict=True) if not absent]
    if any(_NEGATIVE_ZERO.fullmatch(value) for value in present):
        return None  # pandas reads "-0" as 0.0 or -0.0 depending on the other fields
    if len(present) == len(values) and all(_INTEGER.fullmatch(value) for value in values):
        return np.array([int(value) for value in values], dtype=np.int64)
    if not all(_exact_decimal(value) for value in present):
        return None  # text, or a number only pandas should round
    return np.array(
        [
            math.nan if absent else float(value)
            for value, absent in zip(values, missing, strict=True)
        ],
        dtype=np.float64,
    )


def _exact_decimal(value: str) -> bool:
    """A plain decimal whose double both pandas and ``float`` round once, the same way."""
    match = _DECIMAL.fullmatch(value)
    if match is None:
        return False
    whole, fraction, exponent = match.group(1), match.group(2) or "", match.group(3)
    if not whole and not fraction:
        return False  # "-", ".", "e5"
    if match.group(2) is not None and (not whole or not fraction):
        return False  # "1." and ".5": left to pandas
    digits = (whole + fraction).lstrip("0")
    if len(digits) > _SIGNIFICANT:
        return False
    scale = (int(exponent) if exponent else 0) - len(fraction)
    return -_EXACT_POWERS <= scale <= _EXACT_POWERS

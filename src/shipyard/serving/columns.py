"""Request rows to validated columns, and columns to what a model takes — without pandas.

Protocols hand the core *columns*: a mapping of column name to values (a list from JSON or
a 1-D array from a binary tensor). :class:`ColumnCaster` checks them against a signature
and casts each to one 1-D numpy array of the signature's dtype, in signature order, with
the same rules as :meth:`shipyard.core.schema.Signature.validate` (integers into a float
column, integral floats into an integer one, nulls only where the signature allows them), but
per column on numpy arrays. Every failure is a :class:`SchemaError` naming the column.

Request shapes shared by the JSON protocols are parsed here too: records
(``[{"col": v}, ...]``), split (``{"columns": [...], "data": [[...]]}``) and positional
rows (``[[v, ...], ...]`` in signature order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from shipyard.core.exceptions import InvalidArgumentError, SchemaError
from shipyard.core.schema import (
    ColumnSpec,
    Signature,
    beyond_float,
    boolean_error,
    missing_values_error,
    non_finite_error,
    out_of_range_error,
)

_INTEGER_PREFIXES = ("int", "uint")
_TEXT_DTYPES = ("string", "category")
_NUMBER_TYPES = (float, int)


class MatrixColumns(dict[str, np.ndarray]):
    """Columns that are the columns of one 2-D float matrix (kept as :attr:`matrix`).

    Batches of these concatenate row blocks and feed estimators the matrix itself.
    """

    def __init__(self, matrix: np.ndarray, names: Sequence[str]) -> None:
        super().__init__(zip(names, matrix.T, strict=True))
        self.matrix = matrix


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


# -- request shapes -------------------------------------------------------------------------


def records_to_columns(records: Any) -> dict[str, list[Any]]:
    """``[{"col": v, ...}, ...]`` to columns; a key missing from a row counts as null."""
    if not isinstance(records, list) or not records:
        raise InvalidArgumentError(
            'expected a non-empty list of row objects such as [{"col": 1.5}] '
            f"but got {_describe(records)}"
        )
    names: dict[str, None] = {}
    for index, row in enumerate(records):
        if not isinstance(row, dict):
            raise InvalidArgumentError(
                f"row {index} must be an object mapping column names to values "
                f"but got {_describe(row)}"
            )
        if index == 0 or row.keys() != names.keys():
            names.update(dict.fromkeys(row))
    return {name: [row.get(name) for row in records] for name in names}


def split_to_columns(split: Any) -> dict[str, list[Any]]:
    """``{"columns": [...], "data": [[...], ...]}`` (pandas orient split) to columns."""
    if not isinstance(split, dict) or "data" not in split or "columns" not in split:
        raise InvalidArgumentError(
            'expected {"columns": [names...], "data": [[values...], ...]} '
            f"but got {_describe(split)}"
        )
    names = split["columns"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidArgumentError(f'"columns" must be a list of names but got {names!r:.200}')
    return rows_to_columns(split["data"], names)


def rows_to_columns(rows: Any, names: Sequence[str]) -> dict[str, list[Any]]:
    """Positional rows (``[[v, ...], ...]``) to columns called ``names``, in that order."""
    if not isinstance(rows, list) or not rows:
        raise InvalidArgumentError(
            f"expected a non-empty list of rows (lists of values) but got {_describe(rows)}"
        )
    width = len(names)
    for index, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            raise InvalidArgumentError(
                f"row {index} must be a list of {width} values ({', '.join(names)}) "
                f"but got {_describe(row)}"
            )
    return {name: [row[i] for row in rows] for i, name in enumerate(names)}


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    if isinstance(value, dict):
        return f"an object with keys {sorted(value)[:10]}"
    return f"{type(value).__name__} {value!r:.80}"


# -- validation -----------------------------------------------------------------------------


class ColumnCaster:
    """Checks and casts request columns against a signature (or passes them through)."""

    def __init__(self, signature: Signature | None) -> None:
        self.signature = signature if signature is not None and signature.inputs else None
        self._specs = {c.name: c for c in self.signature.inputs} if self.signature else {}
        self._order = list(self._specs)
        inputs = self.signature.inputs if self.signature else []
        # Records of plain numbers go straight into one float64 matrix when every column is
        # a float64 column (anything unusual takes the general path, with its exact errors).
        self._float_matrix = bool(inputs) and all(c.dtype == "float64" for c in inputs)

    def cast_records(self, records: list[Any]) -> MatrixColumns | None:
        """Records of numbers to one matrix of columns, or ``None`` to take :meth:`cast`.

        Applies when every signature column is float64 and every row has exactly the
        signature's keys with ``int`` / ``float`` values; the answer equals
        ``cast(records_to_columns(records))``, without a Python list per column. Missing
        and non-finite values (NaN, ±inf) take the general path, which says where they may be.
        """
        if not self._float_matrix or not records:
            return None
        order = self._order
        width = len(order)
        number = _NUMBER_TYPES
        rows: list[list[Any]] = []
        try:
            for row in records:
                if type(row) is not dict or len(row) != width:
                    return None
                values = [row[name] for name in order]
                for value in values:
                    if type(value) not in number:
                        return None
                rows.append(values)
            matrix = np.array(rows, dtype=np.float64)
        except (KeyError, OverflowError, TypeError, ValueError):
            return None
        if not np.isfinite(matrix).all():
            return None  # cast() checks which columns may hold NaN / inf, and names the others
        return MatrixColumns(matrix, order)

    def cast(self, columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """One 1-D array per signature column, in signature order, all of the same length."""
        if not isinstance(columns, Mapping) or not columns:
            raise SchemaError("expected at least one input column but got none")
        if self._float_matrix:
            matrix = self._float_columns(columns)
            if matrix is not None:
                return matrix
        if self.signature is None:
            out = {
                str(name): _one_dimensional(str(name), values) for name, values in columns.items()
            }
        else:
            if len(columns) != len(self._order) or any(n not in columns for n in self._order):
                self._check_names(columns)
            out = {name: _cast(spec, columns[name]) for name, spec in self._specs.items()}
        lengths = {name: len(values) for name, values in out.items()}
        first = next(iter(lengths.values()))
        if first == 0:
            raise SchemaError("expected at least one row but the input has none")
        for name, length in lengths.items():
            if length != first:
                raise SchemaError(
                    f"column {name!r} has {length} value(s) but {next(iter(lengths))!r} has "
                    f"{first}; every column needs one value per row",
                    column=name,
                )
        return out

    def _float_columns(self, columns: Mapping[str, Any]) -> MatrixColumns | None:
        """Columns of plain numbers (lists of ``int`` / ``float``, or float64 arrays) as one
        matrix, or ``None``: anything else (a column missing or extra, a null, text,
        booleans, lengths that differ) takes the general cast and its exact errors. When it
        applies, the answer equals the general cast's, in one step instead of one per column.
        """
        order = self._order
        if len(columns) != len(order):
            return None
        if type(columns) is MatrixColumns and list(columns) == order:
            matrix = columns.matrix
            if matrix.dtype != np.float64 or not len(matrix) or not np.isfinite(matrix).all():
                return None
            return columns
        try:
            values = [columns[name] for name in order]
            if all(type(v) is np.ndarray and v.dtype == np.float64 and v.ndim == 1 for v in values):
                matrix = np.column_stack(values)
            elif all(type(v) is list for v in values):
                number = _NUMBER_TYPES
                if any(type(x) not in number for column in values for x in column):
                    return None
                matrix = np.array(values, dtype=np.float64).T
            else:
                return None
        except (KeyError, OverflowError, ValueError):
            return None
        if not matrix.shape[0] or not np.isfinite(matrix).all():
            return None  # cast() says there are no rows, or checks where NaN / inf are allowed
        return MatrixColumns(np.ascontiguousarray(matrix), order)

    def _check_names(self, columns: Mapping[str, Any]) -> None:
        """Raise the signature's own missing / unknown column error (rows do not matter)."""
        assert self.signature is not None  # noqa: S101 - narrows the type; the caller guarantees it
        self.signature.validate(pd.DataFrame(columns=[str(name) for name in columns]))


def _one_dimensional(name: str, values: Any) -> np.ndarray:
    try:
        array = values if isinstance(values, np.ndarray) else np.asarray(values)
    except (ValueError, OverflowError) as exc:  # ragged lists, or nested beyond 64 levels
        raise SchemaError(
            f"column {name!r} expects one value per row (shape [n]) but got nested lists "
            "numpy cannot read as an array; send one number or text per row",
            column=name,
        ) from exc
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise SchemaError(
            f"column {name!r} expects one value per row (shape [n]) but got shape "
            f"{list(array.shape)}",
            column=name,
        )
    return array


def _cast(spec: ColumnSpec, values: Any) -> np.ndarray:
    if spec.is_numeric and type(values) is list and bool in set(map(type, values)):
        raise boolean_error(spec)  # numpy would read [true, 2] as [1, 2]
    if type(values) is list and spec.dtype in _TEXT_DTYPES:
        # as objects: numpy would turn ["a", 1] into ["a", "1"] and drop trailing NULs
        values = np.array(values, dtype=object)
    array = _one_dimensional(spec.name, values)
    if array.size == 0:  # no rows: cast() says so, whatever the dtype
        return array
    if spec.is_numeric:
        return _cast_numeric(spec, array)
    if spec.dtype in _TEXT_DTYPES:
        return _cast_text(spec, array)
    if spec.dtype == "bool":
        if array.dtype.kind != "b":
            if (
                array.dtype.kind == "O"
                and spec.nullable
                and all(_is_null(v) or isinstance(v, bool | np.bool_) for v in array)
            ):
                return array
            raise _wrong_type(spec, array)
        return array
    if spec.dtype == "datetime":
        try:
            return np.asarray(pd.to_datetime(array).to_numpy())
        except (TypeError, ValueError, OverflowError, pd.errors.OutOfBoundsDatetime) as exc:
            raise _wrong_type(spec, array) from exc
    return array


def _cast_numeric(spec: ColumnSpec, array: np.ndarray) -> np.ndarray:
    """``array`` as ``spec``'s dtype: every value in range, finite, and whole for an integer
    column; ±inf counts as a missing value (NaN) where the signature takes them."""
    kind = array.dtype.kind
    if kind == "b":
        raise boolean_error(spec)
    if kind == "O":  # nulls (None) or mixed values: numbers only, None becomes NaN
        if any(isinstance(v, bool | np.bool_) for v in array):
            raise boolean_error(spec)
        if any(not (_is_null(v) or isinstance(v, int | float | np.number)) for v in array):
            raise _wrong_type(spec, array)
        try:
            array = array.astype("float64")
        except OverflowError as exc:  # an integer beyond any float (e.g. a 400-digit literal)
            raise out_of_range_error(spec, beyond_float(array)) from exc
        kind = "f"
    elif kind not in "iuf":
        raise _wrong_type(spec, array)
    integer = spec.dtype.startswith(_INTEGER_PREFIXES)
    target = np.dtype(spec.dtype)
    if kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            array = _missing(spec, array, finite)
            if integer:  # an integer column with nulls stays float64, as in validate()
                present = array[~np.isnan(array)]
                _check_range(spec, present, target)
                _check_integral(spec, present)
                return array
        if integer:
            _check_range(spec, array, target)
            _check_integral(spec, array)
    elif integer and array.dtype != target:
        _check_range(spec, array, target)
    if array.dtype == target:
        return array
    out = array.astype(target)
    if kind == "f" and target.kind == "f" and not np.isfinite(out).all():  # e.g. 1e300 to float32
        bad = array[~np.isfinite(out)][0]
        raise out_of_range_error(spec, bad.item())
    return out


def _missing(spec: ColumnSpec, array: np.ndarray, finite: np.ndarray) -> np.ndarray:
    """``array`` with ±inf as NaN, when ``spec`` takes missing values; else the error."""
    infinite = ~finite & ~np.isnan(array)
    if not spec.nullable:
        if infinite.any():
            raise non_finite_error(spec, int(infinite.sum()), array[infinite][0].item())
        raise missing_values_error(spec, int((~finite).sum()))
    return np.where(infinite, np.nan, array) if infinite.any() else array


def _check_range(spec: ColumnSpec, array: np.ndarray, target: np.dtype[Any]) -> None:
    """Refuse values an integer ``target`` cannot hold (a cast would wrap them around)."""
    if not array.size:
        return
    info = np.iinfo(target)
    if array.dtype.kind == "f":  # min - 1 and max + 1 as floats: for int64 both round to
        # ±2**63, so a float that an integer beyond the range rounded to is refused too
        outside = (array <= float(int(info.min) - 1)) | (array >= float(int(info.max) + 1))
        if outside.any():
            raise out_of_range_error(spec, array[outside][0].item())
        return
    low, high = array.min(), array.max()
    if low < info.min:
        raise out_of_range_error(spec, low.item())
    if high > info.max:
        raise out_of_range_error(spec, high.item())


def _check_integral(spec: ColumnSpec, array: np.ndarray) -> None:
    if not np.all(np.mod(array, 1) == 0):
        bad = array[np.mod(array, 1) != 0][0]
        raise SchemaError(
            f"column {spec.name!r} expects {spec.dtype} but got fractional values "
            f"(e.g. {bad!r}); send whole numbers for this column",
            column=spec.name,
        )


def _cast_text(spec: ColumnSpec, array: np.ndarray) -> np.ndarray:
    kind = array.dtype.kind
    if kind == "U":
        return array.astype(object)
    if kind == "S":
        return np.array([v.decode("utf-8") for v in array], dtype=object)
    if kind != "O":
        raise _wrong_type(spec, array)
    out = array
    for index, value in enumerate(array):
        if isinstance(value, str):
            continue
        if isinstance(value, bytes):  # BYTES tensors of the binary protocols
            if out is array:
                out = array.copy()
            out[index] = value.decode("utf-8")
        elif _is_null(value):
            if not spec.nullable:
                count = sum(1 for v in array if _is_null(v))
                raise missing_values_error(spec, count, f" (the first at row {index})")
            if out is array:
                out = array.copy()
            out[index] = None
        else:
            raise SchemaError(
                f"column {spec.name!r} expects {spec.dtype} values but got {value!r} "
                f"({type(value).__name__}); send text for this column",
                column=spec.name,
            )
    return out


def _wrong_type(spec: ColumnSpec, array: np.ndarray) -> SchemaError:
    example = next((v for v in array if not _is_null(v)), None)
    if isinstance(example, np.generic):
        example = example.item()
    got = {"U": "string", "S": "bytes", "O": "mixed", "b": "bool"}.get(
        array.dtype.kind, str(array.dtype)
    )
    return SchemaError(
        f"column {spec.name!r} expects {spec.dtype} but got {got} values "
        f"(e.g. {example!r}); send {spec.dtype} values for this column",
        column=spec.name,
    )


# -- batches --------------------------------------------------------------------------------


def concat_columns(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Join the columns of several requests (same names) into one batch."""
    first = parts[0]
    if isinstance(first, MatrixColumns) and all(type(p) is MatrixColumns for p in parts):
        if len(parts) == 1:
            return first
        matrices = [p.matrix for p in parts if isinstance(p, MatrixColumns)]
        return MatrixColumns(np.concatenate(matrices), list(first))
    if len(parts) == 1:
        return dict(first)
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def to_frame(columns: Mapping[str, np.ndarray], signature: Signature | None) -> pd.DataFrame:
    """One DataFrame for a batch, built the cheapest way its dtypes allow.

    All columns of one numeric dtype make a single 2-D block (no per-column copies);
    ``category`` columns become ``pd.Categorical`` with the signature's categories, as
    :meth:`Signature.validate` makes them.
    """
    names = list(columns)
    if isinstance(columns, MatrixColumns):
        return pd.DataFrame(columns.matrix, columns=names, copy=False)
    arrays = list(columns.values())
    first = arrays[0].dtype
    if first.kind in "iuf" and all(a.dtype == first for a in arrays):
        return pd.DataFrame(np.column_stack(arrays), columns=names, copy=False)
    data: dict[str, Any] = dict(columns)
    if signature is not None:
        for spec in signature.inputs:
            if spec.dtype == "category":
                data[spec.name] = pd.Categorical(
                    columns[spec.name], categories=list(spec.categories or ())
                )
    return pd.DataFrame(data, copy=False)


def to_matrix(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """The batch as one 2-D array (columns in order), for estimators fitted on arrays."""
    if isinstance(columns, MatrixColumns):
        return columns.matrix
    arrays = list(columns.values())
    if len({a.dtype for a in arrays}) == 1:
        return np.column_stack(arrays)
    return np.column_stack([a.astype("float64") for a in arrays])

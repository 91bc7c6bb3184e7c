"""Data quality of one window of model inputs, checked against the model's signature.

:func:`check_quality` counts, per column and overall, what would hand a model bad input:
missing values, values that cannot be read as the column's dtype, numbers outside the range
seen in training, categories never seen, fully duplicated rows, and schema changes (columns
gone, added, or arriving with another type than the signature's or the previous window's).
Counts are computed on whole columns with pyarrow and numpy: a million rows of 25 columns
take a fraction of a second.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.core.exceptions import InvalidArgumentError
from shipyard.core.schema import ColumnSpec, Signature
from shipyard.statistics._sources import ColumnSource, TableSource

#: At most this many distinct unseen categories are kept per column as examples.
MAX_UNSEEN_EXAMPLES = 10

Mask = npt.NDArray[np.bool_]
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)
# Text that Arrow casts to a float: decimal and scientific notation, inf and nan.
_NUMBER = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$|^[+-]?(?i:inf|infinity|nan)$"
_BOOL_TEXT = ("true", "false", "1", "0")
_FLOAT_NAMES = {"double": "float64", "float": "float32", "halffloat": "float16"}
_TEXT_NAMES = ("str", "string", "utf8", "large_string", "large_utf8", "string_view")
# Signature dtype kind -> prefixes of the dtypes that cast to it.
_CASTS_TO = {
    "numeric": ("int", "uint", "float", "decimal", "bool"),
    "bool": ("bool",),
    "text": ("string", "category"),
    "datetime": ("datetime", "date"),
}


@dataclass(frozen=True)
class ColumnQuality:
    """What is wrong with one signature column in a window (counts of rows)."""

    column: str
    missing: int
    missing_share: float
    type_violations: int
    out_of_range: int
    unseen: int
    unseen_examples: tuple[Any, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return {**asdict(self), "unseen_examples": [_jsonable(v) for v in self.unseen_examples]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnQuality:
        """The entry :meth:`to_dict` wrote."""
        return cls(
            column=str(data["column"]),
            missing=int(data["missing"]),
            missing_share=float(data["missing_share"]),
            type_violations=int(data["type_violations"]),
            out_of_range=int(data["out_of_range"]),
            unseen=int(data["unseen"]),
            unseen_examples=tuple(data.get("unseen_examples") or ()),
        )


@dataclass(frozen=True)
class TypeChange:
    """A column whose dtype is not the signature's, or not the one of the previous window."""

    column: str
    expected: str
    actual: str
    against: Literal["signature", "previous"]


@dataclass(frozen=True)
class QualityReport:
    """The data quality of one window: per signature column, and for the window as a whole.

    ``dtypes`` holds the dtype of every column of the window; pass it as ``previous_columns``
    when checking the next window to catch columns whose type changed between windows.
    """

    rows: int
    columns: tuple[ColumnQuality, ...]
    duplicates: int
    missing_columns: tuple[str, ...]
    extra_columns: tuple[str, ...]
    changed_types: tuple[TypeChange, ...]
    failing_rows: int
    failing_share: float
    dtypes: Mapping[str, str] = field(default_factory=dict)

    def column(self, name: str) -> ColumnQuality:
        """The entry of one signature column (``KeyError`` for another name)."""
        return {c.column: c for c in self.columns}[name]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (what ``shipyard monitor --json`` prints under ``quality``)."""
        return {
            "rows": self.rows,
            "failing_rows": self.failing_rows,
            "failing_share": self.failing_share,
            "duplicates": self.duplicates,
            "missing_columns": list(self.missing_columns),
            "extra_columns": list(self.extra_columns),
            "changed_types": [asdict(c) for c in self.changed_types],
            "columns": [c.to_dict() for c in self.columns],
            "dtypes": dict(self.dtypes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QualityReport:
        """The report :meth:`to_dict` wrote.

        Raises :class:`InvalidArgumentError` naming the first missing key.
        """
        try:
            return cls(
                rows=int(data["rows"]),
                columns=tuple(ColumnQuality.from_dict(c) for c in data["columns"]),
                duplicates=int(data["duplicates"]),
                missing_columns=tuple(data.get("missing_columns") or ()),
                extra_columns=tuple(data.get("extra_columns") or ()),
                changed_types=tuple(
                    TypeChange(c["column"], c["expected"], c["actual"], c["against"])
                    for c in data.get("changed_types") or ()
                ),
                failing_rows=int(data["failing_rows"]),
                failing_share=float(data["failing_share"]),
                dtypes=dict(data.get("dtypes") or {}),
            )
        except KeyError as exc:
            raise InvalidArgumentError(
                f"the quality report (or one of its columns) lacks the key {exc.args[0]!r}; "
                "pass what QualityReport.to_dict() wrote"
            ) from exc

    def gauges(self) -> dict[str, float]:
        """The window's overall numbers, flat, for Prometheus gauges and alert rules."""
        cells = self.rows * len(self.columns)
        total = {
            kind: float(sum(getattr(c, kind) for c in self.columns))
            for kind in ("missing", "type_violations", "out_of_range", "unseen")
        }
        return {
            "rows": float(self.rows),
            "missing_share": total.pop("missing") / cells if cells else 0.0,
            **total,
            "duplicates": float(self.duplicates),
            "duplicate_share": self.duplicates / self.rows if self.rows else 0.0,
            "failing_rows": float(self.failing_rows),
            "failing_share": self.failing_share,
            "missing_columns": float(len(self.missing_columns)),
            "extra_columns": float(len(self.extra_columns)),
            "changed_types": float(len(self.changed_types)),
        }

    def column_gauges(self) -> dict[str, dict[str, float]]:
        """Per signature column, its counts and ``missing_share``, for gauges and alert rules."""
        return {
            c.column: {k: float(v) for k, v in asdict(c).items() if isinstance(v, int | float)}
            for c in self.columns
        }


def check_quality(
    data: pa.Table | pd.DataFrame | ColumnSource,
    signature: Signature,
    reference_categories: Mapping[str, Collection[Any]] | None = None,
    previous_columns: Mapping[str, str] | None = None,
    *,
    ignore: Collection[str] = (),
) -> QualityReport:
    """Check one window of model inputs against ``signature``.

    ``data`` is a table, a frame, or a :class:`ColumnSource` (read one column at a time;
    its schema gives each column's dtype). Missing values are nulls and NaNs. Categories
    come from the signature, or from ``reference_categories[column]`` when given (it wins).
    ``previous_columns`` maps columns to the dtypes of the previous window (its report's
    ``dtypes``). Columns in ``ignore`` (``prediction``, ``row_id`` ...) are neither extra
    columns nor part of duplicate rows. A row fails when it has a missing value in a
    non-nullable column (an absent column counts as missing in every row), a type
    violation, an out-of-range number or an unseen category; it counts once however many
    problems it has.
    """
    source = _source_of(data)
    rows, present = source.rows, list(source.schema.names)
    ignored, known = set(ignore), set(signature.columns)
    dtypes = {f.name: _canonical(str(f.type)) for f in source.schema}
    chosen = reference_categories or {}
    failing = np.zeros(rows, dtype=bool)
    qualities: list[ColumnQuality] = []
    changed: list[TypeChange] = []
    for spec in signature.inputs:
        if spec.name not in dtypes:
            qualities.append(ColumnQuality(spec.name, rows, 1.0 if rows else 0.0, 0, 0, 0))
            if not spec.nullable:
                failing[:] = True
            continue
        if not _compatible(spec.dtype, dtypes[spec.name]):
            changed.append(TypeChange(spec.name, spec.dtype, dtypes[spec.name], "signature"))
        categories = chosen.get(spec.name, spec.categories)
        quality, bad = _check_column(spec, source.read(spec.name), categories, rows)
        qualities.append(quality)
        failing |= bad
    for name, dtype in dtypes.items():
        before = _canonical((previous_columns or {}).get(name, dtype))
        if name not in ignored and "null" not in (before, dtype) and before != dtype:
            changed.append(TypeChange(name, before, dtype, "previous"))
    failing_rows = int(np.count_nonzero(failing))
    return QualityReport(
        rows=rows,
        columns=tuple(qualities),
        duplicates=_duplicates(source, [n for n in present if n not in ignored]),
        missing_columns=tuple(c for c in signature.columns if c not in dtypes),
        extra_columns=tuple(n for n in present if n not in ignored and n not in known),
        changed_types=tuple(changed),
        failing_rows=failing_rows,
        failing_share=failing_rows / rows if rows else 0.0,
        dtypes=dtypes,
    )


def _source_of(data: pa.Table | pd.DataFrame | ColumnSource) -> ColumnSource:
    if isinstance(data, ColumnSource):
        names = list(data.schema.names)
    elif isinstance(data, pa.Table):
        names = [str(n) for n in data.column_names]
    elif isinstance(data, pd.DataFrame):
        names = [str(n) for n in data.columns]
    else:
        raise InvalidArgumentError(
            f"data must be a pyarrow Table or a pandas DataFrame but got {type(data).__name__}; "
            "wrap arrays with pandas.DataFrame(X, columns=[...])"
        )
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InvalidArgumentError(f"column {dup!r} appears twice in the data; keep one of them")
    if isinstance(data, ColumnSource):
        return data
    if isinstance(data, pd.DataFrame):
        arrays = [arrow_column(data.iloc[:, i]) for i in range(data.shape[1])]
        # a frame without columns still has its rows (each lacks every signature column)
        rows = pa.table({"": pa.nulls(len(data))}).drop_columns([""])
        data = pa.table(dict(zip(names, arrays, strict=True))) if names else rows
    return TableSource(data)


def arrow_column(series: pd.Series) -> pa.ChunkedArray:
    """One pandas column as Arrow (NaN as null); a column mixing numbers and text as text."""
    try:
        array = pa.array(series, from_pandas=True)
    except _ARROW_ERRORS:
        # An object column mixing numbers and text: read every value as text.
        array = pa.array(series.astype("string"), from_pandas=True)
    return array if isinstance(array, pa.ChunkedArray) else pa.chunked_array([array])


def _check_column(
    spec: ColumnSpec, values: pa.ChunkedArray, categories: Collection[Any] | None, rows: int
) -> tuple[ColumnQuality, Mask]:
    """Count one column's problems; also return the mask of its rows that fail."""
    arr = _dense(values)  # a categorical column is read as its values
    dtype = _canonical(str(arr.type))
    kind = _kind(spec.dtype)
    none = np.zeros(rows, dtype=bool)
    if kind == "numeric":
        x, violations = _as_numbers(arr, dtype)
        missing = np.isnan(x) & ~violations
        if spec.dtype.startswith(("int", "uint")):
            info = np.iinfo(spec.dtype)
            violations = violations | (
                ~missing & ((np.floor(x) != x) | (x < info.min) | (x > info.max))
            )
        low = -np.inf if spec.minimum is None else spec.minimum
        high = np.inf if spec.maximum is None else spec.maximum
        out_of_range = ((x < low) | (x > high)) & ~violations
    else:
        missing = _missing_mask(arr)
        violations, out_of_range = _unreadable(arr, spec.dtype, dtype, missing), none
    unseen, examples = none, ()
    if categories is not None:
        unseen = ~missing & ~violations & ~_mask(_is_in(arr, categories))
        if unseen.any():
            found = pc.unique(arr.filter(pa.array(unseen)))
            examples = tuple(found.slice(0, MAX_UNSEEN_EXAMPLES).to_pylist())
    failing = violations | out_of_range | unseen | (none if spec.nullable else missing)
    missed, violated, outside, unknown = (
        int(np.count_nonzero(m)) for m in (missing, violations, out_of_range, unseen)
    )
    share = missed / rows if rows else 0.0
    return ColumnQuality(spec.name, missed, share, violated, outside, unknown, examples), failing


def _as_numbers(arr: pa.Array, dtype: str) -> tuple[npt.NDArray[np.float64], Mask]:
    """The column as float64 (NaN where missing or unreadable) and the mask of unreadable values."""
    if _compatible("float64", dtype):
        return _floats(arr), np.zeros(len(arr), dtype=bool)
    if dtype == "string":
        readable = pc.match_substring_regex(arr, _NUMBER)
        numbers = pc.if_else(readable, arr, pa.scalar(None, arr.type))
        return _floats(numbers), _mask(pc.invert(readable))
    return np.full(len(arr), np.nan), ~_missing_mask(arr)


def _unreadable(arr: pa.Array, expected: str, dtype: str, missing: Mask) -> Mask:
    """Present values of dtype ``dtype`` that cannot be read as a bool or a datetime."""
    kind = _kind(expected)
    if kind in ("text", "any") or _compatible(expected, dtype):
        return np.zeros(len(arr), dtype=bool)
    if kind == "bool" and _compatible("float64", dtype):
        x = _floats(arr)
        bad: Mask = ~missing & (x != 0) & (x != 1)
    elif kind == "bool" and dtype == "string":
        bad = ~missing & ~_mask(pc.is_in(pc.utf8_lower(arr), pa.array(_BOOL_TEXT, arr.type)))
    elif kind == "datetime" and dtype == "string":
        parsed = pd.to_datetime(arr.to_pandas(), errors="coerce", format="ISO8601", utc=True)
        bad = ~missing & np.asarray(parsed.isna(), dtype=bool)
    else:
        bad = ~missing
    return bad


def _is_in(arr: pa.Array, categories: Collection[Any]) -> pa.Array:
    try:
        value_set = pa.array(list(categories))
    except _ARROW_ERRORS:
        value_set = pa.array([str(c) for c in categories])
    if value_set.type != arr.type:
        try:
            value_set = pc.cast(value_set, arr.type)
        except _ARROW_ERRORS:
            # Categories of another type than the data (e.g. numbers against text): compare text.
            arr, value_set = pc.cast(arr, pa.string()), pc.cast(value_set, pa.string())
    return pc.is_in(arr, value_set=value_set)


def _duplicates(source: ColumnSource, names: list[str]) -> int:
    """Rows equal in every column to an earlier row: hashed, then confirmed value by value.

    The first column alone rules out most rows; only the others' values at the rows it
    does not rule out are read.
    """
    rows = source.rows
    if rows < 2 or not names:
        return 0
    # Floats first: their values vary most, so one column alone rules out most rows.
    ordered = sorted(names, key=lambda n: not pa.types.is_floating(source.schema.field(n).type))
    key = _row_key(source.read(ordered[0]))
    hashes = pd.util.hash_array(key)
    maybe = np.flatnonzero(pd.Series(hashes).duplicated(keep=False).to_numpy())
    if len(maybe) == 0:
        return 0
    taken = pa.array(maybe) if len(maybe) < rows else None
    if taken is not None:
        key, hashes = key[maybe], hashes[maybe]
    keys = [key]
    for name in ordered[1:]:
        values = source.read(name)
        keys.append(_row_key(values if taken is None else values.take(taken)))
        del values
    for other in keys[1:]:
        hashes = (hashes * np.uint64(0x100000001B3)) ^ pd.util.hash_array(other)
    codes, _ = pd.factorize(hashes)
    # Codes number hashes by first appearance: a row is a first one when its code is new.
    first = codes > np.maximum.accumulate(np.concatenate(([-1], codes[:-1])))
    repeats = np.flatnonzero(~first)
    partners = np.flatnonzero(first)[codes[repeats]]
    for k in keys:
        same = k[repeats] == k[partners]
        if k.dtype.kind == "f":
            same |= np.isnan(k[repeats]) & np.isnan(k[partners])
        if not same.all():
            # Two different rows share a 64-bit hash (next to never): count exactly instead.
            return int(pd.DataFrame(dict(enumerate(keys))).duplicated().sum())
    return len(repeats)


def _row_key(values: pa.ChunkedArray) -> npt.NDArray[Any]:
    """One column as numbers that are equal exactly when the values are (missing equals missing)."""
    arr = _dense(values)
    if pa.types.is_floating(arr.type):
        x = _floats(arr) + 0.0  # -0.0 becomes 0.0, as it compares equal
        x[np.isnan(x)] = np.nan  # one NaN bit pattern for every missing value
        return x
    try:
        encoded = pc.dictionary_encode(arr)
    except _ARROW_ERRORS:
        encoded = pc.dictionary_encode(pa.array([repr(v) for v in arr.to_pylist()]))
    return np.asarray(pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False))


def _dense(values: pa.ChunkedArray) -> pa.Array:
    if pa.types.is_dictionary(values.type):
        values = pc.cast(values, values.type.value_type)
    return values.combine_chunks()


def _floats(arr: pa.Array) -> npt.NDArray[np.float64]:
    """As float64 with NaN for nulls."""
    return np.asarray(pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _mask(flags: pa.Array) -> Mask:
    """Arrow booleans as a numpy mask, null counting as False."""
    return np.asarray(pc.fill_null(flags, False).to_numpy(zero_copy_only=False), dtype=bool)


def _missing_mask(arr: pa.Array) -> Mask:
    if pa.types.is_floating(arr.type):
        return np.isnan(_floats(arr))
    return _mask(arr.is_null()) if arr.null_count else np.zeros(len(arr), dtype=bool)


def _kind(dtype: str) -> str:
    """How a signature dtype is checked: numeric, bool, datetime, text or any."""
    if dtype.startswith(("int", "uint", "float")):
        return "numeric"
    if dtype.startswith("datetime"):
        return "datetime"
    return {"bool": "bool", "string": "text", "category": "text"}.get(dtype, "any")


def _compatible(expected: str, actual: str) -> bool:
    """Whether data of dtype ``actual`` casts to the signature dtype ``expected``."""
    allowed = _CASTS_TO.get(_kind(expected))
    return allowed is None or actual == "null" or actual.startswith(allowed)


def _canonical(dtype: str) -> str:
    """A dtype name of Arrow, pandas or numpy in the signature's words: float64, string..."""
    if dtype in _FLOAT_NAMES or dtype in _TEXT_NAMES:
        return _FLOAT_NAMES.get(dtype, "string")
    if dtype.startswith("dictionary"):
        return "category"
    if dtype.startswith(("timestamp", "datetime")):
        return "datetime"
    return {"boolean": "bool"}.get(dtype, "date" if dtype.startswith("date") else dtype)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value if value is None or isinstance(value, str | int | float) else str(value)

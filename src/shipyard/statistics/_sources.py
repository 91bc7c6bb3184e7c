"""Where a dataset's columns come from, read one column at a time.

A :class:`ColumnSource` hides whether rows sit in an Arrow table, a pandas frame or
Parquet files; statistics ask it for one column, turn that column into a sorted
numpy sample (numeric) or category counts (categorical) and let it go, so memory
holds a couple of columns however wide the dataset is.

Missing values are dropped as Evidently 0.7 drops them before a drift test
(``evidently/legacy/calculations/data_drift.py``, ``get_one_column_drift``:
``replace([-np.inf, np.inf], np.nan).dropna()``): nulls, NaN and ±inf.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shipyard.core.exceptions import DataSourceError, InvalidArgumentError, SchemaError

NUMERIC = "numeric"
CATEGORICAL = "categorical"

Data: TypeAlias = pa.Table | pd.DataFrame | str | Path | Sequence[str | Path]


class ColumnSource(ABC):
    """A dataset whose columns are read one at a time."""

    @property
    @abstractmethod
    def rows(self) -> int:
        """Number of rows."""

    @property
    @abstractmethod
    def schema(self) -> pa.Schema:
        """Names and Arrow types of the columns."""

    @abstractmethod
    def read(self, name: str) -> pa.ChunkedArray:
        """The whole column ``name`` (string columns may come dictionary-encoded)."""

    def field(self, name: str, side: str) -> pa.Field:
        """The field ``name``; :class:`SchemaError` naming ``side`` when it is absent."""
        index = self.schema.get_field_index(name)
        if index < 0:
            known = ", ".join(self.schema.names[:20])
            raise SchemaError(
                f"Column {name!r} is not in the {side} data (it has: {known}); "
                f"add it to the {side} data or leave it out with columns=[...]",
                column=name,
            )
        return self.schema.field(index)


class TableSource(ColumnSource):
    """Columns of an in-memory Arrow table."""

    def __init__(self, table: pa.Table) -> None:
        self._table = table

    @property
    def rows(self) -> int:
        """Number of rows of the table."""
        return int(self._table.num_rows)

    @property
    def schema(self) -> pa.Schema:
        """The table's schema."""
        return self._table.schema

    def read(self, name: str) -> pa.ChunkedArray:
        """The column as the table holds it."""
        return self._table.column(name)


class ParquetSource(ColumnSource):
    """Columns of one or more Parquet files, read from disk one column at a time."""

    def __init__(self, paths: Sequence[Path]) -> None:
        if not paths:
            raise InvalidArgumentError(
                "A Parquet source needs at least one file but got none; "
                "pass a file, a folder of *.parquet files or a list of files"
            )
        self._paths = list(paths)
        try:
            self._schema = pq.read_schema(self._paths[0])
            self._rows = int(sum(pq.read_metadata(p).num_rows for p in self._paths))
        except (OSError, pa.ArrowException) as exc:
            raise DataSourceError(f"Cannot read Parquet metadata of {self._paths}: {exc}") from exc

    @property
    def rows(self) -> int:
        """Number of rows over all files (from the footers, nothing else is read)."""
        return self._rows

    @property
    def schema(self) -> pa.Schema:
        """The schema of the first file."""
        return self._schema

    def read(self, name: str) -> pa.ChunkedArray:
        """Read the column from every file; strings come dictionary-encoded (cheap to count)."""
        field = self.field(name, "Parquet")
        as_dictionary = [name] if _is_string(field.type) else None
        chunks: list[pa.Array] = []
        for path in self._paths:
            try:
                table = pq.ParquetFile(path, read_dictionary=as_dictionary).read(columns=[name])
            except (OSError, pa.ArrowException) as exc:
                raise DataSourceError(f"Cannot read column {name!r} of {path}: {exc}") from exc
            if table.num_columns != 1:
                raise SchemaError(f"Column {name!r} is missing from {path}", column=name)
            chunks.extend(table.column(0).chunks)
        return pa.chunked_array(chunks, type=chunks[0].type if chunks else field.type)


def as_column_source(data: Data | ColumnSource) -> ColumnSource:
    """Wrap a table, a pandas frame, a Parquet path (file or folder) or a list of paths."""
    if isinstance(data, ColumnSource):
        return data
    if isinstance(data, pa.Table):
        return TableSource(data)
    if isinstance(data, pd.DataFrame):
        try:
            return TableSource(pa.Table.from_pandas(data, preserve_index=False))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidArgumentError(
                f"Cannot convert the pandas frame to Arrow ({exc}); give each column one type"
            ) from exc
    if isinstance(data, str | Path):
        return ParquetSource(_parquet_files(Path(data)))
    if isinstance(data, Sequence) and all(isinstance(p, str | Path) for p in data):
        files: list[Path] = []
        for item in data:
            files.extend(_parquet_files(Path(item)))
        return ParquetSource(files)
    raise InvalidArgumentError(
        "Data must be a pyarrow.Table, a pandas.DataFrame, a Parquet path or a list of paths "
        f"(or a DatasetProfile where a profile is accepted) but got {type(data).__name__}"
    )


def _parquet_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(path.glob("*.parquet"))
        if not files:
            raise DataSourceError(f"Folder {path} holds no *.parquet file")
        return files
    if not path.exists():
        raise DataSourceError(f"Parquet file {path} does not exist")
    return [path]


def _is_string(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def value_type(kind: pa.DataType) -> pa.DataType:
    """The type of the values (the dictionary's value type for a dictionary column)."""
    return kind.value_type if pa.types.is_dictionary(kind) else kind


def is_numeric_type(kind: pa.DataType) -> bool:
    """Integers, floats and decimals (not booleans)."""
    kind = value_type(kind)
    return bool(
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
    )


def infer_kind(kind: pa.DataType) -> str | None:
    """``numeric`` for numbers, ``categorical`` for strings/dictionaries/booleans, else None."""
    if pa.types.is_dictionary(kind):
        return CATEGORICAL
    if is_numeric_type(kind):
        return NUMERIC
    if _is_string(kind) or pa.types.is_boolean(kind):
        return CATEGORICAL
    return None


def can_be_categorical(kind: pa.DataType) -> bool:
    """Whether values of this type can be counted as categories."""
    return infer_kind(kind) is not None


def finite_values(column: pa.ChunkedArray) -> np.ndarray:
    """The column's finite values as float64, in row order (nulls, NaN and ±inf dropped)."""
    if pa.types.is_decimal(column.type):
        column = pc.cast(column, pa.float64())
    values = np.asarray(column.to_numpy(), dtype=np.float64)
    finite = np.isfinite(values)
    return values if finite.all() else values[finite]


@dataclass(frozen=True)
class CategoryCounts:
    """Counts of the distinct values of a column, nulls (and NaN/±inf) left out."""

    values: pa.Array
    counts: np.ndarray

    @property
    def total(self) -> int:
        """Number of counted values."""
        return int(self.counts.sum())

    def as_dict(self) -> dict[str, int]:
        """The counts keyed by :func:`category_key` of each value."""
        keys = [category_key(v) for v in self.values.to_pylist()]
        return dict(zip(keys, (int(c) for c in self.counts), strict=True))


def category_counts(column: pa.ChunkedArray) -> CategoryCounts:
    """Count each distinct value (hash-based in Arrow; dictionary columns count their indices)."""
    counted = pc.value_counts(column)
    values = counted.field("values")
    counts = np.asarray(counted.field("counts").to_numpy(), dtype=np.int64)
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    keep = pc.is_valid(values)
    if pa.types.is_floating(values.type):
        keep = pc.and_(keep, pc.is_finite(values))
    if pa.types.is_decimal(values.type):
        values = pc.cast(values, pa.float64())
    mask = np.asarray(keep.to_numpy(zero_copy_only=False), dtype=bool)
    if not mask.all():
        values = values.filter(pa.array(mask))
        counts = counts[mask]
    if pa.types.is_floating(values.type) and len(values):
        # -0.0 and 0.0 hash apart in Arrow but are one value for pandas (and Evidently).
        floats = np.asarray(values.to_numpy(), dtype=np.float64) + 0.0
        unique, inverse = np.unique(floats, return_inverse=True)
        if len(unique) < len(floats):
            counts = np.bincount(inverse, weights=counts).astype(np.int64)
            floats = unique
        values = pa.array(floats)
    return CategoryCounts(values=values, counts=counts)


def category_key(value: Any) -> str:
    """The text a category is stored under in profiles: strings as they are, others as ``str``."""
    return value if isinstance(value, str) else str(value)


def align_counts(
    reference: CategoryCounts, current: CategoryCounts
) -> tuple[np.ndarray, np.ndarray]:
    """Counts of both sides over the union of their values, in ascending value order.

    The order matters only to the Z-test, which sets the smallest value against the
    rest as Evidently does (``sorted(keys)[0]``).
    """
    ref_values, cur_values = reference.values, current.values
    if ref_values.type != cur_values.type:
        try:
            cur_values = pc.cast(cur_values, ref_values.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SchemaError(
                f"Current values of type {current.values.type} cannot be compared with "
                f"reference values of type {reference.values.type}: {exc}"
            ) from exc
    union = pc.unique(pa.concat_arrays([ref_values, cur_values]))
    union = union.take(pc.sort_indices(union))
    ref_at = np.asarray(pc.index_in(ref_values, value_set=union).to_numpy(), dtype=np.int64)
    cur_at = np.asarray(pc.index_in(cur_values, value_set=union).to_numpy(), dtype=np.int64)
    ref = np.zeros(len(union), dtype=np.int64)
    cur = np.zeros(len(union), dtype=np.int64)
    np.add.at(ref, ref_at, reference.counts)
    np.add.at(cur, cur_at, current.counts)
    return ref, cur


def align_keyed(
    reference: dict[str, int], current: dict[str, int], numeric_order: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`align_counts` for counts keyed by text (profiles)."""
    keys = set(reference) | set(current)
    if numeric_order:
        try:
            ordered = sorted(keys, key=float)
        except ValueError:
            ordered = sorted(keys)
    else:
        ordered = sorted(keys)
    ref = np.array([reference.get(k, 0) for k in ordered], dtype=np.int64)
    cur = np.array([current.get(k, 0) for k in ordered], dtype=np.int64)
    return ref, cur

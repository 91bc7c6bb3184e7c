"""A window's columns as the statistics take them, computed on Arrow columns.

Each rule is the one the monitor applied to pandas frames before it read Arrow: a numeric
input carried as text (JSON values of the log, a text column of a file) is read with
``pandas.to_numeric`` and unreadable values become missing; a feature is tested when it has
at least one value (nulls and NaN are missing).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.core.exceptions import SchemaError
from shipyard.core.schema import Signature
from shipyard.monitoring.parquet import ParquetRows
from shipyard.statistics import ColumnSource


def as_numbers(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A numeric input as numbers: text parsed (unreadable text missing), other types kept.

    Booleans with nulls and all-null columns become float64, as ``pandas.to_numeric`` reads
    the objects pandas holds them as.
    """
    kind = column.type
    if is_text(kind):
        text = decoded(column).to_pandas().astype(object)
        values = pd.to_numeric(text, errors="coerce")
        return pa.chunked_array([pa.array(values, from_pandas=True)])
    if pa.types.is_null(kind) or (pa.types.is_boolean(kind) and column.null_count):
        return pc.cast(column, pa.float64())
    return column


def has_value(column: pa.ChunkedArray) -> bool:
    """Whether the column holds at least one value (not null, not NaN)."""
    if len(column) - column.null_count == 0:
        return False
    values = decoded(column)
    if pa.types.is_floating(values.type):
        return bool(pc.any(pc.invert(pc.is_nan(values))).as_py())
    return True


def inputs_to_test(columns: ColumnSource, signature: Signature) -> tuple[list[str], list[str]]:
    """The input columns whose drift can be tested, and notes on the others.

    ``columns`` reads numeric inputs as numbers (see :class:`WindowColumns`).
    """
    names = list(columns.schema.names)
    present = [c for c in signature.columns if c in names]
    if not present:
        raise SchemaError(
            f"the current data has none of the model's input columns "
            f"({', '.join(signature.columns)}); its columns: "
            f"{', '.join(names)}. To monitor a batch job's predictions, "
            "pass --batch JOB (its input is read beside them)"
        )
    notes = [f"{c}: not in the current rows (see quality)" for c in signature.columns
             if c not in names]  # fmt: skip
    chosen = []
    for name in present:
        known = columns.holds_values(name) if isinstance(columns, WindowColumns) else None
        if known if known is not None else has_value(columns.read(name)):
            chosen.append(name)
        else:
            notes.append(f"{name}: no value in the current rows, so no drift test (see quality)")
    return chosen, notes


def is_text(kind: pa.DataType) -> bool:
    """Whether values of this type are text (a dictionary of text too)."""
    kind = kind.value_type if pa.types.is_dictionary(kind) else kind
    return bool(
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
    )


def decoded(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A dictionary-encoded column as its values; any other column as it is."""
    if pa.types.is_dictionary(column.type):
        return pc.cast(column, column.type.value_type)
    return column


class WindowColumns(ColumnSource):
    """A window's columns as the statistics read them, one at a time.

    The rows are Parquet left on disk (a column is read when asked for) or an Arrow table;
    ``extra`` columns are held in memory beside them (the model's outputs). ``numbers``
    names the columns read as numbers (:func:`as_numbers`: what the drift tests take of
    numeric inputs); with ``decode``, the text columns the reader dictionary-encoded
    (``encoded``) are read back as text, their type in the data (what quality reports).
    """

    def __init__(
        self,
        rows: ParquetRows | pa.Table,
        *,
        encoded: frozenset[str] = frozenset(),
        extra: pa.Table | None = None,
        numbers: Collection[str] = (),
        decode: bool = False,
    ) -> None:
        self._rows = rows
        self._extra = extra if extra is not None else pa.table({})
        self._numbers = frozenset(numbers)
        self._decoded = encoded if decode else frozenset()
        given = rows.read_schema if isinstance(rows, ParquetRows) else rows.schema
        fields = [self._as_read(f) for f in given if f.name not in self._extra.column_names]
        self._schema = pa.schema([*fields, *self._extra.schema])

    @property
    def rows(self) -> int:
        """Rows of the window."""
        return self._rows.rows if isinstance(self._rows, ParquetRows) else self._rows.num_rows

    @property
    def schema(self) -> pa.Schema:
        """Each column's name and the type it is read as."""
        return self._schema

    def read(self, name: str) -> pa.ChunkedArray:
        """Every row of column ``name``."""
        if name in self._extra.column_names:
            found: pa.ChunkedArray = self._extra.column(name)
            return found
        self.field(name, "window")  # the error naming the window's columns
        column: pa.ChunkedArray = self._rows.column(name)
        if name in self._numbers:
            return as_numbers(column)
        return decoded(column) if name in self._decoded else column

    def holds_values(self, name: str) -> bool | None:
        """Whether column ``name`` holds a value (not null, not NaN), when that is known
        without reading it (from the Parquet footers); None otherwise."""
        if name in self._extra.column_names or not isinstance(self._rows, ParquetRows):
            return None
        if name in self._numbers and is_text(self._rows.schema.field(name).type):
            return None  # text holds a number only if it reads as one
        return self._rows.holds_values(name)

    def table(self, names: Sequence[str]) -> pa.Table:
        """Some columns (each once, in order) as one table."""
        chosen = list(dict.fromkeys(names))
        return pa.table({name: self.read(name) for name in chosen}) if chosen else pa.table({})

    def _as_read(self, found: pa.Field) -> pa.Field:
        if found.name in self._numbers and is_text(found.type):
            return pa.field(found.name, pa.float64())  # a text number's type is unknown unread
        if found.name in self._decoded and pa.types.is_dictionary(found.type):
            return pa.field(found.name, found.type.value_type)
        return found

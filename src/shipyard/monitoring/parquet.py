"""Parquet files and folders read as pandas would type them: whole, by column or in batches.

A monitor reads Parquet with Arrow, never through a DataFrame, yet every statistic must be
the one computed on the frame pandas reads. So each column gets pandas' type: an integer
column with nulls is float64 (unless the file's pandas metadata gives it a nullable dtype
such as ``Int64``), and text columns come dictionary-encoded, which is only how they are
held (counting their values counts small integers, not strings): :attr:`ParquetRows.encoded`
names them. Files are not pre-buffered whole: memory holds what was asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from shipyard.core.exceptions import DataSourceError

#: Which columns of a file to read (None: all of them).
Keep = Callable[[str], bool] | None


class ParquetRows:
    """A Parquet file or folder (every file below it, hive partitions too), read lazily."""

    def __init__(self, path: Path, keep: Keep = None) -> None:
        import pyarrow.dataset as pads

        self.path = path
        try:
            found = pads.dataset(str(path), format="parquet", partitioning="hive")
            self.names = [n for n in found.schema.names if keep is None or keep(n)]
            text = [n for n in self.names if _is_text(found.schema.field(n).type)]
            parquet = pads.ParquetFileFormat(
                read_options=pads.ParquetReadOptions(dictionary_columns=text),
                default_fragment_scan_options=pads.ParquetFragmentScanOptions(pre_buffer=False),
            )
            self._dataset = pads.dataset(str(path), format=parquet, partitioning="hive")
            self.rows = int(self._dataset.count_rows())  # from the footers
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise DataSourceError(f"cannot read Parquet {path}: {exc}") from exc
        self.schema: pa.Schema = pa.schema([self._dataset.schema.field(n) for n in self.names])
        self.encoded = frozenset(
            n for n in text if pa.types.is_dictionary(self.schema.field(n).type)
        )
        metadata = self._dataset.schema.pandas_metadata or {}
        self._nullable = {
            str(c.get("name"))
            for c in metadata.get("columns") or []
            if str(c.get("numpy_type")).startswith(("Int", "UInt"))
        }
        self._floats: set[str] | None = None  # integer columns pandas reads as float64

    @property
    def read_schema(self) -> pa.Schema:
        """Each column's type as read (an integer column with a null: float64)."""
        floats = self._float_columns()
        return pa.schema(
            [pa.field(f.name, pa.float64()) if f.name in floats else f for f in self.schema]
        )

    def table(self, names: Sequence[str] | None = None) -> pa.Table:
        """The columns ``names`` (default: all kept) of every row."""
        table = self._read(lambda: self._dataset.to_table(columns=self._chosen(names)))
        for index, field in enumerate(table.schema):
            column = table.column(index)
            if self._as_float(field, column.null_count):
                table = table.set_column(index, field.name, pc.cast(column, pa.float64()))
        return table

    def column(self, name: str) -> pa.ChunkedArray:
        """One column of every row."""
        column: pa.ChunkedArray = self.table([name]).column(0)
        return column

    def holds_values(self, name: str) -> bool | None:
        """Whether column ``name`` holds a value (not null, not NaN), as the files' footers
        tell (their statistics); None when they cannot tell."""
        floating = pa.types.is_floating(self.schema.field(name).type)
        try:
            for fragment in self._dataset.get_fragments():
                metadata = fragment.metadata
                for group in range(metadata.num_row_groups):
                    found = _chunk(metadata.row_group(group), name)
                    stats = None if found is None else found.statistics
                    if found is None or stats is None or not stats.has_null_count:
                        return None
                    if found.num_values == stats.null_count:
                        continue
                    if not floating:
                        return True
                    # writers leave NaN out of a float column's min and max
                    if not stats.has_min_max or stats.min != stats.min or stats.max != stats.max:
                        return None
                    return True
        except (OSError, ValueError, pa.ArrowException):
            return None
        return False

    def batches(self, names: Sequence[str], rows: int) -> Iterator[pa.Table]:
        """The columns ``names`` in tables of at most ``rows`` rows, in row order."""
        floats = self._float_columns()
        try:
            for table in self._batches(self._chosen(names), rows):
                for index, name in enumerate(table.column_names):
                    if name in floats:
                        cast = pc.cast(table.column(index), pa.float64())
                        table = table.set_column(index, name, cast)
                yield table
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise DataSourceError(f"cannot read Parquet {self.path}: {exc}") from exc

    def _batches(self, names: list[str], rows: int) -> Iterator[pa.Table]:
        import pyarrow.parquet as pq

        fragments = list(self._dataset.get_fragments())
        if any(not set(names) <= set(f.physical_schema.names) for f in fragments):
            # a hive partition column, which only the dataset's scanner adds
            scanner = self._dataset.scanner(
                columns=names, batch_size=rows, batch_readahead=1, fragment_readahead=1
            )
            for batch in scanner.to_batches():
                yield pa.Table.from_batches([batch])
            return
        text = [n for n in names if n in self.encoded]
        for fragment in fragments:
            # A batch at a time, decoded in the calling thread from the file's pages: the
            # scanner would read batches ahead of a slow consumer (the model), which is
            # memory, and the other core is busy with the drift tests meanwhile.
            parquet = pq.ParquetFile(fragment.path, read_dictionary=text, pre_buffer=False)
            batches = parquet.iter_batches(batch_size=rows, columns=names, use_threads=False)
            for batch in batches:
                yield pa.Table.from_batches([batch])

    def _chosen(self, names: Sequence[str] | None) -> list[str]:
        return list(self.names if names is None else names)

    def _as_float(self, field: pa.Field, nulls: int) -> bool:
        return bool(pa.types.is_integer(field.type) and nulls and field.name not in self._nullable)

    def _float_columns(self) -> set[str]:
        """The integer columns with a null somewhere (each read once to count them)."""
        if self._floats is None:
            ints = [f.name for f in self.schema if pa.types.is_integer(f.type)]
            read = self.table(ints).schema if ints else pa.schema([])
            self._floats = {f.name for f in read if pa.types.is_floating(f.type)}
        return self._floats

    def _read(self, read: Callable[[], Any]) -> Any:
        try:
            return read()
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise DataSourceError(f"cannot read Parquet {self.path}: {exc}") from exc


def _chunk(group: Any, name: str) -> Any:
    """The metadata of column ``name`` in a row group (None: not a top-level column there)."""
    for index in range(group.num_columns):
        found = group.column(index)
        if found.path_in_schema == name:
            return found
    return None


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))

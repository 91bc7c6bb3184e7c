"""The reference a window is compared with: raw rows from ``--reference``, or a stored profile.

The model scores raw rows in chunks (:meth:`RawReference.score`, unless they hold its
outputs); the drift tests read them one column at a time
(:class:`~shipyard.monitoring.columns.WindowColumns`), and so does :class:`Expected`,
which collects the range of each numeric input and the values of each other input (what
the window's quality is checked against): a Parquet reference is never held whole in
memory, only the columns being read and the model's outputs are.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.core.schema import PREDICTION, Signature
from shipyard.datasets import Datasets
from shipyard.monitoring.columns import WindowColumns, decoded
from shipyard.monitoring.parquet import ParquetRows
from shipyard.monitoring.scoring import score
from shipyard.monitoring.windows import Window, as_table, output_columns, read_window
from shipyard.statistics import ColumnSource
from shipyard.statistics.profile import DatasetProfile

if TYPE_CHECKING:
    from shipyard.flavors import LoadedModel


@dataclass
class Expected:
    """What the reference says a window's inputs should hold: each numeric input's range
    (NaN skipped, infinities count) and the values of each other input, as text."""

    signature: Signature
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    values: dict[str, dict[str, None]] = field(default_factory=dict)  # insertion-ordered sets

    @classmethod
    def of_profile(cls, signature: Signature, profile: DatasetProfile) -> Expected:
        """The ranges and categories a stored profile kept."""
        expected = cls(signature)
        for spec in signature.inputs:
            found = profile.columns.get(spec.name)
            if found is None:
                continue
            if spec.is_numeric and found.minimum is not None and found.maximum is not None:
                expected.ranges[spec.name] = (found.minimum, found.maximum)
            elif not spec.is_numeric:
                expected.values[spec.name] = dict.fromkeys(found.frequencies or {})
        return expected

    @classmethod
    def of_columns(cls, signature: Signature, columns: ColumnSource) -> Expected:
        """What raw reference rows expect, read one input column at a time."""
        expected = cls(signature)
        names = set(columns.schema.names)
        for spec in signature.inputs:
            if spec.name in names:
                expected.add(spec.name, columns.read(spec.name))
        return expected

    def add(self, name: str, column: pa.ChunkedArray) -> None:
        """Take in the values of input ``name`` in some reference rows (read as numbers when
        the input is numeric)."""
        if self.signature.column(name).is_numeric:
            self._add_range(name, column)
            return
        # the distinct values of a dictionary are found among its indices, not its strings
        distinct = decoded(pa.chunked_array([pc.unique(column)], column.type)).drop_null()
        if pa.types.is_floating(distinct.type):
            distinct = distinct.filter(pc.invert(pc.is_nan(distinct)))
        seen = self.values.setdefault(name, {})
        seen.update(dict.fromkeys(str(v) for v in distinct.to_pylist()))

    def _add_range(self, name: str, column: pa.ChunkedArray) -> None:
        kind = column.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            numbers = np.asarray(column.to_numpy(), dtype=np.float64)  # nulls become NaN
        else:  # dates, decimals...: numbers as pandas makes them
            numbers = pd.to_numeric(column.to_pandas(), errors="coerce").to_numpy(np.float64)
        if numbers.size == 0 or np.isnan(numbers).all():
            return
        low, high = float(np.nanmin(numbers)), float(np.nanmax(numbers))
        if name in self.ranges:
            low, high = min(low, self.ranges[name][0]), max(high, self.ranges[name][1])
        self.ranges[name] = (low, high)

    def signature_with_ranges(self) -> Signature:
        """The signature with each numeric input's range taken from the reference.

        The signature's own range is the input example's (often a few rows): the
        reference's is what "out of range" should mean for a window.
        """
        specs = []
        for spec in self.signature.inputs:
            found = self.ranges.get(spec.name)
            specs.append(replace(spec, minimum=found[0], maximum=found[1]) if found else spec)
        return Signature(tuple(specs), self.signature.outputs)

    def categories(self) -> dict[str, list[str]]:
        """The values of each non-numeric input, as text."""
        return {name: list(values) for name, values in self.values.items()}


@dataclass(frozen=True)
class RawReference:
    """Reference rows (only the model's inputs and outputs are read): Parquet left on disk,
    or a table."""

    window: Window
    rows: ParquetRows | pa.Table
    signature: Signature

    @property
    def description(self) -> str:
        """How the report names the reference."""
        return f"{self.window.description}, raw rows"

    def columns(self, outputs: pa.Table | None = None) -> WindowColumns:
        """The reference's columns as the drift tests read them, with ``outputs`` (the
        model's answers on the rows) beside them when given."""
        rows = self.rows
        if outputs is not None and isinstance(rows, pa.Table):
            rows = rows.select([c for c in self.signature.columns if c in rows.column_names])
        numbers = [c.name for c in self.signature.inputs if c.is_numeric]
        return WindowColumns(rows, encoded=self.window.encoded, extra=outputs, numbers=numbers)

    def score(self, loaded: LoadedModel) -> pa.Table | None:
        """The model's answers on the rows, read in chunks (None when they hold them)."""
        if PREDICTION in self.window.columns:
            return None
        return score(loaded, self.window, self.signature)


def open_reference(uri: str, datasets: Datasets, signature: Signature) -> RawReference:
    """The reference rows at ``uri``: Parquet is opened, not read."""
    wanted = set(signature.columns)
    window = read_window(
        uri, datasets, keep=lambda name: name in wanted or bool(output_columns([name])), lazy=True
    )
    rows = window.data if isinstance(window.data, ParquetRows) else as_table(window)
    return RawReference(window, rows, signature)

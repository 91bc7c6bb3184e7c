"""Reference profiles: a compact, mergeable summary of a dataset's columns.

A :class:`DatasetProfile` keeps, per column, what the drift statistics need so that the
reference data need not be kept (or read again) to monitor a model:

- categorical columns: the count of every value (the whole information JS, PSI,
  chi-squared and the Z-test use, so drift computed from it is exact);
- numeric columns: count, nulls, min, max, mean, population std, counts on fine edges (the
  reference's quantiles at ``bins`` levels merged with ``bins`` equal-width edges, so no
  bin holds more than ``1/bins`` of the values nor is wider than ``range/bins``), and every
  distinct value with its count when there are at most 1,000 of them.

``profile(window, edges_from=reference_profile)`` bins a window on the reference's edges;
profiles on the same edges merge exactly (:meth:`DatasetProfile.merge`): counts add up,
mean and variance combine with the parallel formula (Chan et al.), min/max and nulls
combine, value counts add up.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from shipyard.core.exceptions import InvalidArgumentError, SchemaError
from shipyard.statistics._bounds import bin_sorted
from shipyard.statistics._sources import (
    CATEGORICAL,
    NUMERIC,
    ColumnSource,
    Data,
    as_column_source,
    can_be_categorical,
    category_counts,
    finite_values,
    infer_kind,
    is_numeric_type,
    value_type,
)
from shipyard.statistics._stattests import distinct_count, unique_counts

DEFAULT_BINS = 1000
EXACT_VALUES_LIMIT = 1000  # numeric columns with at most this many distinct values keep them
_FORMAT = 1


@dataclass
class ColumnProfile:
    """Summary of one column.

    ``count`` counts the values statistics use; ``nulls`` the rows dropped before them
    (nulls, NaN, ±inf, as Evidently drops them). ``std`` is the population standard
    deviation (``ddof=0``, the one Evidently divides Wasserstein by). Numeric columns
    have ``edges`` and ``counts`` = [below edges[0], one per bin, above edges[-1]] (bins
    ``[e_k, e_k+1)``, the last closed); ``frequencies`` maps each value (as text: strings
    as they are, numbers and booleans as ``str``) to its count, for categorical columns
    always and for numeric columns with at most 1,000 distinct values.
    """

    name: str
    kind: str
    dtype: str
    count: int
    nulls: int
    minimum: float | None = None
    maximum: float | None = None
    mean: float | None = None
    std: float | None = None
    edges: list[float] | None = None
    counts: list[int] | None = None
    frequencies: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (floats finite or None)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "dtype": self.dtype,
            "count": self.count,
            "nulls": self.nulls,
            "minimum": _finite(self.minimum),
            "maximum": _finite(self.maximum),
            "mean": _finite(self.mean),
            "std": _finite(self.std),
            "edges": None if self.edges is None else [float(e) for e in self.edges],
            "counts": None if self.counts is None else [int(c) for c in self.counts],
            "frequencies": None if self.frequencies is None else dict(self.frequencies),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnProfile:
        """Rebuild a column profile from :meth:`to_dict` output."""
        name = str(data.get("name", "?"))
        try:
            kind = str(data["kind"])
            if kind not in (NUMERIC, CATEGORICAL):
                raise ValueError(f"kind must be 'numeric' or 'categorical' but is {kind!r}")
            edges = data.get("edges")
            counts = data.get("counts")
            frequencies = data.get("frequencies")
            column = cls(
                name=name,
                kind=kind,
                dtype=str(data["dtype"]),
                count=int(data["count"]),
                nulls=int(data["nulls"]),
                minimum=_optional_float(data.get("minimum")),
                maximum=_optional_float(data.get("maximum")),
                mean=_optional_float(data.get("mean")),
                std=_optional_float(data.get("std")),
                edges=None if edges is None else [float(e) for e in edges],
                counts=None if counts is None else [int(c) for c in counts],
                frequencies=None
                if frequencies is None
                else {str(k): int(v) for k, v in dict(frequencies).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgumentError(
                f"Profile of column {name!r} is malformed ({exc!r}); "
                "build profiles with shipyard.statistics.profile() and store to_dict()"
            ) from exc
        column._check()
        return column

    def _check(self) -> None:
        if self.edges is not None:
            if self.counts is None or len(self.counts) != len(self.edges) + 1:
                raise InvalidArgumentError(
                    f"Profile of column {self.name!r} has {len(self.edges)} edges, so it needs "
                    f"{len(self.edges) + 1} counts but has "
                    f"{None if self.counts is None else len(self.counts)}"
                )
            if len(self.edges) < 2 or any(
                b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)
            ):
                raise InvalidArgumentError(
                    f"Edges of column {self.name!r} must be at least two, strictly increasing"
                )

    @property
    def numeric_categories(self) -> bool:
        """Whether the values are numbers (their text keys then sort as numbers)."""
        return self.dtype.startswith(("int", "uint", "float", "double", "halffloat", "decimal"))

    def merge(self, other: ColumnProfile) -> ColumnProfile:
        """The profile of both windows together; both must share kind and edges."""
        if other.kind != self.kind:
            raise InvalidArgumentError(
                f"Column {self.name!r} is {self.kind} in one profile and {other.kind} in the "
                "other; profile both windows with the same categorical=... setting"
            )
        edges, counts = self._merged_bins(other)
        mean, std = _combine_moments(self, other)
        return ColumnProfile(
            name=self.name,
            kind=self.kind,
            dtype=self.dtype if self.count or not other.count else other.dtype,
            count=self.count + other.count,
            nulls=self.nulls + other.nulls,
            minimum=_pick(min, self.minimum, other.minimum),
            maximum=_pick(max, self.maximum, other.maximum),
            mean=mean,
            std=std,
            edges=edges,
            counts=counts,
            frequencies=self._merged_frequencies(other),
        )

    def _merged_bins(self, other: ColumnProfile) -> tuple[list[float] | None, list[int] | None]:
        if self.edges is None and other.edges is None:
            return None, None
        if self.edges is None and not self.count:
            return other.edges, other.counts
        if other.edges is None and not other.count:
            return self.edges, self.counts
        if self.edges != other.edges or self.counts is None or other.counts is None:
            raise InvalidArgumentError(
                f"Column {self.name!r} was binned on different edges in the two profiles, so "
                "they cannot be merged; profile each window with "
                "profile(window, edges_from=reference_profile)"
            )
        return self.edges, [a + b for a, b in zip(self.counts, other.counts, strict=True)]

    def _merged_frequencies(self, other: ColumnProfile) -> dict[str, int] | None:
        if self.frequencies is None or other.frequencies is None:
            return None
        merged = dict(self.frequencies)
        for key, value in other.frequencies.items():
            merged[key] = merged.get(key, 0) + value
        if self.kind == NUMERIC and len(merged) > EXACT_VALUES_LIMIT:
            return None
        return merged


@dataclass
class DatasetProfile:
    """Profiles of a dataset's columns; ``rows`` counts all rows, null or not."""

    rows: int
    columns: dict[str, ColumnProfile] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return {
            "format": _FORMAT,
            "rows": self.rows,
            "columns": [c.to_dict() for c in self.columns.values()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetProfile:
        """Rebuild a profile from :meth:`to_dict` output."""
        if not isinstance(data, Mapping) or data.get("format") != _FORMAT:
            raise InvalidArgumentError(
                f"A profile dict must have format={_FORMAT} (from DatasetProfile.to_dict()) "
                f"but got {data.get('format') if isinstance(data, Mapping) else type(data)!r}"
            )
        columns = [ColumnProfile.from_dict(c) for c in data.get("columns", [])]
        return cls(rows=int(data["rows"]), columns={c.name: c for c in columns})

    def merge(self, other: DatasetProfile) -> DatasetProfile:
        """The profile of both datasets together (same columns, same edges)."""
        if set(self.columns) != set(other.columns):
            only_self = sorted(set(self.columns) - set(other.columns))
            only_other = sorted(set(other.columns) - set(self.columns))
            raise InvalidArgumentError(
                "Profiles to merge must have the same columns; only in the first: "
                f"{only_self}, only in the second: {only_other}"
            )
        return DatasetProfile(
            rows=self.rows + other.rows,
            columns={name: c.merge(other.columns[name]) for name, c in self.columns.items()},
        )


def profile(
    data: Data | ColumnSource,
    categorical: Iterable[str] | None = None,
    bins: int | None = None,
    edges_from: DatasetProfile | None = None,
    *,
    columns: Sequence[str] | None = None,
    threads: int | None = None,
) -> DatasetProfile:
    """Profile ``data`` (table, pandas frame, Parquet path(s)), one column at a time.

    ``categorical`` forces columns to be categorical (default: strings, dictionaries and
    booleans are, numbers are not). ``bins`` sets the fine histogram (default 1,000).
    ``edges_from`` bins numeric columns on another profile's edges and takes its columns
    and kinds, so the result merges with profiles of other windows binned the same way.
    ``columns`` limits the columns; ``threads`` profiles that many columns at once
    (default: one per CPU).
    """
    source = as_column_source(data)
    if bins is not None and (edges_from is not None or bins < 1):
        raise InvalidArgumentError(
            f"bins must be a positive number of bins, and cannot be combined with edges_from "
            f"(the edges come from that profile), but got bins={bins!r}"
        )
    plan = _plan(source, categorical, edges_from, columns)

    def run(item: tuple[str, str]) -> ColumnProfile:
        name, kind = item
        edges = None
        if edges_from is not None and edges_from.columns[name].edges is not None:
            edges = np.asarray(edges_from.columns[name].edges, dtype=np.float64)
        return profile_column(source, name, kind, bins or DEFAULT_BINS, edges)

    with ThreadPoolExecutor(max_workers=max(1, threads or os.cpu_count() or 1)) as pool:
        profiles = list(pool.map(run, plan))
    return DatasetProfile(rows=source.rows, columns={p.name: p for p in profiles})


def _plan(
    source: ColumnSource,
    categorical: Iterable[str] | None,
    edges_from: DatasetProfile | None,
    columns: Sequence[str] | None,
) -> list[tuple[str, str]]:
    forced = set(categorical or ())
    if edges_from is not None:
        names = list(columns) if columns is not None else list(edges_from.columns)
        plan = []
        for name in names:
            if name not in edges_from.columns:
                raise InvalidArgumentError(
                    f"Column {name!r} is not in the edges_from profile; profile the reference "
                    "with that column first"
                )
            kind = edges_from.columns[name].kind
            if name in forced and kind != CATEGORICAL:
                raise InvalidArgumentError(
                    f"Column {name!r} is numeric in the edges_from profile and cannot be "
                    "profiled as categorical against it"
                )
            kind_of = source.field(name, "profiled").type
            numeric = is_numeric_type(kind_of) and not pa.types.is_dictionary(kind_of)
            if not (numeric if kind == NUMERIC else can_be_categorical(kind_of)):
                raise SchemaError(
                    f"Column {name!r} is {kind} in the edges_from profile but has type "
                    f"{kind_of} here; give it the same type as in the reference",
                    column=name,
                )
            plan.append((name, kind))
        return plan
    explicit = columns is not None
    names = list(columns) if columns is not None else list(source.schema.names)
    unknown = forced - set(source.schema.names)
    if unknown:
        raise InvalidArgumentError(f"categorical names columns the data lacks: {sorted(unknown)}")
    plan = []
    for name in names:
        kind_of = source.field(name, "profiled").type
        forced_here = name in forced and can_be_categorical(kind_of)
        guess = CATEGORICAL if forced_here else infer_kind(kind_of)
        if guess is None:
            if explicit:
                raise InvalidArgumentError(
                    f"Column {name!r} has type {kind_of}, which is neither numeric nor "
                    "categorical; leave it out of columns=[...]"
                )
            continue
        plan.append((name, guess))
    return plan


def profile_column(
    source: ColumnSource, name: str, kind: str, bins: int, edges: np.ndarray | None
) -> ColumnProfile:
    """Read and profile one column (``edges`` given: bin on them instead of choosing)."""
    column = source.read(name)
    dtype = str(value_type(column.type))
    if kind == CATEGORICAL:
        counted = category_counts(column)
        return ColumnProfile(
            name=name,
            kind=kind,
            dtype=dtype,
            count=counted.total,
            nulls=len(column) - counted.total,
            frequencies=counted.as_dict(),
        )
    values = finite_values(column)
    rows, count = len(column), int(values.size)
    del column
    if count == 0:
        empty_counts = None if edges is None else [0] * (edges.size + 1)
        return ColumnProfile(
            name=name,
            kind=kind,
            dtype=dtype,
            count=0,
            nulls=rows,
            edges=None if edges is None else edges.tolist(),
            counts=empty_counts,
            frequencies={},
        )
    mean, std = float(values.mean()), float(values.std())  # in row order, as numpy on rows
    values = np.sort(values)
    if edges is None:
        edges = choose_edges(values, bins)
    frequencies = None
    if distinct_count(values) <= EXACT_VALUES_LIMIT:
        unique, repeats = unique_counts(values + 0.0)  # + 0.0 turns -0.0 into 0.0
        frequencies = {repr(float(v)): int(c) for v, c in zip(unique, repeats, strict=True)}
    return ColumnProfile(
        name=name,
        kind=kind,
        dtype=dtype,
        count=count,
        nulls=rows - count,
        minimum=float(values[0]),
        maximum=float(values[-1]),
        mean=mean,
        std=std,
        edges=edges.tolist(),
        counts=bin_sorted(values, edges).tolist(),
        frequencies=frequencies,
    )


def choose_edges(sorted_values: np.ndarray, bins: int) -> np.ndarray:
    """Quantile edges at ``bins`` levels merged with ``bins`` equal-width edges."""
    low, high = float(sorted_values[0]), float(sorted_values[-1])
    if low == high:
        return np.array([low - 0.5, high + 0.5])
    at = np.round(np.linspace(0, sorted_values.size - 1, bins + 1)).astype(np.int64)
    return np.unique(np.r_[sorted_values[at], np.linspace(low, high, bins + 1)])


def _combine_moments(a: ColumnProfile, b: ColumnProfile) -> tuple[float | None, float | None]:
    if a.kind == CATEGORICAL:
        return None, None
    if not b.count:
        return a.mean, a.std
    if not a.count:
        return b.mean, b.std
    if a.mean is None or b.mean is None or a.std is None or b.std is None:
        raise InvalidArgumentError(f"Column {a.name!r} has values but no mean/std in a profile")
    n = a.count + b.count
    delta = b.mean - a.mean
    mean = a.mean + delta * b.count / n
    squares = a.std**2 * a.count + b.std**2 * b.count + delta**2 * a.count * b.count / n
    return mean, math.sqrt(max(squares, 0.0) / n)


def _pick(choose: Any, a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return float(choose(a, b))


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def require_profile_column(profile_: DatasetProfile, name: str, side: str) -> ColumnProfile:
    """The profile of ``name``, or :class:`SchemaError` saying which side lacks it."""
    if name not in profile_.columns:
        raise SchemaError(
            f"Column {name!r} is not in the {side} profile (it has: "
            f"{', '.join(list(profile_.columns)[:20])}); profile that column or leave it out "
            "with columns=[...]",
            column=name,
        )
    return profile_.columns[name]

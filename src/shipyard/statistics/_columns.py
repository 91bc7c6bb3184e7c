"""One column's drift test: read both sides, pick Evidently's test, compute the score.

A numeric side is its values (rows, or a profile's kept values expanded), or a
histogram (a profile's fine bins) with, when the profile kept them, the count of each
distinct value. Tests that count values (chi-squared, Z, and JS / PSI when the reference
has at most 20 distinct values) need only those counts; KS, Wasserstein and binned JS /
PSI are exact from two sides' values and otherwise the midpoint of the interval of
:mod:`shipyard.statistics._bounds`. A categorical side is its value counts, which is all
every categorical test uses, so it is always exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from shipyard.core.exceptions import InvalidArgumentError
from shipyard.statistics._bounds import (
    Binned,
    bin_sorted,
    binned_interval,
    ks_interval,
    wasserstein_interval,
)
from shipyard.statistics._sources import (
    CATEGORICAL,
    NUMERIC,
    CategoryCounts,
    ColumnSource,
    align_counts,
    align_keyed,
    category_counts,
    finite_values,
)
from shipyard.statistics._stattests import (
    BINNING_VALUES,
    CHISQUARE,
    FEW_VALUES,
    JENSENSHANNON,
    KS,
    PSI,
    WASSERSTEIN,
    Z,
    align_values,
    default_method,
    distinct_count,
    ks_pvalue,
    score_counts,
    sturges_counts,
    unique_counts,
    wasserstein_norm,
)
from shipyard.statistics.profile import ColumnProfile, DatasetProfile, require_profile_column

Side = ColumnSource | DatasetProfile
Score = tuple[str, float, float | None]  # method, score, bound (None: exact)

_REBUILD_LIMIT = 20_000_000  # values up to which a profile's exact values are expanded
_STD_FLOOR = 0.001


def column_score(name: str, kind: str, ref: Side, cur: Side, method: str | None) -> Score:
    """Evidently's test of column ``name`` (``method`` overrides the default)."""
    if kind == NUMERIC:
        return _numeric_drift(name, ref, cur, method)
    if kind == CATEGORICAL:
        return _categorical_drift(name, ref, cur, method)
    raise InvalidArgumentError(f"Column kind must be numeric or categorical but got {kind!r}")


# --- numeric columns ---------------------------------------------------------------------


@dataclass
class _Numeric:
    """One side of a numeric column: its values (in any order), or a histogram, and, when
    known, its distinct values with their counts (``atoms``)."""

    count: int
    integer: bool
    values: np.ndarray | None = None
    binned: Binned | None = None
    atoms: tuple[np.ndarray, np.ndarray] | None = None
    profile_std: float | None = None
    is_sorted: bool = False

    @property
    def exact(self) -> bool:
        """Whether every value is at hand."""
        return self.values is not None

    @property
    def counted(self) -> bool:
        """Whether the count of every distinct value is known."""
        return self.atoms is not None or self.values is not None

    def sorted(self) -> np.ndarray:
        """The values sorted (sorted once, on first use)."""
        if self.values is None:
            raise InvalidArgumentError("A histogram-only side has no values to sort")
        if not self.is_sorted:
            self.values, self.is_sorted = np.sort(self.values), True
        return self.values

    def value_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct values, ascending, and their counts."""
        if self.atoms is None:
            self.atoms = unique_counts(self.sorted())
        return self.atoms

    @property
    def std(self) -> float:
        """Population standard deviation (of the values when at hand)."""
        if self.values is not None:
            return float(np.std(self.values))
        return float(self.profile_std or 0.0)

    def few_values(self, limit: int) -> bool:
        """Whether there are at most ``limit`` distinct values (cheap when there are many)."""
        if self.atoms is not None:
            return self.atoms[0].size <= limit
        if self.values is None:
            return False  # a profile drops its values only above 1,000 distinct ones
        if not self.is_sorted and np.unique(self.values[:256]).size > limit:
            return False
        return distinct_count(self.sorted()) <= limit


def _numeric_side(side: Side, name: str, label: str) -> _Numeric:
    if isinstance(side, DatasetProfile):
        found = require_profile_column(side, name, label)
        _require_values(name, found.count, label)
        return _numeric_from_profile(found)
    column = side.read(name)
    integer = bool(pa.types.is_integer(column.type) and column.null_count == 0)
    values = finite_values(column)
    del column
    _require_values(name, values.size, label)
    return _Numeric(count=values.size, integer=integer, values=values)


def _numeric_from_profile(found: ColumnProfile) -> _Numeric:
    integer = found.dtype.startswith(("int", "uint")) and found.nulls == 0
    side = _Numeric(count=found.count, integer=integer, profile_std=found.std)
    if found.frequencies is not None:
        values = np.array([float(k) for k in found.frequencies], dtype=np.float64)
        counts = np.array(list(found.frequencies.values()), dtype=np.int64)
        order = np.argsort(values)
        side.atoms = values[order], counts[order]
        if found.count <= _REBUILD_LIMIT:
            side.values, side.is_sorted = np.repeat(values[order], counts[order]), True
            return side
    if found.edges is None or found.counts is None:
        raise InvalidArgumentError(f"The profile of column {found.name!r} has no histogram")
    side.binned = Binned(
        edges=np.asarray(found.edges, dtype=np.float64),
        counts=np.asarray(found.counts, dtype=np.int64),
        minimum=float(found.minimum if found.minimum is not None else found.edges[0]),
        maximum=float(found.maximum if found.maximum is not None else found.edges[-1]),
    )
    return side


def _require_values(name: str, count: int, label: str) -> None:
    if count == 0:
        raise InvalidArgumentError(
            f"Column {name!r} has no value in the {label} data once nulls, NaN and infinities "
            "are dropped, so its drift cannot be tested; leave it out with columns=[...]"
        )


def _numeric_drift(name: str, ref_side: Side, cur_side: Side, method: str | None) -> Score:
    ref = _numeric_side(ref_side, name, "reference")
    cur = _numeric_side(cur_side, name, "current")
    chosen = method or default_method(NUMERIC, ref.count, _distinct(ref, cur))
    by_value = chosen in (CHISQUARE, Z) or (
        chosen in (JENSENSHANNON, PSI) and ref.few_values(BINNING_VALUES)
    )
    if by_value:  # Evidently counts each value: counts are all it takes
        if not cur.counted:
            raise InvalidArgumentError(
                f"Column {name!r}: Evidently's {chosen} counts each value when the reference "
                f"has at most {BINNING_VALUES} distinct values, and the current profile did "
                "not keep its values; compare with the current rows instead of its profile"
            )
        counts = align_values(ref.value_counts(), cur.value_counts())
        return chosen, score_counts(chosen, *counts), None
    if ref.exact and cur.exact:
        return chosen, _exact_numeric(chosen, ref, cur), None
    ref_binned, cur_binned = _common_bins(name, ref, cur)
    if chosen == KS:
        low, high = ks_interval(ref_binned, cur_binned)
    elif chosen == WASSERSTEIN:
        low, high = wasserstein_interval(ref_binned, cur_binned)
        norm = max(ref.std, _STD_FLOOR)
        low, high = low / norm, high / norm
    else:
        low, high = binned_interval(chosen, ref_binned, cur_binned, ref.integer and cur.integer)
    return chosen, (low + high) / 2, (high - low) / 2


def _distinct(ref: _Numeric, cur: _Numeric) -> int:
    """Distinct values of both sides together, exact up to FEW_VALUES + 1."""
    if not (ref.few_values(FEW_VALUES) and cur.few_values(FEW_VALUES)):
        return FEW_VALUES + 1
    return int(np.union1d(ref.value_counts()[0], cur.value_counts()[0]).size)


def _exact_numeric(method: str, ref: _Numeric, cur: _Numeric) -> float:
    """KS, Wasserstein, or JS / PSI on Sturges bins, from the values of both sides."""
    if ref.values is None or cur.values is None:
        raise InvalidArgumentError("Exact statistics need the values of both sides")
    if method == KS:
        return ks_pvalue(ref.values, cur.values)
    if method == WASSERSTEIN:
        return wasserstein_norm(ref.values, cur.values)
    counts = sturges_counts(ref.sorted(), cur.sorted(), ref.integer and cur.integer)
    return score_counts(method, *counts)


def _common_bins(name: str, ref: _Numeric, cur: _Numeric) -> tuple[Binned, Binned]:
    edges = (ref.binned or cur.binned or _missing(name)).edges
    if (
        ref.binned is not None
        and cur.binned is not None
        and not np.array_equal(ref.binned.edges, cur.binned.edges)
    ):
        raise InvalidArgumentError(
            f"Column {name!r} was binned on different edges in the two profiles; profile the "
            "current data with profile(current, edges_from=reference_profile)"
        )
    return _as_binned(ref, edges), _as_binned(cur, edges)


def _missing(name: str) -> Binned:
    raise InvalidArgumentError(f"Column {name!r} has neither values nor a histogram")


def _as_binned(side: _Numeric, edges: np.ndarray) -> Binned:
    if side.binned is not None:
        return side.binned
    sample = side.sorted()
    return Binned(edges, bin_sorted(sample, edges), float(sample[0]), float(sample[-1]), sample)


# --- categorical columns -----------------------------------------------------------------


def _categorical_side(
    side: Side, name: str, label: str
) -> tuple[CategoryCounts | None, ColumnProfile | None]:
    if isinstance(side, DatasetProfile):
        found = require_profile_column(side, name, label)
        _require_values(name, found.count, label)
        return None, found
    counted = category_counts(side.read(name))
    _require_values(name, counted.total, label)
    return counted, None


def _categorical_drift(name: str, ref_side: Side, cur_side: Side, method: str | None) -> Score:
    ref_counts, ref_profile = _categorical_side(ref_side, name, "reference")
    cur_counts, cur_profile = _categorical_side(cur_side, name, "current")
    if ref_counts is not None and cur_counts is not None:
        ref, cur = align_counts(ref_counts, cur_counts)
    else:
        numeric_order = any(p.numeric_categories for p in (ref_profile, cur_profile) if p)
        ref, cur = align_keyed(
            _keyed(ref_counts, ref_profile), _keyed(cur_counts, cur_profile), numeric_order
        )
    reference_count = int(ref.sum())
    chosen = method or default_method(
        CATEGORICAL, reference_count, int(np.count_nonzero(ref + cur))
    )
    return chosen, score_counts(chosen, ref, cur), 0.0


def _keyed(counts: CategoryCounts | None, found: ColumnProfile | None) -> dict[str, int]:
    if counts is not None:
        return counts.as_dict()
    if found is None or found.frequencies is None:
        raise InvalidArgumentError("A categorical profile needs its value counts")
    return found.frequencies

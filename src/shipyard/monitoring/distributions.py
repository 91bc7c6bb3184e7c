"""What the HTML report plots for a drifted column: reference and current counts on one axis.

Numeric columns: the reference profile's fine histogram (1,000 quantile bins) and the current
window binned on the same edges, both regrouped onto at most :data:`PLOT_BINS` equal-width
bins between the reference's edges (counts are spread within a fine bin in proportion to
its width: a picture, not a statistic). Categorical columns (and numeric columns with few
distinct values): the counts of the :data:`PLOT_CATEGORIES` most frequent values and
one bar for the others.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from shipyard.statistics import ColumnSource
from shipyard.statistics.profile import ColumnProfile, DatasetProfile, profile

PLOT_BINS = 30
PLOT_CATEGORIES = 20


def distributions(
    reference: ColumnSource | DatasetProfile,
    current: ColumnSource,
    columns: Sequence[str],
    categorical: Collection[str],
) -> dict[str, dict[str, Any]]:
    """Reference and current counts of each of ``columns`` (see the module docstring)."""
    wanted = [c for c in dict.fromkeys(columns) if c in current.schema.names]
    if not wanted:
        return {}
    chosen = [c for c in categorical if c in wanted]
    if isinstance(reference, ColumnSource):
        wanted = [c for c in wanted if c in reference.schema.names]
        chosen = [c for c in chosen if c in wanted]
        reference = profile(reference, categorical=chosen, columns=wanted)
    wanted = [c for c in wanted if c in reference.columns]
    mine = profile(current, edges_from=reference, columns=wanted)
    shapes: dict[str, dict[str, Any]] = {}
    for name in wanted:
        before, after = reference.columns[name], mine.columns[name]
        if before.edges is not None and after.counts is not None and before.counts is not None:
            shapes[name] = _numeric(before, after)
        elif before.frequencies is not None and after.frequencies is not None:
            shapes[name] = _categorical(before.frequencies, after.frequencies)
    return shapes


def _numeric(before: ColumnProfile, after: ColumnProfile) -> dict[str, Any]:
    fine = np.asarray(before.edges, dtype=np.float64)
    low, high = float(fine[0]), float(fine[-1])
    if high <= low:
        high = low + 1.0
    coarse = np.linspace(low, high, PLOT_BINS + 1)
    return {
        "kind": "numeric",
        "edges": coarse.tolist(),
        "reference": _regroup(fine, before.counts or [], coarse),
        "current": _regroup(fine, after.counts or [], coarse),
    }


def _regroup(fine: np.ndarray, counts: Sequence[int], coarse: np.ndarray) -> list[float]:
    """Counts on ``fine`` bins (plus the two outer ones) spread onto ``coarse`` bins."""
    inner = np.asarray(counts[1:-1], dtype=np.float64)
    cumulative = np.concatenate([[0.0], np.cumsum(inner)])
    at = np.interp(coarse, fine, cumulative)
    grouped = np.diff(at)
    grouped[0] += float(counts[0]) if counts else 0.0  # below the reference's range
    grouped[-1] += float(counts[-1]) if counts else 0.0  # above it
    return [float(v) for v in grouped]


def _categorical(before: dict[str, int], after: dict[str, int]) -> dict[str, Any]:
    totals = {k: before.get(k, 0) + after.get(k, 0) for k in {*before, *after}}
    ranked = sorted(totals, key=lambda k: (-totals[k], k))
    top, rest = ranked[:PLOT_CATEGORIES], ranked[PLOT_CATEGORIES:]
    shape: dict[str, Any] = {
        "kind": "categorical",
        "categories": top,
        "reference": [before.get(k, 0) for k in top],
        "current": [after.get(k, 0) for k in top],
    }
    if rest:  # the others in one bar, so shares stay shares of the whole column
        shape["categories"].append(f"(other {len(rest)})")
        shape["reference"].append(sum(before.get(k, 0) for k in rest))
        shape["current"].append(sum(after.get(k, 0) for k in rest))
    return shape

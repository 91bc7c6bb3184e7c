"""Exact first Wasserstein distance of two samples, without sorting them (mostly).

``W1(u, v) = ∫ |F(x) - G(x)| dx`` over the empirical CDFs, the value of
``scipy.stats.wasserstein_distance(u, v)`` (which argsorts the concatenation, ~0.4 s per
million-row pair here). Two ways, both exact up to float rounding:

- :func:`wasserstein_sorted`, for sorted samples: equal sizes integrate the quantile
  functions, ``mean |u_(i) - v_(i)|``; unequal sizes merge the two sorted runs (a stable
  sort of two runs is one linear merge) and integrate ``|F - G|`` between merged points.
- :func:`wasserstein`, for unsorted samples: cut ``[min, max]`` into equal bins and count
  each sample per bin (linear, no sort). On a bin where one CDF stays above the other
  throughout (its value at the bin's start is above the other's value at the bin's end)
  ``∫|F - G| = |∫ F - ∫ G|``, and ``∫ F`` over a bin needs only the count below it and
  the sum of ``(bin end - u)`` of the values in it. Only the values of the few bins where
  the CDFs may cross are sorted and integrated point by point. Numpy releases the GIL in
  all of it, so columns run in parallel threads.
"""

from __future__ import annotations

import numpy as np

_BLOCK = 1 << 20
_VALUES_PER_BIN = 8
_SORT_SHARE = 0.5  # above this share of values in crossing bins, sorting everything is cheaper


def wasserstein_sorted(u: np.ndarray, v: np.ndarray) -> float:
    """W1 distance of two sorted samples."""
    n, m = u.size, v.size
    if n == m:
        gaps = np.subtract(u, v)
        np.abs(gaps, out=gaps)
        return float(gaps.mean())
    merged = np.concatenate((u, v))
    order = np.argsort(merged, kind="stable")  # two sorted runs: one merge pass
    merged = merged[order]
    from_u = order < n
    del order
    total = 0.0
    seen_u = 0
    for start in range(0, n + m - 1, _BLOCK):  # a block at a time bounds the temporaries
        stop = min(start + _BLOCK, n + m - 1)
        count_u = np.cumsum(from_u[start:stop], dtype=np.int64) + seen_u
        seen_u = int(count_u[-1])
        count_v = np.arange(start + 1, stop + 1, dtype=np.int64) - count_u
        cdf_gap = np.abs(count_u / n - count_v / m)
        total += float(np.dot(cdf_gap, np.diff(merged[start : stop + 1])))
    return total


def wasserstein(u: np.ndarray, v: np.ndarray) -> float:
    """W1 distance of two unsorted samples of finite values."""
    n, m = u.size, v.size
    low = float(min(u.min(), v.min()))
    high = float(max(u.max(), v.max()))
    if low == high:
        return 0.0
    bins = int(min(max((n + m) // _VALUES_PER_BIN, 1), 1 << 22))
    width = (high - low) / bins
    edges = low + width * np.arange(bins + 1, dtype=np.float64)
    edges[-1] = high
    if not np.all(np.diff(edges) > 0):  # a range too narrow for that many bins
        return wasserstein_sorted(np.sort(u), np.sort(v))
    # ∫ of F over a bin: (count below * width + sum of (bin end - value)) / n.
    bin_u, count_u, left_u = _bin_of(u, low, bins / (high - low), bins)
    bin_v, count_v, left_v = _bin_of(v, low, bins / (high - low), bins)
    below_u = np.r_[0, np.cumsum(count_u)[:-1]]
    below_v = np.r_[0, np.cumsum(count_v)[:-1]]
    # F >= G on a whole bin when F at its start >= G at its end (integers: no rounding).
    f_above = below_u * m >= (below_v + count_v) * n
    g_above = below_v * n >= (below_u + count_u) * m
    crossing = ~(f_above | g_above)
    if (count_u[crossing].sum() + count_v[crossing].sum()) > _SORT_SHARE * (n + m):
        return wasserstein_sorted(np.sort(u), np.sort(v))
    integral = (below_u / n - below_v / m + left_u / n - left_v / m) * width
    total = float(np.abs(integral[~crossing]).sum())
    if crossing.any():
        total += _crossing_bins(u, v, bin_u, bin_v, crossing, edges, below_u, below_v)
    return total


def _bin_of(
    values: np.ndarray, low: float, scale: float, bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bin of each value, values per bin, and per bin the sum of (bin end - value) in widths.

    The bin is ``floor((x - low) * scale)``, the last bin closed; at a bin's edge the
    rounding of the scaling may put a value one ulp on the other side, which changes
    the integrals by an ulp, no more.
    """
    scaled = np.subtract(values, low)
    scaled *= scale
    index = scaled.astype(np.int32)  # bins <= 2**22
    np.minimum(index, bins - 1, out=index)
    scaled -= index  # the position within the bin, 0 <= . <= 1
    np.subtract(1.0, scaled, out=scaled)
    counts = np.bincount(index, minlength=bins)
    rest = np.bincount(index, weights=scaled, minlength=bins)
    return index, counts, rest


def _crossing_bins(
    u: np.ndarray,
    v: np.ndarray,
    bin_u: np.ndarray,
    bin_v: np.ndarray,
    crossing: np.ndarray,
    edges: np.ndarray,
    below_u: np.ndarray,
    below_v: np.ndarray,
) -> float:
    """∫|F - G| over the bins where the CDFs may cross, from their values sorted."""
    n, m = u.size, v.size
    picked_u, picked_v = crossing[bin_u], crossing[bin_v]
    which = np.flatnonzero(crossing)
    values = np.concatenate((u[picked_u], v[picked_v], edges[which], edges[which + 1]))
    owner = np.concatenate((bin_u[picked_u], bin_v[picked_v], which, which))
    kind = np.concatenate(
        (
            np.full(int(picked_u.sum()), 1, np.int8),  # a value of u
            np.full(int(picked_v.sum()), 2, np.int8),  # a value of v
            np.zeros(which.size, np.int8),  # the bin's start
            np.full(which.size, 3, np.int8),  # the bin's end
        )
    )
    # By bin; in a bin its start first and its end last (a value may sit an ulp outside its
    # bin's edges, see _bin_of), the values in between in order.
    place = np.array([0, 1, 1, 2], np.int8)[kind]
    order = np.lexsort((values, place, owner))
    values, owner, kind = values[order], owner[order], kind[order]
    seen_u = np.cumsum(kind == 1)
    seen_v = np.cumsum(kind == 2)
    starts = np.flatnonzero(kind == 0)
    base_u = np.repeat(seen_u[starts], np.diff(np.r_[starts, values.size]))
    base_v = np.repeat(seen_v[starts], np.diff(np.r_[starts, values.size]))
    cdf_u = (below_u[owner] + seen_u - base_u) / n
    cdf_v = (below_v[owner] + seen_v - base_v) / m
    same_bin = owner[1:] == owner[:-1]
    lengths = np.where(same_bin, np.maximum(np.diff(values), 0.0), 0.0)
    return float(np.dot(np.abs(cdf_u[:-1] - cdf_v[:-1]), lengths))

"""Numeric drift statistics from histograms, with a rigorous bound on their error.

A profile keeps a numeric column as counts on fine edges ``e_0 < ... < e_K``: a cell
below ``e_0``, the bins ``[e_k, e_k+1)`` (the last one closed) and a cell above ``e_K``,
plus the exact minimum and maximum. Inside a cell the values can sit anywhere, so each
statistic is only known to lie in an interval, computed here from the worst cases:

- CDFs: on a cell the empirical CDF ``F`` is monotone between the cumulative shares at the
  cell's ends, ``A_lo <= F <= A_hi`` (same for ``G``, ``B_lo``/``B_hi``).
- Wasserstein ``W1 = ∫|F - G|``: on a cell of width ``w`` (clipped to the data's range)
  the integral lies between ``w * max(0, B_lo - A_hi, A_lo - B_hi)`` and
  ``w * max(A_hi - B_lo, B_hi - A_lo)``; both bounds are reachable.
- KS: ``D = sup|F - G|`` is at least ``|F - G|`` at the edges (where both are known) and at
  most the largest cell-wise ``max(A_hi - B_lo, B_hi - A_lo)``; the p-value falls as ``D``
  grows, so its interval is ``[p(D_max), p(D_min)]`` (scipy's p-value of ``D``).
- JS and PSI on Evidently's Sturges bins: a fine cell inside one Sturges bin counts exactly,
  one straddling a Sturges edge may fall on either side, giving an interval for each bin's
  share. Both per-bin terms are jointly convex and grow with ``|p - q|``, so a term's
  maximum is at a corner of its box and its minimum is 0 when the box meets ``p = q``,
  else at the corner nearest it. PSI's filling of empty bins (``utils.get_binned_data`` of
  Evidently) is covered by letting a possibly empty share take any fill value
  ``[1e-6 / n, 1e-4]``.

The reported score is the interval's midpoint and the bound its half-width (plus a
rounding allowance), so ``|score - raw score| <= bound``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import rel_entr

from shipyard.core.exceptions import InvalidArgumentError
from shipyard.statistics._stattests import (
    FILL,
    JENSENSHANNON,
    PSI,
    fill_empty,
    histogram_sorted,
    ks_pvalue_at,
    psi_terms,
    sturges_edges,
)


@dataclass(frozen=True)
class Binned:
    """A sample known through counts on edges: ``counts`` = [below, K bins..., above].

    ``sample`` holds the sorted values when they are known (rows binned to be compared
    with a profile); shares on other bins are then exact.
    """

    edges: np.ndarray
    counts: np.ndarray
    minimum: float
    maximum: float
    sample: np.ndarray | None = None

    @property
    def size(self) -> int:
        """Number of values."""
        return int(self.counts.sum())


def bin_sorted(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts [below, bins..., above] of a sorted sample on ``edges`` (last bin closed)."""
    at = np.searchsorted(sorted_values, edges, side="left")
    at[-1] = np.searchsorted(sorted_values, edges[-1], side="right")
    return np.asarray(np.diff(np.r_[0, at, sorted_values.size]), dtype=np.int64)


def _slack(low: float, high: float) -> tuple[float, float]:
    """Widen an interval by a rounding allowance (sums of many float terms)."""
    pad = 1e-12 + 1e-9 * max(abs(low), abs(high))
    return low - pad, high + pad


def wasserstein_interval(ref: Binned, cur: Binned) -> tuple[float, float]:
    """Lower and upper bound of W1 between the two binned samples (same edges)."""
    if cur.sample is not None:
        return _wasserstein_one_known(ref, cur.sample)
    if ref.sample is not None:
        return _wasserstein_one_known(cur, ref.sample)  # W1 is symmetric
    low_all, high_all = min(ref.minimum, cur.minimum), max(ref.maximum, cur.maximum)
    left = np.r_[-np.inf, ref.edges]
    right = np.r_[ref.edges, np.inf]
    widths = np.clip(np.minimum(right, high_all) - np.maximum(left, low_all), 0.0, None)
    a = np.r_[0, np.cumsum(ref.counts)] / ref.size
    b = np.r_[0, np.cumsum(cur.counts)] / cur.size
    a_lo, a_hi, b_lo, b_hi = a[:-1], a[1:], b[:-1], b[1:]
    gap_low = np.maximum(0.0, np.maximum(b_lo - a_hi, a_lo - b_hi))
    gap_high = np.maximum(a_hi - b_lo, b_hi - a_lo)
    return _slack(float(np.dot(widths, gap_low)), float(np.dot(widths, gap_high)))


def _wasserstein_one_known(binned: Binned, sample: np.ndarray) -> tuple[float, float]:
    """W1 bounds when one side's values are known: only the binned side's CDF ``F`` is free.

    On a cell ``F`` is any monotone function in its band ``[A_lo, A_hi]`` and ``G`` the
    exact step function of ``sample``. The smallest ``∫|F - G|`` takes ``F = clip(G, A_lo,
    A_hi)`` (monotone), i.e. ``∫ dist(G, band)``. ``|F - G|`` is convex in ``F``, so the
    largest is at a one-step ``F`` (``A_lo``, then ``A_hi``); as ``G`` grows, moving the step
    gains first less then more, so a constant ``F`` wins: ``max(∫|A_lo - G|, ∫|A_hi - G|)``.
    Each integral comes from prefix sums over the sorted sample, per cell, in O(cells).
    """
    low_all = min(binned.minimum, float(sample[0]))
    high_all = max(binned.maximum, float(sample[-1]))
    left = np.maximum(np.r_[-np.inf, binned.edges], low_all)
    right = np.minimum(np.r_[binned.edges, np.inf], high_all)
    cum = np.r_[0, np.cumsum(binned.counts)]
    keep = right > left
    left, right = left[keep], right[keep]
    band_lo, band_hi = cum[:-1][keep], cum[1:][keep]  # F * n at the cell's ends
    gaps = _GapSums(sample)
    first = np.asarray(np.searchsorted(sample, left, side="right"))  # G * m from left on
    last = np.asarray(np.searchsorted(sample, right, side="left"))  # G * m just below right
    n = binned.size

    def integral(lo_count: np.ndarray, hi_count: np.ndarray) -> np.ndarray:
        """∫ over each cell of the distance from G to [lo_count/n, hi_count/n]."""
        return gaps.distance(lo_count, hi_count, n, first, last, left, right)

    lower = float(integral(band_lo, band_hi).sum())
    upper = float(np.maximum(integral(band_lo, band_lo), integral(band_hi, band_hi)).sum())
    return _slack(lower, upper)


class _GapSums:
    """Prefix sums over a sorted sample to integrate functions of its CDF ``G`` quickly."""

    def __init__(self, sample: np.ndarray) -> None:
        self.sample = sample
        self.m = sample.size
        gaps = np.diff(sample)
        self.length = np.r_[0.0, np.cumsum(gaps)]  # Σ_{s<t} gap_s
        gaps *= np.arange(1, self.m, dtype=np.float64)
        self.weighted = np.r_[0.0, np.cumsum(gaps)]  # Σ_{s<t} (s + 1) gap_s

    def distance(
        self,
        lo_count: np.ndarray,
        hi_count: np.ndarray,
        n: int,
        first: np.ndarray,
        last: np.ndarray,
        left: np.ndarray,
        right: np.ndarray,
    ) -> np.ndarray:
        """Per cell ``[left, right)``: ∫ max(0, lo - G, G - hi) dx with lo, hi = count / n.

        On the cell ``G * m`` is ``first`` up to the first value inside, then steps by one
        at each value, and is ``last`` after the last value inside; between values s and
        s+1 (gap s) it is s + 1.
        """
        m, sample = self.m, self.sample
        lo, hi = lo_count / n, hi_count / n

        def dist(k: np.ndarray) -> np.ndarray:
            g = k / m
            return np.asarray(np.maximum(0.0, np.maximum(lo - g, g - hi)))

        inside = last > first  # at least one value strictly inside the cell
        at_first = sample[np.minimum(first, m - 1)]
        at_last = sample[np.maximum(last - 1, 0)]
        head = np.where(inside, at_first - left, right - left) * dist(first)
        tail = np.where(inside, (right - at_last) * dist(last), 0.0)
        # Gaps first .. last-2: G*m = s+1 <= lo*m below s = floor(lo*m), > hi*m from floor(hi*m).
        start = np.where(inside, first, 0)
        stop = np.where(inside, last - 1, 0)
        under = np.clip((lo_count * m) // n, start, stop)
        over = np.clip((hi_count * m) // n, start, stop)
        below = (
            lo * (self.length[under] - self.length[start])
            - (self.weighted[under] - self.weighted[start]) / m
        )
        above = (self.weighted[stop] - self.weighted[over]) / m - hi * (
            self.length[stop] - self.length[over]
        )
        return np.asarray(head + tail + np.maximum(below, 0.0) + np.maximum(above, 0.0))


def ks_interval(ref: Binned, cur: Binned) -> tuple[float, float]:
    """Lower and upper bound of the KS p-value between the two binned samples."""
    n, m = ref.size, cur.size
    a = np.r_[0, np.cumsum(ref.counts)]
    b = np.r_[0, np.cumsum(cur.counts)]
    # Smallest possible statistic: |F - G| where both are known, at the edges.
    known = np.abs(a / n - b / m)
    k = int(np.argmax(known))
    d_min = (int(a[k]), int(b[k]))
    # Largest possible statistic: within a cell one CDF at its top, the other at its bottom.
    up = a[1:] / n - b[:-1] / m
    down = b[1:] / m - a[:-1] / n
    i, j = int(np.argmax(up)), int(np.argmax(down))
    d_max = (int(a[i + 1]), int(b[i])) if up[i] >= down[j] else (int(a[j]), int(b[j + 1]))
    p_low = ks_pvalue_at(d_max[0], d_max[1], n, m)
    p_high = ks_pvalue_at(d_min[0], d_min[1], n, m)
    low, high = _slack(min(p_low, p_high), max(p_low, p_high))
    return max(low, 0.0), min(high, 1.0)


def _share_intervals(side: Binned, coarse: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Interval of the share of ``side`` in each coarse bin, and whether all are exact."""
    if side.sample is not None:
        shares = histogram_sorted(side.sample, coarse) / side.sample.size
        return shares, shares, True
    edges, counts, bins = side.edges, side.counts, coarse.size - 1
    cells = counts.size
    lower = np.maximum(np.r_[side.minimum, edges], side.minimum)
    upper = np.minimum(np.r_[edges, side.maximum], side.maximum)
    # A cell's top is open (values < upper) for the inner half-open bins not cut by the max.
    top_open = np.zeros(cells, dtype=bool)
    top_open[: cells - 2] = True
    top_open &= np.r_[edges, side.maximum] <= side.maximum
    first = np.asarray(np.clip(np.searchsorted(coarse, lower, side="right") - 1, 0, bins - 1))
    last_closed = np.searchsorted(coarse, upper, side="right") - 1
    last_open = np.searchsorted(coarse, upper, side="left") - 1
    last = np.asarray(np.clip(np.where(top_open, last_open, last_closed), 0, bins - 1))
    last = np.maximum(last, first)
    used = counts > 0
    exact = used & (first == last)
    spread = used & ~exact
    known = np.bincount(first[exact], weights=counts[exact], minlength=bins)
    delta = np.zeros(bins + 1)
    np.add.at(delta, first[spread], counts[spread])
    np.add.at(delta, last[spread] + 1, -counts[spread])
    extra = np.cumsum(delta)[:bins]
    n = side.size
    low = known / n
    high = np.minimum((known + extra) / n, 1.0 - (low.sum() - low))
    return low, np.maximum(high, low), not spread.any()


def _js_term(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    mid = (p + q) / 2.0
    return np.asarray(0.5 * (rel_entr(p, mid) + rel_entr(q, mid)), dtype=np.float64)


def _box_bounds(
    f: Callable[[np.ndarray, np.ndarray], np.ndarray],
    p_lo: np.ndarray,
    p_hi: np.ndarray,
    q_lo: np.ndarray,
    q_hi: np.ndarray,
) -> tuple[float, float]:
    """Sum over bins of the min and max of ``f`` (convex, growing with |p - q|) on each box."""
    corners = np.stack([f(p_lo, q_lo), f(p_lo, q_hi), f(p_hi, q_lo), f(p_hi, q_hi)])
    high = corners.max(axis=0)
    meets = (p_lo <= q_hi) & (q_lo <= p_hi)
    low = np.where(meets, 0.0, np.where(p_lo > q_hi, f(p_lo, q_hi), f(p_hi, q_lo)))
    return float(low.sum()), float(high.sum())


def binned_interval(method: str, ref: Binned, cur: Binned, integer: bool) -> tuple[float, float]:
    """Bounds of Evidently's JS distance or PSI on Sturges bins, from two binned samples."""
    low_all, high_all = min(ref.minimum, cur.minimum), max(ref.maximum, cur.maximum)
    coarse = sturges_edges(low_all, high_all, ref.size + cur.size, integer)
    p_lo, p_hi, p_exact = _share_intervals(ref, coarse)
    q_lo, q_hi, q_exact = _share_intervals(cur, coarse)
    if method == JENSENSHANNON:
        low, high = _box_bounds(_js_term, p_lo, p_hi, q_lo, q_hi)
        return _slack(float(np.sqrt(max(low, 0.0))), float(np.sqrt(max(high, 0.0))))
    if method != PSI:
        raise InvalidArgumentError(
            f"Method must be jensenshannon or psi to bound on bins but got {method!r}"
        )
    p_lo, p_hi = _fill_interval(p_lo, p_hi, p_exact, ref.size)
    q_lo, q_hi = _fill_interval(q_lo, q_hi, q_exact, cur.size)
    return _slack(*_box_bounds(psi_terms, p_lo, p_hi, q_lo, q_hi))


def _fill_interval(
    low: np.ndarray, high: np.ndarray, exact: bool, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Share intervals after PSI's filling of empty bins.

    The fill is ``m / 1e6`` when the smallest non-empty share ``m`` is at most 1e-4, else
    1e-4; ``m`` is at least ``1/n`` and at least the lower share of any bin that may be
    non-empty, and at most the upper share of any bin that is surely non-empty.
    """
    if exact:
        filled = fill_empty(low)
        return filled, filled
    tiny = 1.0 / n
    maybe_full = high > 0
    smallest_low = float(np.maximum(low, tiny)[maybe_full].min()) if maybe_full.any() else tiny
    surely_full = low > 0
    smallest_high = float(high[surely_full].min()) if surely_full.any() else 1.0
    if smallest_low > FILL:
        fill_low = fill_high = FILL
    elif smallest_high <= FILL:
        fill_low, fill_high = smallest_low / 1e6, smallest_high / 1e6
    else:
        fill_low, fill_high = smallest_low / 1e6, FILL
    maybe_empty = low == 0
    return (
        np.where(maybe_empty, np.where(maybe_full, min(fill_low, tiny), fill_low), low),
        np.where(maybe_empty, np.maximum(high, fill_high), high),
    )

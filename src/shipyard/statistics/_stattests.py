"""The drift statistics, computed exactly as Evidently 0.7 computes them.

Each definition follows a file of ``evidentlyai/evidently`` (written anew here, not copied):

- ``src/evidently/legacy/calculations/stattests/ks_stattest.py``: ``scipy.stats.ks_2samp``
  p-value, two-sided, ``method="auto"``; drift when ``p <= threshold`` (0.05).
- ``.../stattests/chisquare_stattest.py``: ``scipy.stats.chisquare(f_obs, f_exp)`` over the
  union of categories, ``f_exp = reference count * n_current / n_reference``; drift when
  ``p < threshold`` (0.05). A category absent from the reference has ``f_exp = 0``: the
  statistic is infinite and p = 0.
- ``.../stattests/z_stattest.py``: two-proportion Z-test of "value is not the smallest
  category" (``sorted(keys)[0]``), pooled variance, ``p = 2 * (1 - Phi(|z|))``; p = 1 when
  both sides hold the same single value; drift when ``p < threshold`` (0.05).
- ``.../stattests/wasserstein_distance_norm.py``: ``wasserstein_distance(ref, cur) /
  max(np.std(ref), 0.001)`` (population std, ``ddof=0``); drift when ``>= threshold`` (0.1).
- ``.../stattests/jensenshannon.py``: ``scipy.spatial.distance.jensenshannon`` (natural log)
  of the binned frequencies, empty bins left at 0; drift when ``>= threshold`` (0.1).
- ``.../stattests/psi.py``: ``sum((p - q) * ln(p / q))`` of the binned frequencies with
  empty bins filled; drift when ``>= threshold`` (0.1).
- ``.../stattests/utils.py`` (``get_binned_data``), used by JS and PSI: a numeric column with
  more than 20 distinct reference values is cut by ``np.histogram_bin_edges`` of reference
  and current together with ``bins="sturges"``; anything else counts each distinct value of
  the union. Frequencies are counts / sample size. PSI fills each side's empty bins with
  ``min(nonzero) / 1e6`` when that minimum is ``<= 1e-4``, else with ``1e-4``.
- ``.../stattests/registry.py`` (``_get_default_stattest``): see :func:`default_method`.

Wasserstein is computed without scipy's argsort of the concatenation, exactly, by
:mod:`shipyard.statistics._wasserstein`.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.spatial import distance

from shipyard.core.exceptions import InvalidArgumentError
from shipyard.statistics._sources import CATEGORICAL, NUMERIC
from shipyard.statistics._wasserstein import wasserstein

KS, CHISQUARE, Z, WASSERSTEIN, JENSENSHANNON, PSI = (
    "ks",
    "chisquare",
    "z",
    "wasserstein",
    "jensenshannon",
    "psi",
)
METHODS = (KS, CHISQUARE, Z, WASSERSTEIN, JENSENSHANNON, PSI)
DEFAULT_THRESHOLDS = {
    KS: 0.05,
    CHISQUARE: 0.05,
    Z: 0.05,
    WASSERSTEIN: 0.1,
    JENSENSHANNON: 0.1,
    PSI: 0.1,
}
# Which column kinds each test accepts (Evidently's ``allowed_feature_types``).
ALLOWED_KINDS = {
    KS: (NUMERIC,),
    WASSERSTEIN: (NUMERIC,),
    CHISQUARE: (CATEGORICAL,),
    Z: (CATEGORICAL,),
    JENSENSHANNON: (NUMERIC, CATEGORICAL),
    PSI: (NUMERIC, CATEGORICAL),
}
SMALL_REFERENCE = 1000  # reference rows up to which p-value tests are the default
FEW_VALUES = 5  # distinct values up to which a numeric column is tested as categories
BINNING_VALUES = 20  # distinct reference values above which JS / PSI cut numeric data into bins
_STD_FLOOR = 0.001
FILL = 1e-4  # PSI's share for an empty bin (unless a share is smaller)


def drifted(method: str, score: float, threshold: float) -> bool:
    """Evidently's direction: KS ``p <= t``; chi-squared and Z ``p < t``; distances ``>= t``."""
    if method == KS:
        return bool(score <= threshold)
    if method in (CHISQUARE, Z):
        return bool(score < threshold)
    return bool(score >= threshold)


def default_method(kind: str, reference_count: int, distinct: int) -> str:
    """Evidently's default test for a column.

    ``distinct`` counts the distinct values of reference and current together. Reference
    of at most 1,000 values: numeric with more than 5 distinct values → KS, else (and for
    categorical) chi-squared when more than 2 distinct values, Z-test otherwise. Larger
    reference: numeric with more than 5 distinct values → Wasserstein (normed), everything
    else → Jensen-Shannon.
    """
    if reference_count <= SMALL_REFERENCE:
        if kind == NUMERIC and distinct > FEW_VALUES:
            return KS
        return CHISQUARE if distinct > 2 else Z
    if kind == NUMERIC and distinct > FEW_VALUES:
        return WASSERSTEIN
    return JENSENSHANNON


# --- numeric samples (sorted, finite float64) -------------------------------------------


def distinct_count(sorted_values: np.ndarray) -> int:
    """Number of distinct values of a sorted array."""
    if sorted_values.size == 0:
        return 0
    return 1 + int(np.count_nonzero(sorted_values[1:] != sorted_values[:-1]))


def unique_counts(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of a sorted array and how often each occurs."""
    if sorted_values.size == 0:
        return sorted_values[:0], np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    counts = np.diff(np.r_[starts, sorted_values.size])
    return sorted_values[starts], counts.astype(np.int64)


def ks_pvalue(reference: np.ndarray, current: np.ndarray) -> float:
    """Two-sample KS p-value (scipy ``ks_2samp``, two-sided, ``method="auto"``)."""
    return float(stats.ks_2samp(reference, current).pvalue)


def ks_pvalue_at(a: int, b: int, n1: int, n2: int) -> float:
    """The p-value ``ks_2samp`` gives when its statistic is ``|a/n1 - b/n2|``.

    The p-value depends on the statistic and the two sizes only, so where scipy computes
    the exact distribution (both sizes up to 10,000) it is read off two synthetic samples
    with that statistic; above, scipy's Smirnov asymptotic ``kstwo.sf(d, round(en))`` is
    reproduced.
    """
    if max(n1, n2) > 10_000:
        d = abs(a / n1 - b / n2)
        big, small = sorted((float(n1), float(n2)), reverse=True)
        return float(np.clip(stats.kstwo.sf(d, np.round(big * small / (big + small))), 0.0, 1.0))
    first = np.repeat(np.array([0.0, 2.0]), [a, n1 - a])
    second = np.repeat(np.array([0.0, 2.0]), [b, n2 - b])
    return ks_pvalue(first, second)


def wasserstein_norm(reference: np.ndarray, current: np.ndarray) -> float:
    """Evidently's normed Wasserstein distance: W1 / max(std(reference), 0.001)."""
    return wasserstein(reference, current) / max(float(np.std(reference)), _STD_FLOOR)


def sturges_edges(low: float, high: float, size: int, integer: bool) -> np.ndarray:
    """``np.histogram_bin_edges(concat, bins="sturges")`` from the range and size alone.

    ``integer`` is true when numpy would see an integer array (then bins are at least 1
    wide), i.e. integer columns without missing values on either side.
    """
    first, last = np.float64(low), np.float64(high)
    if first == last:
        first, last = first - 0.5, last + 0.5
    width = (last - first) / (np.log2(size) + 1.0)
    if integer and width < 1:
        width = np.float64(1.0)
    bins = int(np.ceil((last - first) / width))
    return np.linspace(first, last, bins + 1, endpoint=True)


def histogram_sorted(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``np.histogram(values, edges)[0]`` of a sorted array (last bin closed)."""
    at = np.searchsorted(sorted_values, edges, side="left")
    at[-1] = np.searchsorted(sorted_values, edges[-1], side="right")
    return np.diff(at).astype(np.int64)


def sturges_counts(
    reference: np.ndarray, current: np.ndarray, integer: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Evidently's ``get_binned_data`` counts for a numeric column with more than 20 distinct
    reference values (sorted samples): Sturges bins over both samples."""
    low = min(reference[0], current[0])
    high = max(reference[-1], current[-1])
    edges = sturges_edges(low, high, reference.size + current.size, integer)
    return histogram_sorted(reference, edges), histogram_sorted(current, edges)


def align_values(
    reference: tuple[np.ndarray, np.ndarray], current: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Counts of two (distinct values, counts) pairs over the union of the values, ascending."""
    (ref_values, ref_counts), (cur_values, cur_counts) = reference, current
    union = np.union1d(ref_values, cur_values)
    ref = np.zeros(union.size, dtype=np.int64)
    cur = np.zeros(union.size, dtype=np.int64)
    ref[np.searchsorted(union, ref_values)] = ref_counts
    cur[np.searchsorted(union, cur_values)] = cur_counts
    return ref, cur


# --- counts over aligned bins or categories ----------------------------------------------


def fill_empty(percents: np.ndarray) -> np.ndarray:
    """Evidently's PSI filling: zeros become min(nonzero)/1e6 if that is <= 1e-4, else 1e-4."""
    filled = percents.astype(np.float64, copy=True)
    nonzero = filled[filled != 0]
    if nonzero.size == 0 or nonzero.size == filled.size:
        return filled
    smallest = float(nonzero.min())
    filled[filled == 0] = smallest / 1e6 if smallest <= FILL else FILL
    return filled


def psi_terms(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``(p - q) * ln(p / q)`` term by term."""
    return np.asarray((p - q) * np.log(p / q), dtype=np.float64)


def score_counts(method: str, reference: np.ndarray, current: np.ndarray) -> float:
    """Chi-squared, Z, JS or PSI from counts aligned over the same (sorted) categories or bins."""
    n_ref, n_cur = int(reference.sum()), int(current.sum())
    if method == CHISQUARE:
        expected = reference * (n_cur / n_ref)
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(stats.chisquare(current, expected).pvalue)
    if method == Z:
        return z_pvalue(reference, current)
    p, q = reference / n_ref, current / n_cur
    if method == JENSENSHANNON:
        return float(distance.jensenshannon(p, q))
    if method == PSI:
        return float(np.sum(psi_terms(fill_empty(p), fill_empty(q))))
    raise InvalidArgumentError(
        f"Method must be chisquare, z, jensenshannon or psi to score counts but got {method!r}"
    )


def z_pvalue(reference: np.ndarray, current: np.ndarray) -> float:
    """Evidently's Z-test: the smallest category (index 0) against all others."""
    ref_present = np.count_nonzero(reference)
    cur_present = np.count_nonzero(current)
    if ref_present == 1 and cur_present == 1 and np.argmax(reference) == np.argmax(current):
        return 1.0
    n1, n2 = float(reference.sum()), float(current.sum())
    p1 = float(n1 - reference[0]) / n1
    p2 = float(n2 - current[0]) / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - stats.norm.cdf(np.abs(z))))

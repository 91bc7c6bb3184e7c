"""The drift benchmark's workload: seeded reference and current Parquet files.

``write_pair(folder, rows)`` writes ``reference.parquet`` and ``current.parquet`` of ``rows`` rows
each, drawn in order from one ``numpy.random.default_rng(SEED)``: the same ``rows`` always give
the same files. Only numpy and pyarrow are used, so both ``bench/monitor_bench.py`` (shipyard's
virtualenv) and ``bench/monitor_evidently.py`` (``.venv-evidently``) import this module.

Columns (the current file drifts where the table says so):

- ``n0`` … ``n19``: float64. ``n0`` shifted by 0.5 std, ``n1`` scaled by 1.5, ``n2`` lognormal
  with a larger location, ``n3`` exponential with a larger scale, ``n4`` uniform on a shifted,
  wider interval, ``n5`` shifted by 1/15 std (a drift below the usual 0.1 threshold); ``n6`` …
  ``n19`` unchanged. ``n18`` is rounded to 2 decimals (ties), ``n19`` takes 4 values only (0, 1,
  2, 3: Evidently's "≤ 5 unique values" path). Nulls: ``n2`` (1 % reference, 3 % current),
  ``n7`` (0.5 %), ``n12`` (2 %).
- ``c0`` … ``c4``: strings with 10, 20, 30, 40 and 50 categories, Zipf-like frequencies.
  ``c0``'s frequencies are reversed in the current file; ``c1``'s are flattened, one category
  appears only in the current file and one only in the reference; ``c2`` has 2 % nulls;
  ``c3`` and ``c4`` unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SEED = 20_260_601
ROW_GROUP = 100_000
NUMERIC = [f"n{i}" for i in range(20)]
CATEGORICAL = [f"c{i}" for i in range(5)]
CATEGORIES = {"c0": 10, "c1": 20, "c2": 30, "c3": 40, "c4": 50}
DRIFTED = ["n0", "n1", "n2", "n3", "n4", "c0", "c1"]  # by construction; n5 drifts below 0.1
NULLS = {"n2": (0.01, 0.03), "n7": (0.005, 0.005), "n12": (0.02, 0.02), "c2": (0.02, 0.02)}

Draw = Callable[[np.random.Generator, int], np.ndarray]


def _rounded(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.round(rng.normal(0.0, 1.0, n), 2)


def _mixture(rng: np.random.Generator, n: int) -> np.ndarray:
    upper = rng.random(n) < 0.3
    return np.where(upper, rng.normal(4.0, 0.5, n), rng.normal(0.0, 1.0, n))


def _numeric(side: str) -> dict[str, Draw]:
    """How each numeric column is drawn on one side (``reference`` or ``current``)."""
    cur = side == "current"
    return {
        "n0": lambda r, n: r.normal(0.5 if cur else 0.0, 1.0, n),
        "n1": lambda r, n: r.normal(10.0, 3.0 if cur else 2.0, n),
        "n2": lambda r, n: r.lognormal(0.2 if cur else 0.0, 0.5, n),
        "n3": lambda r, n: r.exponential(1.3 if cur else 1.0, n),
        "n4": lambda r, n: r.uniform(0.05, 1.1, n) if cur else r.uniform(0.0, 1.0, n),
        "n5": lambda r, n: r.normal(101.0 if cur else 100.0, 15.0, n),
        "n6": lambda r, n: r.normal(0.0, 1.0, n),
        "n7": lambda r, n: r.normal(-3.0, 0.1, n),
        "n8": lambda r, n: r.standard_t(5, n),
        "n9": lambda r, n: r.gamma(2.0, 2.0, n),
        "n10": lambda r, n: r.beta(2.0, 5.0, n),
        "n11": _mixture,
        "n12": lambda r, n: r.lognormal(3.0, 1.0, n),
        "n13": lambda r, n: r.uniform(-1e6, 1e6, n),
        "n14": lambda r, n: r.normal(0.0, 1e-4, n),  # std far below Evidently's 0.001 floor
        "n15": lambda r, n: r.laplace(0.0, 1.0, n),
        "n16": lambda r, n: r.weibull(1.5, n),
        "n17": lambda r, n: r.chisquare(3.0, n),
        "n18": _rounded,
        "n19": lambda r, n: r.choice(4, n, p=[0.4, 0.3, 0.2, 0.1]).astype(np.float64),
    }


def _frequencies(column: str, side: str) -> np.ndarray:
    """Category probabilities of one categorical column (Zipf-like, exponent 0.8)."""
    k = CATEGORIES[column]
    weights = 1.0 / np.arange(1, k + 1) ** 0.8
    if side == "current" and column == "c0":
        weights = weights[::-1]
    elif column == "c1":
        weights = np.sqrt(weights) if side == "current" else weights.copy()
        weights[-1 if side == "current" else -2] = 0.0  # v19 only in current, v18 only in ref
    return weights / weights.sum()


def _nulls(rng: np.random.Generator, column: str, side: str, n: int) -> np.ndarray | None:
    if column not in NULLS:
        return None
    share = NULLS[column][side == "current"]
    return rng.random(n) < share


def table(rng: np.random.Generator, side: str, rows: int) -> pa.Table:
    """One side's rows, drawn from ``rng`` column after column."""
    arrays: dict[str, pa.Array] = {}
    for name, draw in _numeric(side).items():
        values = draw(rng, rows).astype(np.float64, copy=False)
        arrays[name] = pa.array(values, mask=_nulls(rng, name, side, rows))
    for name in CATEGORICAL:
        labels = pa.array([f"{name}_v{j:02d}" for j in range(CATEGORIES[name])])
        codes = rng.choice(CATEGORIES[name], rows, p=_frequencies(name, side)).astype(np.int32)
        indices = pa.array(codes, mask=_nulls(rng, name, side, rows))
        arrays[name] = pa.DictionaryArray.from_arrays(indices, labels).cast(pa.string())
    return pa.table(arrays)


def write_pair(folder: Path, rows: int, seed: int = SEED) -> tuple[Path, Path]:
    """Write ``reference.parquet`` and ``current.parquet`` (``rows`` rows each) in ``folder``."""
    rng = np.random.default_rng(seed)
    paths = []
    for side in ("reference", "current"):
        path = folder / f"{side}.parquet"
        pq.write_table(table(rng, side, rows), path, row_group_size=ROW_GROUP)
        paths.append(path)
    return paths[0], paths[1]

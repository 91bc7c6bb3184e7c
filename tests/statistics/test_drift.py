"""Drift statistics on rows: each one against scipy and Evidently's definitions, the defaults,
the options, the dataset share, and every kind of input giving the same report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats
from scipy.spatial import distance

from shipyard.core.exceptions import InvalidArgumentError, SchemaError
from shipyard.statistics import ColumnDrift, DriftOptions, DriftReport, compare
from shipyard.statistics._stattests import drifted, ks_pvalue_at, sturges_edges
from shipyard.statistics._wasserstein import wasserstein, wasserstein_sorted

# --- what Evidently computes, written from its definitions with numpy and scipy ----------


def clean(values: np.ndarray) -> np.ndarray:
    """Evidently drops nulls, NaN and infinities before a test."""
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def expected_wasserstein(ref: np.ndarray, cur: np.ndarray) -> float:
    return float(stats.wasserstein_distance(ref, cur) / max(np.std(ref), 0.001))


def expected_binned(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``get_binned_data``: Sturges bins over both samples, or counts of each value."""
    if len(np.unique(ref)) > 20:
        edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
        return np.histogram(ref, edges)[0] / len(ref), np.histogram(cur, edges)[0] / len(cur)
    keys = np.union1d(ref, cur)
    p = np.array([np.sum(ref == k) for k in keys]) / len(ref)
    q = np.array([np.sum(cur == k) for k in keys]) / len(cur)
    return p, q


def filled(percents: np.ndarray) -> np.ndarray:
    out = percents.astype(float).copy()
    smallest = out[out != 0].min()
    out[out == 0] = smallest / 1e6 if smallest <= 1e-4 else 1e-4
    return out


def expected_psi(p: np.ndarray, q: np.ndarray) -> float:
    p, q = filled(p), filled(q)
    return float(np.sum((p - q) * np.log(p / q)))


def category_percents(
    ref: list[object], cur: list[object]
) -> tuple[list[object], np.ndarray, np.ndarray]:
    keys = sorted({v for v in ref + cur if v is not None})
    p = np.array([ref.count(k) for k in keys]) / sum(v is not None for v in ref)
    q = np.array([cur.count(k) for k in keys]) / sum(v is not None for v in cur)
    return keys, p, q


def expected_z(ref: list[object], cur: list[object]) -> float:
    ref = [v for v in ref if v is not None]
    cur = [v for v in cur if v is not None]
    if len(set(ref)) == 1 and len(set(cur)) == 1 and set(ref) == set(cur):
        return 1.0
    first = sorted(set(ref) | set(cur))[0]
    n1, n2 = len(ref), len(cur)
    p1 = sum(v != first for v in ref) / n1
    p2 = sum(v != first for v in cur) / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return float(2 * (1 - stats.norm.cdf(abs(z))))


def one(ref: object, cur: object, method: str | None = None, **kw: object) -> ColumnDrift:
    options = DriftOptions(methods={"x": method} if method else {}, **kw)  # type: ignore[arg-type]
    return compare(pa.table({"x": ref}), pa.table({"x": cur}), options).columns[0]


def with_gaps(values: np.ndarray, rng: np.random.Generator) -> pa.Array:
    """The values with some nulls, NaN and infinities mixed in."""
    out = values.astype(float).copy()
    out[rng.random(out.size) < 0.03] = np.nan
    out[rng.random(out.size) < 0.01] = np.inf
    mask = rng.random(out.size) < 0.03
    return pa.array(out, mask=mask)


# --- numeric statistics against scipy -----------------------------------------------------

SIZES = [(40, 40), (300, 701), (1500, 1500), (200_000, 200_000), (200_000, 150_001)]


@pytest.mark.parametrize(("n", "m"), SIZES)
def test_wasserstein_matches_scipy_with_missing_values(n: int, m: int) -> None:
    rng = np.random.default_rng(n + m)
    ref, cur = with_gaps(rng.normal(0, 2, n), rng), with_gaps(rng.gamma(2, 1, m), rng)
    result = one(ref, cur, "wasserstein")
    expected = expected_wasserstein(
        clean(ref.to_numpy(zero_copy_only=False)), clean(cur.to_numpy(zero_copy_only=False))
    )
    assert result.score == pytest.approx(expected, rel=1e-10)
    assert (result.method, result.threshold, result.source, result.bound) == (
        "wasserstein",
        0.1,
        "raw",
        None,
    )
    assert result.drifted is (expected >= 0.1)


SAMPLERS = [
    lambda rng, n: rng.normal(0, 1, n),
    lambda rng, n: rng.integers(0, 7, n).astype(float),  # heavy ties
    lambda rng, n: np.round(rng.normal(0, 1, n), 2),  # values on bin edges
    lambda rng, n: rng.lognormal(0, 2, n),  # most values in few equal-width bins
    lambda rng, n: rng.standard_t(1, n),
]


@pytest.mark.parametrize("seed", range(40))
def test_wasserstein_kernels_match_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    first, second = SAMPLERS[seed % 5], SAMPLERS[(seed // 5) % 5]
    for n, m in [(1, 1), (1, 9), (37, 37), (180, 61), (5000, 4999)]:
        u = first(rng, n)
        v = second(rng, m) if seed % 2 else first(rng, m) + 0.01
        expected = stats.wasserstein_distance(u, v)
        close = pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert wasserstein(u, v) == close
        assert wasserstein_sorted(np.sort(u), np.sort(v)) == close


@pytest.mark.parametrize(("n", "m"), SIZES)
def test_ks_matches_scipy(n: int, m: int) -> None:
    rng = np.random.default_rng(n * 3 + m)
    ref, cur = rng.normal(0, 1, n), rng.normal(0.05, 1, m)
    result = one(ref, cur, "ks")
    assert result.score == stats.ks_2samp(ref, cur).pvalue
    assert result.drifted is (result.score <= 0.05)


@pytest.mark.parametrize(("n1", "n2"), [(40, 60), (1000, 700), (20_000, 15_000)])
def test_ks_pvalue_of_a_statistic_is_scipys(n1: int, n2: int) -> None:
    rng = np.random.default_rng(n1)
    first, second = rng.normal(0, 1, n1), rng.normal(0.1, 1, n2)
    observed = stats.ks_2samp(first, second)
    at = observed.statistic_location
    a, b = int(np.sum(first <= at)), int(np.sum(second <= at))
    assert abs(a / n1 - b / n2) == pytest.approx(observed.statistic)
    assert ks_pvalue_at(a, b, n1, n2) == pytest.approx(observed.pvalue, rel=1e-9)


@pytest.mark.parametrize("method", ["jensenshannon", "psi"])
@pytest.mark.parametrize(
    "make",
    [
        lambda rng, n: rng.normal(0, 1, n),
        lambda rng, n: rng.lognormal(0, 1, n),
        lambda rng, n: rng.integers(0, 60, n),  # integer column: bins at least 1 wide
        lambda rng, n: rng.integers(0, 12, n) / 2,  # <= 20 distinct values: counted per value
    ],
)
@pytest.mark.parametrize(("n", "m"), [(700, 333), (200_000, 150_001)])
def test_binned_statistics_match_evidently(method: str, make: object, n: int, m: int) -> None:
    rng = np.random.default_rng(n + m)
    ref, cur = make(rng, n), make(rng, m) * 1.1  # type: ignore[operator]
    if np.issubdtype(np.asarray(ref).dtype, np.integer):
        cur = make(rng, m) + 3  # type: ignore[operator]
    result = one(ref, cur, method)
    p, q = expected_binned(np.asarray(ref), np.asarray(cur))
    expected = (
        float(distance.jensenshannon(p, q)) if method == "jensenshannon" else expected_psi(p, q)
    )
    assert result.score == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert result.drifted is (expected >= 0.1)


def test_integer_column_with_nulls_is_binned_as_floats() -> None:
    rng = np.random.default_rng(5)
    ref = pa.array(rng.integers(0, 40, 5000), mask=rng.random(5000) < 0.1)
    cur = pa.array(rng.integers(0, 45, 4000))
    p, q = expected_binned(clean(ref.to_numpy(zero_copy_only=False)), cur.to_numpy().astype(float))
    assert one(ref, cur, "jensenshannon").score == pytest.approx(
        distance.jensenshannon(p, q), rel=1e-12
    )


@pytest.mark.parametrize("size", [10, 21, 1000, 2_000_001, 7])
@pytest.mark.parametrize("integer", [False, True])
def test_sturges_edges_are_numpys(size: int, integer: bool) -> None:
    low, high = (3, 97) if integer else (-1.234, 5.678)
    sample = np.r_[low, high, np.full(size - 2, low)]
    sample = sample.astype(np.int64) if integer else sample
    np.testing.assert_array_equal(
        sturges_edges(low, high, size, integer), np.histogram_bin_edges(sample, bins="sturges")
    )


def test_constant_reference_uses_the_std_floor() -> None:
    ref, cur = np.full(2000, 3.0), np.full(1500, 3.002)
    assert one(ref, cur, "wasserstein").score == pytest.approx(0.002 / 0.001)
    assert one(ref, np.full(1500, 3.0), "wasserstein").score == 0.0
    assert one(ref, cur).method == "jensenshannon"  # two distinct values in all


# --- categorical statistics ---------------------------------------------------------------


def categories(
    rng: np.random.Generator, values: list[str], n: int, p_null: float = 0.05
) -> list[object]:
    out: list[object] = list(rng.choice(values, n))
    return [None if rng.random() < p_null else v for v in out]


@pytest.mark.parametrize("n", [600, 200_000])
def test_categorical_statistics_with_a_new_category(n: int) -> None:
    rng = np.random.default_rng(n)
    ref = categories(rng, ["a", "b", "c"], n)
    cur = categories(rng, ["a", "b", "c", "d"], n // 2)  # "d" only in current
    keys, p, q = category_percents(ref, cur)
    assert keys == ["a", "b", "c", "d"]
    assert one(ref, cur, "jensenshannon").score == pytest.approx(
        distance.jensenshannon(p, q), rel=1e-12
    )
    assert one(ref, cur, "psi").score == pytest.approx(expected_psi(p, q), rel=1e-12)
    chi = one(ref, cur, "chisquare")  # "d" is never expected: infinite statistic
    assert (chi.score, chi.drifted) == (0.0, True)
    assert one(ref, cur, "z").score == pytest.approx(expected_z(ref, cur), rel=1e-12)


def test_chisquare_matches_scipy_without_new_categories() -> None:
    rng = np.random.default_rng(3)
    ref, cur = categories(rng, list("abcde"), 900), categories(rng, list("abcde"), 700)
    _, p, q = category_percents(ref, cur)
    n_cur = sum(v is not None for v in cur)
    expected = stats.chisquare(q * n_cur, p * n_cur).pvalue
    result = one(ref, cur)
    assert (result.method, result.threshold) == ("chisquare", 0.05)
    assert result.score == pytest.approx(expected, rel=1e-12)


def test_boolean_columns_are_categorical() -> None:
    rng = np.random.default_rng(11)
    ref, cur = list(rng.random(800) > 0.5), list(rng.random(600) > 0.4)
    small = one(ref, cur)
    assert (small.kind, small.method) == ("categorical", "z")
    assert small.score == pytest.approx(expected_z(ref, cur), rel=1e-12)
    ref, cur = list(rng.random(3000) > 0.5), list(rng.random(2000) > 0.4)
    _, p, q = category_percents(ref, cur)
    large = one(ref, cur)
    assert large.method == "jensenshannon"
    assert large.score == pytest.approx(distance.jensenshannon(p, q), rel=1e-12)


def test_z_test_of_one_shared_value_is_one() -> None:
    assert one(["x"] * 30, ["x"] * 20).score == 1.0


def test_z_test_sets_the_smallest_value_against_the_rest() -> None:
    rng = np.random.default_rng(2)
    ref, cur = categories(rng, ["b", "c", "a"], 500, 0), categories(rng, ["c", "a"], 400, 0)
    assert one(ref, cur, "z").score == pytest.approx(expected_z(ref, cur), rel=1e-12)


def test_forced_categorical_numbers() -> None:
    rng = np.random.default_rng(4)
    ref, cur = rng.integers(0, 4, 3000), rng.integers(0, 5, 2000)
    result = one(ref, cur, categorical=frozenset({"x"}))
    _, p, q = category_percents(list(ref), list(cur))
    assert (result.kind, result.method) == ("categorical", "jensenshannon")
    assert result.score == pytest.approx(distance.jensenshannon(p, q), rel=1e-12)


# --- default selection, options, dataset drift ------------------------------------------


@pytest.mark.parametrize(
    ("ref_values", "cur_values", "n", "kind", "method"),
    [
        (100, 100, 1000, "numeric", "ks"),  # <= 1,000 reference values
        (100, 100, 1001, "numeric", "wasserstein"),
        (3, 3, 1000, "numeric", "chisquare"),  # few values: tested as categories
        (2, 2, 1000, "numeric", "z"),
        (2, 3, 1000, "numeric", "chisquare"),  # distinct values of both sides count
        (5, 5, 5000, "numeric", "jensenshannon"),
        (6, 6, 5000, "numeric", "wasserstein"),
    ],
)
def test_default_method(ref_values: int, cur_values: int, n: int, kind: str, method: str) -> None:
    rng = np.random.default_rng(0)
    ref = np.r_[np.arange(ref_values), rng.integers(0, ref_values, n - ref_values)]
    cur = np.r_[np.arange(cur_values), rng.integers(0, cur_values, 500)]
    result = one(ref.astype(float), cur.astype(float))
    assert (result.kind, result.method) == (kind, method)


def test_reference_size_counts_values_after_nulls() -> None:
    rng = np.random.default_rng(1)
    ref = pa.array(rng.normal(size=1100), mask=np.arange(1100) < 200)  # 900 values
    assert one(ref, rng.normal(size=500)).method == "ks"


def test_categorical_defaults() -> None:
    assert one(["a", "b", "c"] * 300, ["a", "b"] * 300).method == "chisquare"
    assert one(["a", "b"] * 300, ["a", "b"] * 300).method == "z"
    assert one(["a", "b"] * 600, ["a", "c"] * 300).method == "jensenshannon"


def test_overrides_and_thresholds() -> None:
    rng = np.random.default_rng(8)
    ref = pa.table({"x": rng.normal(0, 1, 3000), "y": rng.normal(0, 1, 3000)})
    cur = pa.table({"x": rng.normal(0.05, 1, 3000), "y": rng.normal(0.05, 1, 3000)})
    options = DriftOptions(methods={"x": "psi"}, thresholds={"x": 1e-6, "y": 0.5})
    report = compare(ref, cur, options)
    x, y = report.column("x"), report.column("y")
    assert (x.method, x.threshold, x.drifted) == ("psi", 1e-6, True)
    assert (y.method, y.threshold, y.drifted) == ("wasserstein", 0.5, False)


@pytest.mark.parametrize(
    ("method", "score", "threshold", "expected"),
    [
        ("ks", 0.05, 0.05, True),
        ("chisquare", 0.05, 0.05, False),
        ("z", 0.049, 0.05, True),
        ("wasserstein", 0.1, 0.1, True),
        ("jensenshannon", 0.099, 0.1, False),
        ("psi", 0.2, 0.1, True),
    ],
)
def test_direction_of_each_test(
    method: str, score: float, threshold: float, expected: bool
) -> None:
    assert drifted(method, score, threshold) is expected


def test_dataset_drift_share() -> None:
    rng = np.random.default_rng(9)
    ref = pa.table({name: rng.normal(0, 1, 2000) for name in "abcd"})
    cur = pa.table(
        {
            "a": rng.normal(3, 1, 2000),
            "b": rng.normal(3, 1, 2000),
            "c": rng.normal(0, 1, 2000),
            "d": rng.normal(0, 1, 2000),
        }
    )
    report = compare(ref, cur)
    assert report.drift_share == 0.5
    assert report.dataset_drift  # drifted share >= 0.5
    assert not compare(ref, cur, DriftOptions(share_threshold=0.6)).dataset_drift
    assert (report.reference_rows, report.current_rows) == (2000, 2000)
    assert compare(ref, cur, columns=["a"]).drift_share == 1.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            lambda: DriftOptions(methods={"x": "anderson"}),
            "Method 'anderson' for column 'x' is unknown",
        ),
        (lambda: DriftOptions(share_threshold=0), "share_threshold must be a number in"),
        (lambda: DriftOptions(thresholds={"x": float("nan")}), "must be a finite number"),
    ],
)
def test_invalid_options(options: object, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        options()  # type: ignore[operator]


def test_method_must_fit_the_kind() -> None:
    with pytest.raises(InvalidArgumentError, match="'ks' does not apply to categorical column 'x'"):
        one(["a", "b"] * 10, ["a"] * 10, "ks")
    with pytest.raises(InvalidArgumentError, match="'z' does not apply to numeric column 'x'"):
        one([1.0, 2.0] * 10, [1.0] * 10, "z")


def test_options_naming_unknown_columns() -> None:
    with pytest.raises(
        InvalidArgumentError, match=r"Options name columns the reference does not have: \['typo'\]"
    ):
        compare(
            pa.table({"x": [1.0]}), pa.table({"x": [1.0]}), DriftOptions(thresholds={"typo": 0.2})
        )


def test_the_options_of_some_columns_test_them_alike() -> None:
    options = DriftOptions(
        methods={"x": "psi", "prediction": "ks"},
        thresholds={"x": 0.2, "proba_1": 0.3},
        share_threshold=0.7,
        categorical=frozenset({"plan", "prediction"}),
    )
    only = options.only(["x", "plan"])
    assert only == DriftOptions(
        methods={"x": "psi"},
        thresholds={"x": 0.2},
        share_threshold=0.7,
        categorical=frozenset({"plan"}),
    )
    rng = np.random.default_rng(5)
    table = pa.table({"x": rng.normal(size=300), "plan": rng.choice(["a", "b"], 300)})
    assert compare(table, table, only) == compare(table, table, options.only(["x", "plan", "y"]))
    options.check_columns(["x", "plan", "prediction", "proba_1"])
    with pytest.raises(InvalidArgumentError, match=r"does not have: \['prediction', 'proba_1'\]"):
        options.check_columns(["x", "plan"])


def test_missing_column_in_current() -> None:
    with pytest.raises(SchemaError, match="Column 'y' is not in the current data") as info:
        compare(pa.table({"x": [1.0], "y": [2.0]}), pa.table({"x": [1.0]}))
    assert info.value.column == "y"


def test_type_mismatch_between_sides() -> None:
    with pytest.raises(
        SchemaError, match="Column 'x' is numeric but has type string in the current data"
    ):
        compare(pa.table({"x": [1.0]}), pa.table({"x": ["1"]}))


def test_column_of_nulls_only() -> None:
    with pytest.raises(InvalidArgumentError, match="no value in the current data once nulls"):
        compare(pa.table({"x": [1.0, 2.0]}), pa.table({"x": pa.array([None, None], pa.float64())}))


def test_unsupported_columns_are_skipped_unless_named() -> None:
    ref = pa.table({"x": [1.0, 2.0], "when": pa.array([1, 2], pa.timestamp("s"))})
    assert [c.column for c in compare(ref, ref).columns] == ["x"]
    with pytest.raises(InvalidArgumentError, match="neither numeric nor categorical"):
        compare(ref, ref, columns=["when"])


# --- inputs --------------------------------------------------------------------------------


def mixed(rng: np.random.Generator, n: int, shift: float) -> pa.Table:
    return pa.table(
        {
            "num": with_gaps(rng.normal(shift, 1, n), rng),
            "count": rng.integers(0, 9, n),
            "city": pa.array(categories(rng, ["oslo", "rome", "lima", "kyiv"], n)),
            "flag": rng.random(n) > 0.5 + shift,
        }
    )


def test_parquet_paths_pandas_and_tables_give_the_same_report(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    ref, cur = mixed(rng, 4000, 0.0), mixed(rng, 3000, 0.1)
    pq.write_table(ref.slice(0, 1500), tmp_path / "ref-1.parquet")
    pq.write_table(ref.slice(1500), tmp_path / "ref-2.parquet", row_group_size=700)
    (tmp_path / "cur").mkdir()
    pq.write_table(cur, tmp_path / "cur" / "part-0.parquet")
    from_tables = compare(ref, cur)
    from_files = compare(
        [tmp_path / "ref-1.parquet", str(tmp_path / "ref-2.parquet")], tmp_path / "cur"
    )
    from_pandas = compare(ref.to_pandas(), cur.to_pandas())
    assert from_files.to_dict() == from_tables.to_dict()
    assert from_pandas.to_dict() == from_tables.to_dict()
    methods = [c.method for c in from_tables.columns]
    assert methods == ["wasserstein", "wasserstein", "jensenshannon", "jensenshannon"]


def test_from_dict_reads_back_what_to_dict_wrote() -> None:
    rng = np.random.default_rng(14)
    report = compare(mixed(rng, 500, 0.0), mixed(rng, 400, 0.2), threads=1)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert DriftReport.from_dict(data) == report
    assert DriftReport.from_dict(data).to_dict() == data


def test_a_score_stored_as_none_reads_back_as_nan_and_a_missing_key_is_named() -> None:
    column = ColumnDrift("x", "numeric", "ks", math.nan, 0.05, False, "profile", math.inf)
    data = column.to_dict()
    assert (data["score"], data["bound"]) == (None, None)
    back = ColumnDrift.from_dict(data)
    assert math.isnan(back.score)
    assert back.bound is None
    assert back.to_dict() == data
    report = DriftReport((column,), 0.0, False, 0.5, 10, 10).to_dict()
    del report["columns"][0]["threshold"]
    with pytest.raises(InvalidArgumentError, match="lacks the key 'threshold'"):
        DriftReport.from_dict(report)


def test_report_to_dict_is_json() -> None:
    rng = np.random.default_rng(13)
    report = compare(mixed(rng, 500, 0.0), mixed(rng, 400, 0.2), threads=1)
    assert isinstance(report, DriftReport)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert set(data) == {
        "columns",
        "drift_share",
        "dataset_drift",
        "share_threshold",
        "reference_rows",
        "current_rows",
    }
    assert set(data["columns"][0]) == {
        "column",
        "kind",
        "method",
        "score",
        "threshold",
        "drifted",
        "source",
        "bound",
    }


def test_threads_do_not_change_results() -> None:
    rng = np.random.default_rng(14)
    ref, cur = mixed(rng, 5000, 0.0), mixed(rng, 5000, 0.1)
    assert compare(ref, cur, threads=1) == compare(ref, cur, threads=4)


def test_pandas_frame_and_unknown_input() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    assert compare(frame, frame).columns[0].score == 1.0  # chi-squared of identical samples
    with pytest.raises(InvalidArgumentError, match=r"Data must be a pyarrow\.Table"):
        compare(42, frame)  # type: ignore[arg-type]

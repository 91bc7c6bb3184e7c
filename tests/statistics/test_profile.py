"""Reference profiles: what they hold, JSON round trips, exact merges of windows, and drift
computed from them landing within the bound they report."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pytest

from shipyard.core.exceptions import InvalidArgumentError, SchemaError
from shipyard.statistics import ColumnProfile, DatasetProfile, DriftOptions, compare, profile

Maker = Callable[[np.random.Generator, int, float], np.ndarray]


def frame(rng: np.random.Generator, n: int, shift: float = 0.0) -> pa.Table:
    num = rng.normal(shift, 2, n)
    num[rng.random(n) < 0.02] = np.nan
    return pa.table(
        {
            "num": pa.array(num, mask=rng.random(n) < 0.03),
            "few": rng.integers(0, 4, n).astype(float),
            "code": rng.integers(0, 6, n),
            "city": pa.array(
                [
                    None if rng.random() < 0.05 else c
                    for c in rng.choice(["oslo", "rome", "lima"], n)
                ]
            ),
            "flag": rng.random(n) > 0.5 + shift / 10,
        }
    )


def test_what_a_profile_holds() -> None:
    rng = np.random.default_rng(0)
    table = frame(rng, 5000)
    result = profile(table, categorical=["code"])
    num, few, code, city, flag = (result.columns[c] for c in ["num", "few", "code", "city", "flag"])
    values = table["num"].to_numpy(zero_copy_only=False)
    values = values[np.isfinite(values)]
    assert (result.rows, num.kind, num.dtype) == (5000, "numeric", "double")
    assert (num.count, num.nulls) == (values.size, 5000 - values.size)
    assert (num.minimum, num.maximum) == (values.min(), values.max())
    assert num.mean == pytest.approx(values.mean())
    assert num.std == pytest.approx(values.std())
    assert num.edges is not None
    assert num.counts is not None
    assert len(num.counts) == len(num.edges) + 1
    assert sum(num.counts) == num.count
    assert all(b > a for a, b in zip(num.edges, num.edges[1:], strict=False))
    assert (num.edges[0], num.edges[-1]) == (num.minimum, num.maximum)
    assert max(num.counts) <= num.count / 1000 + 2  # quantile edges: no bin holds more
    assert num.frequencies is None  # more than 1,000 distinct values
    assert few.frequencies is not None
    assert set(few.frequencies) == {"0.0", "1.0", "2.0", "3.0"}
    assert code.kind == "categorical"
    assert set(code.frequencies or {}) == {str(i) for i in range(6)}
    assert city.nulls == table["city"].null_count
    assert set(city.frequencies or {}) == {
        "oslo",
        "rome",
        "lima",
    }
    assert set(flag.frequencies or {}) == {"True", "False"}
    assert flag.kind == "categorical"


def test_round_trip_through_json() -> None:
    rng = np.random.default_rng(1)
    table = frame(rng, 3000).append_column("empty", pa.array([None] * 3000, pa.float64()))
    table = table.append_column("const", pa.array(np.full(3000, 7.5)))
    original = profile(table)
    text = json.dumps(original.to_dict(), allow_nan=False)
    restored = DatasetProfile.from_dict(json.loads(text))
    assert restored == original
    assert restored.columns["empty"] == ColumnProfile(
        "empty", "numeric", "double", 0, 3000, frequencies={}
    )
    assert restored.columns["const"].edges == [7.0, 8.0]


def test_merged_windows_equal_the_profile_of_both() -> None:
    rng = np.random.default_rng(2)
    reference = profile(frame(rng, 4000))
    first, second = frame(rng, 2500, 0.3), frame(rng, 1800, -0.2)
    merged = profile(first, edges_from=reference).merge(profile(second, edges_from=reference))
    whole = profile(pa.concat_tables([first, second]), edges_from=reference)
    assert merged.rows == whole.rows == 4300
    for name, column in whole.columns.items():
        got = merged.columns[name]
        assert (got.count, got.nulls, got.minimum, got.maximum) == (
            column.count,
            column.nulls,
            column.minimum,
            column.maximum,
        )
        assert (got.edges, got.counts, got.frequencies) == (
            column.edges,
            column.counts,
            column.frequencies,
        )
        if column.mean is not None:
            assert got.mean == pytest.approx(column.mean, rel=1e-12)
            assert got.std == pytest.approx(column.std, rel=1e-12)
    assert whole.columns["num"].edges == reference.columns["num"].edges
    assert whole.columns["few"].frequencies is not None


def test_exact_values_are_dropped_when_a_merge_has_too_many() -> None:
    rng = np.random.default_rng(3)
    reference = profile(pa.table({"x": rng.integers(0, 600, 5000).astype(float)}))
    low = profile(pa.table({"x": rng.integers(0, 600, 5000).astype(float)}), edges_from=reference)
    high = profile(
        pa.table({"x": rng.integers(600, 1200, 5000).astype(float)}), edges_from=reference
    )
    assert low.columns["x"].frequencies is not None
    assert high.columns["x"].frequencies is not None
    assert low.merge(high).columns["x"].frequencies is None


def test_profiles_on_different_edges_do_not_merge() -> None:
    rng = np.random.default_rng(4)
    first, second = profile(frame(rng, 2000)), profile(frame(rng, 2000))
    with pytest.raises(
        InvalidArgumentError, match=r"binned on different edges.*edges_from=reference_profile"
    ):
        first.merge(second)
    with pytest.raises(InvalidArgumentError, match="binned on different edges"):
        compare(first, second, columns=["num"])
    with pytest.raises(InvalidArgumentError, match="only in the second: \\['extra'\\]"):
        first.merge(profile(frame(rng, 10).append_column("extra", pa.array(np.ones(10)))))


def test_invalid_profile_arguments_and_dicts() -> None:
    rng = np.random.default_rng(5)
    reference = profile(frame(rng, 500))
    with pytest.raises(InvalidArgumentError, match="cannot be combined with edges_from"):
        profile(frame(rng, 500), bins=10, edges_from=reference)
    with pytest.raises(SchemaError, match="'num' is numeric in the edges_from profile"):
        profile(pa.table({"num": ["a"]}), edges_from=reference, columns=["num"])
    with pytest.raises(InvalidArgumentError, match="format=1"):
        DatasetProfile.from_dict({"rows": 3})
    data = reference.to_dict()
    data["columns"][0]["counts"] = data["columns"][0]["counts"][:-1]
    with pytest.raises(InvalidArgumentError, match=r"needs .* counts"):
        DatasetProfile.from_dict(data)
    del data["columns"][0]["kind"]
    with pytest.raises(InvalidArgumentError, match="Profile of column 'num' is malformed"):
        DatasetProfile.from_dict(data)


# --- drift from profiles ------------------------------------------------------------------

DISTRIBUTIONS: dict[str, Maker] = {
    "normal": lambda rng, n, s: rng.normal(s, 1, n),
    "lognormal": lambda rng, n, s: rng.lognormal(s, 1, n),
    "ties": lambda rng, n, s: np.where(
        rng.random(n) < 0.3, np.round(rng.normal(s, 1, n), 1), rng.normal(2 + s, 0.5, n)
    ),
    "heavy_tail": lambda rng, n, s: rng.standard_t(2, n) + s,
    "integers": lambda rng, n, s: rng.integers(0, 5000, n) + int(100 * s),
}


@pytest.mark.parametrize("current_as", ["rows", "profile"])
@pytest.mark.parametrize("method", ["wasserstein", "ks", "jensenshannon", "psi"])
@pytest.mark.parametrize("name", list(DISTRIBUTIONS))
@pytest.mark.parametrize("shift", [0.0, 0.2])
def test_profile_scores_are_within_their_bound(
    name: str, method: str, current_as: str, shift: float
) -> None:
    rng = np.random.default_rng(len(name) + int(shift * 10))
    make = DISTRIBUTIONS[name]
    ref, cur = pa.table({"x": make(rng, 20_000, 0.0)}), pa.table({"x": make(rng, 15_000, shift)})
    options = DriftOptions(methods={"x": method})
    reference = profile(ref)
    current = cur if current_as == "rows" else profile(cur, edges_from=reference)
    raw = compare(ref, cur, options).columns[0]
    approx = compare(reference, current, options).columns[0]
    assert (approx.source, approx.method, raw.bound) == ("profile", method, None)
    assert approx.bound is not None
    assert 0 < approx.bound < 1
    assert abs(approx.score - raw.score) <= approx.bound
    # The other way round (rows as reference, profile as current) is bounded too.
    if current_as == "profile":
        flipped = compare(ref, current, options).columns[0]
        assert abs(flipped.score - raw.score) <= (flipped.bound or 0.0)


@pytest.mark.parametrize("shift", [0.0, 0.05, 0.2])
def test_ks_from_a_profile_with_scipys_exact_distribution(shift: float) -> None:
    rng = np.random.default_rng(int(shift * 100))
    ref = pa.table({"x": rng.normal(0, 1, 3000)})  # > 1,000 values: only the histogram
    cur = pa.table({"x": rng.normal(shift, 1, 2500)})  # both <= 10,000: exact p-values
    options = DriftOptions(methods={"x": "ks"})
    raw = compare(ref, cur, options).columns[0]
    approx = compare(profile(ref), profile(cur, edges_from=profile(ref)), options).columns[0]
    assert approx.bound is not None
    assert abs(approx.score - raw.score) <= approx.bound


def test_wasserstein_from_a_profile_is_close_on_a_large_sample() -> None:
    rng = np.random.default_rng(6)
    ref, cur = (
        pa.table({"x": rng.normal(0, 1, 200_000)}),
        pa.table({"x": rng.normal(0.05, 1.1, 200_000)}),
    )
    raw = compare(ref, cur).columns[0]
    approx = compare(profile(ref), cur).columns[0]
    assert approx.method == raw.method == "wasserstein"
    assert abs(approx.score - raw.score) <= approx.bound <= 0.005  # type: ignore[operator]


def test_categorical_and_few_valued_columns_are_exact_from_profiles() -> None:
    rng = np.random.default_rng(7)
    for n in (600, 5000):  # p-value tests, then distances
        ref, cur = frame(rng, n), frame(rng, n // 2, 0.5)
        ref = ref.append_column("tiny", pa.array(rng.normal(size=n)))  # <= 1,000 values: kept
        cur = cur.append_column("tiny", pa.array(rng.normal(0.3, 1, n // 2)))
        columns = ["few", "code", "city", "flag"] + (["tiny"] if n <= 1000 else [])
        options = DriftOptions(categorical=frozenset({"code"}))
        raw = compare(ref, cur, options, columns=columns)
        reference = profile(ref, categorical=["code"])
        for current in (cur, profile(cur, edges_from=reference)):
            approx = compare(reference, current, options, columns=columns)
            for a, r in zip(approx.columns, raw.columns, strict=True):
                assert (a.method, a.source, a.bound) == (r.method, "profile", 0.0)
                assert a.score == pytest.approx(r.score, rel=1e-12, abs=1e-300)


def test_z_test_orders_numeric_categories_as_numbers() -> None:
    ref = pa.table({"x": np.r_[np.full(300, 10), np.full(200, 9), np.full(100, 100)]})
    cur = pa.table({"x": np.r_[np.full(100, 10), np.full(300, 9), np.full(100, 100)]})
    options = DriftOptions(methods={"x": "z"}, categorical=frozenset({"x"}))
    raw = compare(ref, cur, options).columns[0]
    approx = compare(profile(ref, categorical=["x"]), cur, options).columns[0]
    assert approx.score == pytest.approx(raw.score, rel=1e-12)


def test_binned_js_needs_the_current_values_when_the_reference_has_few() -> None:
    rng = np.random.default_rng(8)
    reference = profile(pa.table({"x": rng.integers(0, 10, 3000).astype(float)}))
    current = profile(pa.table({"x": rng.normal(5, 3, 3000)}), edges_from=reference)
    with pytest.raises(InvalidArgumentError, match="compare with the current rows"):
        compare(reference, current, DriftOptions(methods={"x": "psi"}))
    cur_rows = pa.table({"x": rng.normal(5, 3, 3000)})
    assert compare(reference, cur_rows, DriftOptions(methods={"x": "psi"})).columns[0].bound == 0.0


def test_profile_kind_wins_and_must_agree() -> None:
    rng = np.random.default_rng(9)
    reference = profile(frame(rng, 2000))
    with pytest.raises(InvalidArgumentError, match="numeric in a profile"):
        compare(reference, frame(rng, 2000), DriftOptions(categorical=frozenset({"num"})))


def test_values_too_many_to_expand_still_count_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shipyard.statistics._columns._REBUILD_LIMIT", 100)
    rng = np.random.default_rng(10)
    ref = pa.table({"x": rng.integers(0, 4, 3000).astype(float)})
    cur = pa.table({"x": rng.integers(0, 5, 2000).astype(float)})
    reference = profile(ref)
    for method in (None, "psi", "wasserstein"):
        options = DriftOptions(methods={"x": method} if method else {})
        raw = compare(ref, cur, options).columns[0]
        approx = compare(reference, profile(cur, edges_from=reference), options).columns[0]
        assert approx.method == raw.method == (method or "jensenshannon")
        if method == "wasserstein":  # from the histogram, within its bound
            assert abs(approx.score - raw.score) <= (approx.bound or 0.0)
        else:  # from the value counts: exact
            assert (approx.score, approx.bound) == (pytest.approx(raw.score, rel=1e-12), 0.0)

"""skops imported from the cached estimator list trusts exactly what the full walk trusts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shipyard.flavors import skops_import

_PROBE = """
import json, sys
from shipyard.flavors.skops_import import skops_io
io = skops_io()
import skops.io._utils as utils
walked = 'sklearn.gaussian_process' in sys.modules
types = io._trusted_types
print(json.dumps({
    "names": types.SKLEARN_ESTIMATOR_TYPE_NAMES,
    "walked": walked,
    "ufuncs": [types.SCIPY_UFUNC_TYPE_NAMES, types.NUMPY_UFUNC_TYPE_NAMES],
    "restored": utils.get_public_type_names.__module__ == "skops.io._utils",
}))
"""


def _probe(cache: str) -> dict[str, object]:
    env = {**os.environ, skops_import.CACHE_ENV: cache}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_the_cached_list_equals_the_walk_and_skips_it(tmp_path: Path) -> None:
    first = _probe(str(tmp_path))
    assert first["walked"] is True  # no cache yet: scikit-learn walked, cache written
    [cache] = tmp_path.glob("skops-trusted-*.json")
    second = _probe(str(tmp_path))
    assert second["walked"] is False
    assert second["names"] == first["names"]
    assert "sklearn.ensemble._forest.RandomForestClassifier" in second["names"]  # type: ignore[operator]
    assert json.loads(cache.read_text())["sklearn_estimators"] == first["names"]
    assert second["ufuncs"] == first["ufuncs"]  # the ufunc lists: from the cache, the same
    assert "scipy.special._special_ufuncs.erf" in second["ufuncs"][0]  # type: ignore[index]
    assert second["restored"] is True
    assert first["restored"] is True


@pytest.mark.parametrize(
    "names",
    [
        ["os.system"],  # outside the package asked about
        ["scipy.special.gamma", "scipy.special.ArgumentError"],  # not a ufunc
        ["scipy.special.no_such_thing"],
        ["scipy.no_such_module.erf"],
    ],
)
def test_a_cached_ufunc_list_that_does_not_resolve_is_recomputed(
    tmp_path: Path, names: list[str]
) -> None:
    first = _probe(str(tmp_path))
    [cache] = tmp_path.glob("skops-trusted-*.json")
    data = json.loads(cache.read_text())
    data["public_types"]["scipy.special:numpy.ufunc"] = names
    cache.write_text(json.dumps(data))
    again = _probe(str(tmp_path))
    assert again["walked"] is False  # the estimator list still holds
    assert again["ufuncs"] == first["ufuncs"]
    healed = json.loads(cache.read_text())["public_types"]["scipy.special:numpy.ufunc"]
    assert healed == first["ufuncs"][0]  # type: ignore[index]


@pytest.mark.parametrize(
    "content",
    [
        {"sklearn_estimators": ["builtins.eval"]},
        {"sklearn_estimators": ["sklearn.linear_model.LogisticRegression", "os.system"]},
        {"sklearn_estimators": []},
        "not json",
    ],
)
def test_a_tampered_or_broken_cache_is_ignored(tmp_path: Path, content: object) -> None:
    first = _probe(str(tmp_path))
    [cache] = tmp_path.glob("skops-trusted-*.json")
    cache.write_text(content if isinstance(content, str) else json.dumps(content))
    again = _probe(str(tmp_path))
    assert again["walked"] is True
    assert again["names"] == first["names"]


def test_the_cache_can_be_turned_off(tmp_path: Path) -> None:
    assert _probe("0")["walked"] is True
    assert not list(tmp_path.iterdir())


def test_a_user_without_a_home_runs_uncached(monkeypatch: pytest.MonkeyPatch) -> None:
    """A uid with no passwd entry (a container run as ``--user 12345``) has no home: Path.home()
    raises; the cache is skipped rather than the import failing."""
    import sklearn
    import skops

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv(skops_import.CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    assert skops_import._cache_path(sklearn, skops) is None
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")  # a cache folder named: no home needed
    assert skops_import._cache_path(sklearn, skops).parent == Path("/somewhere/shipyard")  # type: ignore[union-attr]

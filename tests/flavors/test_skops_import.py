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
walked = 'sklearn.gaussian_process' in sys.modules
print(json.dumps({"names": io._trusted_types.SKLEARN_ESTIMATOR_TYPE_NAMES, "walked": walked}))
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

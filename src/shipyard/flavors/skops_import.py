"""Import ``skops.io`` without walking all of scikit-learn on every start.

Importing ``skops.io`` builds its default trust list by calling scikit-learn's
``all_estimators()``, which imports every scikit-learn module (1.5 to 2 s on a small
machine) — in every process that loads a model: ``shipyard serve``, ``predict``,
``monitor``. The list only depends on the installed scikit-learn and skops, so the first
import in an environment walks scikit-learn as usual and writes the resulting names to a
cache file keyed by both versions and by scikit-learn's install path; later imports hand
skops those names instead of the walk (skops only uses each estimator's
``module.qualname``).

The cache can only widen trust within scikit-learn: a name is used only if it names a
class under ``sklearn.`` (the same filter skops applies), so a tampered file cannot make
skops trust ``builtins`` or any other package. ``SHIPYARD_SKOPS_CACHE=0`` turns the cache
off; an unwritable cache directory (a read-only container), or no home folder to put it in
(a uid without a passwd entry), just means the walk runs.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import re
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

logger = logging.getLogger(__name__)

#: Environment variable that turns the cache off (``0``) or moves it (a folder).
CACHE_ENV = "SHIPYARD_SKOPS_CACHE"
_NAME = re.compile(r"^sklearn(\.[A-Za-z_][A-Za-z0-9_]*)+\.[A-Za-z_][A-Za-z0-9_]*$")


def skops_io() -> ModuleType:
    """The ``skops.io`` module, imported with the cached estimator list when one is valid."""
    loaded = sys.modules.get("skops.io")
    if loaded is not None:
        return loaded
    import sklearn
    import skops

    path = _cache_path(sklearn, skops)
    names = _read(path) if path is not None else None
    if names is None:
        module = importlib.import_module("skops.io")
        if path is not None:
            _write(path, sklearn, module)
        return module
    return _import_with(names)


def _cache_path(sklearn: ModuleType, skops: ModuleType) -> Path | None:
    setting = os.environ.get(CACHE_ENV, "")
    if setting == "0":
        return None
    if setting:
        folder = Path(setting)
    else:
        base = os.environ.get("XDG_CACHE_HOME")
        if not base:
            try:
                base = str(Path.home() / ".cache")
            except RuntimeError:  # no HOME and a uid without a passwd entry (a container)
                logger.debug("no home folder to cache skops' trusted estimators in; walking")
                return None
        folder = Path(base) / "shipyard"
    where = hashlib.sha256(_origin(sklearn).encode()).hexdigest()[:12]
    key = f"{sklearn.__version__}-{skops.__version__}-{where}"
    return folder / f"skops-trusted-{key}.json"


def _origin(module: ModuleType) -> str:
    return str(Path(module.__file__ or "").parent)


def _read(path: Path) -> list[str] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    names = data.get("sklearn_estimators") if isinstance(data, dict) else None
    if not isinstance(names, list) or not names:
        return None
    if not all(isinstance(n, str) and _NAME.match(n) for n in names):
        logger.warning("ignoring %s: it holds names outside scikit-learn", path)
        return None
    return names


def _write(path: Path, sklearn: ModuleType, module: ModuleType) -> None:
    names = list(module._trusted_types.SKLEARN_ESTIMATOR_TYPE_NAMES)
    payload = {
        "sklearn": sklearn.__version__,
        "origin": _origin(sklearn),
        "sklearn_estimators": names,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            json.dump(payload, f)
        os.replace(f.name, path)
    except OSError as exc:
        logger.debug("cannot cache skops' trusted estimators at %s: %s", path, exc)


def _import_with(names: list[str]) -> ModuleType:
    """Import ``skops.io`` with ``all_estimators`` answering from ``names``."""
    import sklearn.utils

    standins = [(n.rsplit(".", 1)[1], _standin(n)) for n in names]

    def cached_estimators(*_args: Any, **_kwargs: Any) -> list[tuple[str, type]]:
        return list(standins)

    original = sklearn.utils.all_estimators
    sklearn.utils.all_estimators = cached_estimators
    try:
        return importlib.import_module("skops.io")
    finally:
        sklearn.utils.all_estimators = original


def _standin(name: str) -> type:
    """A class whose ``module.qualname`` is ``name`` (all skops reads from it)."""
    module, _, qualname = name.rpartition(".")
    return type(qualname, (), {"__module__": module, "__qualname__": qualname})

"""Import ``skops.io`` without walking all of scikit-learn on every start.

Importing ``skops.io`` builds its default trust list by calling scikit-learn's
``all_estimators()``, which imports every scikit-learn module (1.5 to 2 s on a small
machine) — in every process that loads a model: ``shipyard serve``, ``predict``,
``monitor``. The list only depends on the installed scikit-learn and skops, so the first
import in an environment walks scikit-learn as usual and writes the resulting names to a
cache file keyed by both versions and by scikit-learn's install path; later imports hand
skops those names instead of the walk (skops only uses each estimator's
``module.qualname``). skops also lists the numpy and ``scipy.special`` ufuncs it trusts by
searching every loaded module for each one (0.3 s in a process that has pandas, SQLAlchemy and
scikit-learn loaded); those lists are cached beside the estimators (the key adds numpy's and
scipy's versions) and used only when every name still resolves to a ufunc of that package.

The cache can only widen trust within scikit-learn: a name is used only if it names a
class under ``sklearn.`` (the same filter skops applies), so a tampered file cannot make
skops trust ``builtins`` or any other package. ``SHIPYARD_SKOPS_CACHE=0`` turns the cache
off; an unwritable cache directory (a read-only container), or no home folder to put it in
(a uid without a passwd entry), just means the walk runs.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.abc
import importlib.machinery
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

logger = logging.getLogger(__name__)

#: Environment variable that turns the cache off (``0``) or moves it (a folder).
CACHE_ENV = "SHIPYARD_SKOPS_CACHE"
_NAME = re.compile(r"^sklearn(\.[A-Za-z_][A-Za-z0-9_]*)+\.[A-Za-z_][A-Za-z0-9_]*$")


def skops_io() -> ModuleType:
    """The ``skops.io`` module, imported with the cached type names when they are valid."""
    loaded = sys.modules.get("skops.io")
    if loaded is not None:
        return loaded
    import sklearn
    import skops

    path = _cache_path(sklearn, skops)
    cached = _read(path) if path is not None else None
    known = cached.public if cached is not None else {}
    computed: dict[str, list[str]] = {}
    with _public_type_names(known, computed):
        if cached is None:
            module = importlib.import_module("skops.io")
        else:
            module = _import_with(cached.estimators)
    if path is not None and (cached is None or computed):
        estimators = list(module._trusted_types.SKLEARN_ESTIMATOR_TYPE_NAMES)
        _write(path, sklearn, estimators, {**known, **computed})
    return module


@dataclass(frozen=True)
class _Cached:
    estimators: list[str]
    #: ``get_public_type_names`` answers, by :func:`_public_key`
    public: dict[str, list[str]]


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
    import numpy
    import scipy

    where = f"{_origin(sklearn)}|numpy {numpy.__version__}|scipy {scipy.__version__}"
    digest = hashlib.sha256(where.encode()).hexdigest()[:12]
    return folder / f"skops-trusted-{sklearn.__version__}-{skops.__version__}-{digest}.json"


def _origin(module: ModuleType) -> str:
    return str(Path(module.__file__ or "").parent)


def _read(path: Path) -> _Cached | None:
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
    public = data.get("public_types")
    if not isinstance(public, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(n, str) for n in v)
        for k, v in public.items()
    ):
        public = {}
    return _Cached(names, public)


def _write(
    path: Path, sklearn: ModuleType, estimators: list[str], public: dict[str, list[str]]
) -> None:
    payload = {
        "sklearn": sklearn.__version__,
        "origin": _origin(sklearn),
        "sklearn_estimators": estimators,
        "public_types": public,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            json.dump(payload, f)
        os.replace(f.name, path)
    except OSError as exc:
        logger.debug("cannot cache skops' trusted estimators at %s: %s", path, exc)


def _public_key(module: ModuleType, oftype: type) -> str:
    return f"{module.__name__}:{oftype.__module__}.{oftype.__qualname__}"


def _resolves(names: list[str], module: ModuleType, oftype: type) -> bool:
    """Every name is an object of ``oftype`` inside ``module``'s package, where it says."""
    package = module.__name__.split(".", 1)[0] + "."
    for name in names:
        owner, _, attribute = name.rpartition(".")
        if not owner.startswith(package) and owner != package[:-1]:
            return False
        try:
            found = getattr(importlib.import_module(owner), attribute, None)
        except ImportError:
            return False
        if not issubclass(found.__class__, oftype):
            return False
    return True


@contextmanager
def _public_type_names(
    known: dict[str, list[str]], computed: dict[str, list[str]]
) -> Iterator[None]:
    """While ``skops.io`` imports, its ``get_public_type_names`` answers from ``known``.

    skops lists the ufuncs of numpy and ``scipy.special`` it trusts by searching every loaded
    module for each ufunc (0.3 s in a process that has pandas, SQLAlchemy and scikit-learn
    loaded). A cached answer is used only when each name still resolves to an object of the
    asked type in the asked package; any other answer is computed as skops computes it and
    recorded in ``computed``.
    """

    def patch(utils: ModuleType) -> None:
        original = utils.get_public_type_names

        def get_public_type_names(module: ModuleType, oftype: type) -> list[str]:
            key = _public_key(module, oftype)
            names = known.get(key)
            if names is not None and _resolves(names, module, oftype):
                return list(names)
            computed[key] = list(original(module=module, oftype=oftype))
            return list(computed[key])

        setattr(utils, "get_public_type_names", get_public_type_names)  # noqa: B010
        restore.append(lambda: setattr(utils, "get_public_type_names", original))

    restore: list[Callable[[], None]] = []
    finder = _PatchOnImport(_UTILS, patch)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for undo in restore:
            undo()


_UTILS = "skops.io._utils"


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds module ``name`` as the import system would, and calls ``patch`` once it ran."""

    def __init__(self, name: str, patch: Callable[[ModuleType], None]) -> None:
        self.name = name
        self.patch = patch

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchingLoader(spec.loader, self.patch)
        return spec


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, patch: Callable[[ModuleType], None]) -> None:
        self.loader = loader
        self.patch = patch

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        self.patch(module)


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

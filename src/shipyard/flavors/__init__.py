"""Model formats: save, import and load models safely, whatever library made them.

Each flavor lives in its own module exposing ``FLAVOR``; a module is imported only when
a model of its format is met, so shipyard works without LightGBM, XGBoost, onnxruntime
or MLflow installed and says which to install when one is needed.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.core.exceptions import MissingDependencyError, UnsupportedModelError

if TYPE_CHECKING:
    from shipyard.core.schema import Signature
    from shipyard.flavors.base import PICKLE, Flavor, LoadedModel, Predictor, SavedModel

#: Names of :mod:`shipyard.flavors.base` (numpy, pandas), imported on first use so the
#: registry's listings load without them.
_BASE = ("PICKLE", "Flavor", "LoadedModel", "Predictor", "SavedModel")


def __getattr__(name: str) -> Any:
    if name in _BASE:
        return getattr(importlib.import_module("shipyard.flavors.base"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FLAVORS",
    "PICKLE",
    "Flavor",
    "LoadedModel",
    "Predictor",
    "SavedModel",
    "flavor_for_object",
    "flavor_for_path",
    "get_flavor",
    "import_model",
    "load_model",
    "save_model",
]

#: Flavor name -> (module, pip extra that installs its library).
FLAVORS: dict[str, tuple[str, str]] = {
    "mlflow": ("shipyard.flavors.mlflow", "mlflow"),
    "onnx": ("shipyard.flavors.onnx", "onnx"),
    "lightgbm": ("shipyard.flavors.lightgbm", "lightgbm"),
    "xgboost": ("shipyard.flavors.xgboost", "xgboost"),
    "sklearn": ("shipyard.flavors.sklearn", "sklearn"),
    "python": ("shipyard.flavors.python", "python"),
}

# Which flavor an object belongs to, by the top-level package of its class (no import needed).
_BY_PACKAGE = {"onnx": "onnx", "lightgbm": "lightgbm", "xgboost": "xgboost", "sklearn": "sklearn"}


def get_flavor(name: str) -> Flavor:
    """The flavor called ``name``; a clear error when it or its library is missing."""
    if name not in FLAVORS:
        raise UnsupportedModelError(
            f"unknown flavor {name!r}; choose one of {', '.join(sorted(FLAVORS))}"
        )
    module_name, extra = FLAVORS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MissingDependencyError(
            f"the {name} flavor needs {exc.name or 'a library'} installed: "
            f"pip install 'shipyard[{extra}]'"
        ) from exc
    flavor: Flavor = module.FLAVOR
    return flavor


def flavor_for_object(model: object) -> Flavor:
    """Pick the flavor for a model object in memory."""
    for klass in type(model).__mro__:
        package = klass.__module__.split(".", 1)[0]
        if package in _BY_PACKAGE:
            flavor = get_flavor(_BY_PACKAGE[package])
            if flavor.can_save(model):
                return flavor
    python = get_flavor("python")
    if python.can_save(model):
        return python
    raise UnsupportedModelError(
        f"shipyard cannot store a {type(model).__module__}.{type(model).__qualname__}: "
        "a model needs a predict() method; supported are scikit-learn, LightGBM, XGBoost, "
        "ONNX and any Python object with predict()"
    )


def flavor_for_path(path: Path) -> Flavor:
    """Pick the flavor for a model file or folder on disk."""
    if not path.exists():
        raise UnsupportedModelError(f"no model file or folder at {path}; check the path")
    for name in FLAVORS:
        try:
            flavor = get_flavor(name)
        except MissingDependencyError:
            continue
        if flavor.can_import(path):
            return flavor
    raise UnsupportedModelError(
        f"shipyard does not recognise the model at {path}: expected an MLflow model folder "
        "(with MLmodel), .skops, .onnx, LightGBM text (.txt/.lgb), XGBoost (.json/.ubj) "
        "or a pickle (.pkl/.joblib); name the format with --flavor"
    )


def save_model(model: object, directory: Path, flavor: str | None = None) -> SavedModel:
    """Write an in-memory model into ``directory`` in its native, safe format."""
    chosen = get_flavor(flavor) if flavor else flavor_for_object(model)
    if not chosen.can_save(model):
        raise UnsupportedModelError(
            f"the {chosen.name} flavor cannot store a {type(model).__qualname__}; "
            "leave the flavor out to let shipyard choose"
        )
    return chosen.save(model, directory)


def import_model(path: Path, directory: Path, flavor: str | None = None) -> SavedModel:
    """Copy the model at ``path`` into ``directory`` without executing it."""
    chosen = get_flavor(flavor) if flavor else flavor_for_path(path)
    return chosen.import_path(path, directory)


def load_model(
    directory: Path,
    flavor: str,
    config: Mapping[str, Any],
    signature: Signature | None,
    *,
    name: str | None = None,
    version: int | None = None,
) -> LoadedModel:
    """Load a stored model and wrap it with its signature."""
    from shipyard.flavors.base import LoadedModel

    predictor = get_flavor(flavor).load(directory, config)
    return LoadedModel(predictor, signature, flavor=flavor, name=name, version=version)

"""XGBoost Boosters and scikit-learn-API models, stored in XGBoost's own format.

``save`` writes UBJSON (``model.ubj``); ``import_path`` takes ``.json`` or ``.ubj`` files.
Both formats are data, so nothing needs trusting. The class to rebuild (``XGBClassifier``
and friends) comes from an allow-list and is loaded with its own ``load_model``.

xgboost is imported inside the functions that need it, not at the top: the mlflow
flavor reuses this module's loaders, and an MLflow folder of another format must not
require xgboost to be installed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipyard.core.exceptions import FlavorError, UnsupportedModelError
from shipyard.flavors.base import Flavor, Predictor, SavedModel, allowed_class, stored_file
from shipyard.flavors.python import object_predictor, order_columns

_CLASSES = (
    "Booster",
    "XGBClassifier",
    "XGBRegressor",
    "XGBRanker",
    "XGBRFClassifier",
    "XGBRFRegressor",
)

#: Allowed class names (short and qualified) -> the class's name in the xgboost package.
MODEL_CLASSES: dict[str, str] = {
    alias: name
    for name in _CLASSES
    for alias in (
        name,
        f"xgboost.{name}",
        f"xgboost.{'core' if name == 'Booster' else 'sklearn'}.{name}",
    )
}

#: What the scikit-learn wrapper records as ``_estimator_type`` -> the class to rebuild.
_ESTIMATOR_TYPES = {
    "classifier": "XGBClassifier",
    "regressor": "XGBRegressor",
    "ranker": "XGBRanker",
}

#: Suffixes ``import_path`` accepts.
SUFFIXES = (".json", ".ubj")


def model_class(name: object) -> str:
    """The canonical class name for ``name``, or a :class:`FlavorError` if not allowed."""
    return allowed_class(name, MODEL_CLASSES, "XGBoost")


def is_xgboost_file(path: Path) -> bool:
    """True for a ``.json``/``.ubj`` file that starts like an XGBoost model."""
    if not (path.is_file() and path.suffix.lower() in SUFFIXES):
        return False
    with path.open("rb") as stream:
        head = stream.read(64)
    return head.startswith(b"{") and b"learner" in head


def _read(model: Any, path: Path) -> Any:
    """``model.load_model(path)``, with a clear error for a file XGBoost cannot read."""
    import xgboost

    try:
        model.load_model(str(path))
    except xgboost.core.XGBoostError as exc:
        raise FlavorError(
            f"expected an XGBoost model in {path.name} but XGBoost cannot read it as a "
            f"{type(model).__name__} ({str(exc).splitlines()[0]}); the file is corrupt or "
            "not an XGBoost model: write it with model.save_model('model.ubj')"
        ) from exc
    return model


def load_xgboost(path: Path, klass: str) -> Predictor:
    """Load the model file ``path`` as the allowed class ``klass``."""
    import xgboost

    klass = model_class(klass)
    model = _read(getattr(xgboost, klass)(), path)
    if klass != "Booster":
        return object_predictor(model, getattr(model, "feature_names_in_", None))
    features = model.feature_names

    def predict(frame: pd.DataFrame) -> np.ndarray:
        matrix = xgboost.DMatrix(order_columns(frame, features), enable_categorical=True)
        return np.asarray(model.predict(matrix))

    return Predictor(predict=predict, native=model)


def _imported_class(path: Path) -> str:
    """The wrapper class the file was saved from (its ``scikit_learn`` attribute)."""
    import xgboost

    booster = _read(xgboost.Booster(), path)
    try:
        meta = json.loads(booster.attr("scikit_learn") or "{}")
    except json.JSONDecodeError:
        meta = {}
    estimator_type = meta.get("_estimator_type") if isinstance(meta, dict) else None
    return _ESTIMATOR_TYPES.get(str(estimator_type), "Booster")


class XGBoostFlavor(Flavor):
    """XGBoost Booster and scikit-learn API models in native UBJSON/JSON."""

    name = "xgboost"

    def can_save(self, model: object) -> bool:
        """True for an ``xgboost.Booster`` or an ``XGBModel`` of an allowed class."""
        import xgboost

        return isinstance(model, xgboost.Booster | xgboost.XGBModel) and (
            type(model).__name__ in MODEL_CLASSES
        )

    def save(self, model: object, directory: Path) -> SavedModel:
        """Write the model with its own ``save_model`` to ``model.ubj``."""
        import xgboost
        from sklearn.exceptions import NotFittedError

        klass = model_class(type(model).__name__)
        path = directory / "model.ubj"
        try:
            model.save_model(str(path))  # type: ignore[attr-defined]
        except (NotFittedError, xgboost.core.XGBoostError, AttributeError) as exc:
            raise UnsupportedModelError(
                f"expected a fitted {klass} but XGBoost cannot save it ({exc}); "
                "call fit() before saving it"
            ) from exc
        config = {
            "file": path.name,
            "serialization": "xgboost_ubj",
            "model_class": klass,
            "xgboost_version": xgboost.__version__,
        }
        return SavedModel(flavor=self.name, config=config)

    def can_import(self, path: Path) -> bool:
        """True for a ``.json``/``.ubj`` XGBoost model file."""
        return is_xgboost_file(path)

    def import_path(self, path: Path, directory: Path) -> SavedModel:
        """Copy an XGBoost model file; a file saved by a wrapper is rebuilt as that wrapper."""
        if not is_xgboost_file(path):
            raise UnsupportedModelError(
                f"expected an XGBoost model file (.json or .ubj) but got {path}; "
                "write it with model.save_model('model.ubj')"
            )
        suffix = path.suffix.lower()
        target = directory / f"model{suffix}"
        shutil.copyfile(path, target)
        config = {
            "file": target.name,
            "serialization": f"xgboost_{suffix[1:]}",
            "model_class": _imported_class(target),
        }
        return SavedModel(flavor=self.name, config=config)

    def load(self, directory: Path, config: Mapping[str, Any]) -> Predictor:
        """Load the recorded class from the stored model file."""
        klass = model_class(config.get("model_class", "Booster"))
        path = stored_file(directory, config.get("file"), "xgboost flavor")
        return load_xgboost(path, klass)


#: The instance :func:`shipyard.flavors.get_flavor` returns.
FLAVOR = XGBoostFlavor()

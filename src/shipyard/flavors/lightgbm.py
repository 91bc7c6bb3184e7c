"""LightGBM Boosters and scikit-learn-API models, stored in LightGBM's own text format.

The text format is data (trees and parameters), so nothing needs trusting. The
scikit-learn wrapper (``LGBMClassifier``, ``LGBMRegressor``, ``LGBMRanker``) is not
pickled: its Booster is saved as text and the config records the class (from an
allow-list) and, for classifiers, the class labels; :func:`booster_predictor` rebuilds
the wrapper's ``predict``/``predict_proba`` from the Booster exactly as LightGBM does.

lightgbm is imported inside the functions that need it, not at the top: the mlflow
flavor reuses this module's loaders, and an MLflow folder of another format must not
require lightgbm to be installed.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipyard.core.exceptions import FlavorError, UnsupportedModelError
from shipyard.flavors.base import Flavor, Predictor, SavedModel, allowed_class, stored_file
from shipyard.flavors.python import order_columns

#: The file name ``save`` and ``import_path`` write.
FILE = "model.txt"

#: Model classes shipyard rebuilds (short and qualified names -> the class's name);
#: names are looked up here, never imported by string.
MODEL_CLASSES: dict[str, str] = {
    alias: name
    for name in ("Booster", "LGBMClassifier", "LGBMRegressor", "LGBMRanker")
    for module in ("basic" if name == "Booster" else "sklearn",)
    for alias in (name, f"lightgbm.{name}", f"lightgbm.{module}.{name}")
}

#: Suffixes of LightGBM text model files ``import_path`` accepts.
SUFFIXES = (".txt", ".lgb", ".model")


def model_class(name: object) -> str:
    """The canonical class name for ``name``, or a :class:`FlavorError` if not allowed."""
    return allowed_class(name, MODEL_CLASSES, "LightGBM")


def is_text_model(path: Path) -> bool:
    """True when ``path`` is a file that starts like a LightGBM text model."""
    if not path.is_file():
        return False
    with path.open("rb") as stream:
        return stream.read(4) == b"tree"


def read_header(path: Path) -> dict[str, str]:
    """The ``key=value`` lines before the first tree of a text model (objective, ...)."""
    header: dict[str, str] = {}
    with path.open("r", encoding="utf-8", errors="replace") as stream:
        for line in stream:
            if line.startswith("Tree="):
                break
            key, sep, value = line.strip().partition("=")
            if sep:
                header[key] = value
    return header


def load_booster(path: Path) -> Any:
    """Read a LightGBM text model file (no code runs)."""
    import lightgbm

    try:
        return lightgbm.Booster(model_file=str(path))
    except lightgbm.basic.LightGBMError as exc:
        raise FlavorError(
            f"expected a LightGBM text model in {path.name} but LightGBM cannot read it "
            f"({exc}); the file is corrupt or not a LightGBM model"
        ) from exc


def booster_predictor(booster: Any, klass: str, classes: Sequence[Any] | None) -> Predictor:
    """A :class:`Predictor` giving what ``klass`` (an allowed class name) would give."""
    klass = model_class(klass)
    features = list(booster.feature_name())

    def raw(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(booster.predict(order_columns(frame, features)))

    if klass != "LGBMClassifier":
        return Predictor(predict=raw, native=booster)
    if not classes:
        raise FlavorError(
            "expected the class labels of an LGBMClassifier in the model config but found "
            "none; register the model again"
        )
    labels = np.asarray(classes)

    def proba(frame: pd.DataFrame) -> np.ndarray:
        result = raw(frame)
        if result.ndim == 1:  # binary: LightGBM gives P(class 1)
            return np.vstack((1.0 - result, result)).transpose()
        return result

    def predict(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(labels[np.argmax(proba(frame), axis=1)])

    return Predictor(predict=predict, predict_proba=proba, classes=list(classes), native=booster)


def _plain(values: Any) -> list[Any]:
    return [v.item() if isinstance(v, np.generic) else v for v in values]


class LightGBMFlavor(Flavor):
    """LightGBM Booster and scikit-learn API models as native text."""

    name = "lightgbm"

    def can_save(self, model: object) -> bool:
        """True for a ``lightgbm.Booster`` or an ``LGBMModel`` of an allowed class."""
        import lightgbm

        if isinstance(model, lightgbm.Booster):
            return True
        return isinstance(model, lightgbm.LGBMModel) and type(model).__name__ in MODEL_CLASSES

    def save(self, model: object, directory: Path) -> SavedModel:
        """Write the Booster as text; record the wrapper class and class labels."""
        import lightgbm
        from sklearn.exceptions import NotFittedError

        config: dict[str, Any] = {"file": FILE, "serialization": "lightgbm_text"}
        if isinstance(model, lightgbm.Booster):
            booster = model
            config["model_class"] = "Booster"
        else:
            config["model_class"] = model_class(type(model).__name__)
            try:
                booster = model.booster_  # type: ignore[attr-defined]
            except (NotFittedError, AttributeError) as exc:
                raise UnsupportedModelError(
                    f"expected a fitted {type(model).__name__} but it is not fitted; "
                    "call fit() before saving it"
                ) from exc
            if config["model_class"] == "LGBMClassifier":
                config["classes"] = _plain(model.classes_)  # type: ignore[attr-defined]
        path = directory / FILE
        booster.save_model(str(path))
        config["objective"] = read_header(path).get("objective")
        config["lightgbm_version"] = lightgbm.__version__
        return SavedModel(flavor=self.name, config=config)

    def can_import(self, path: Path) -> bool:
        """True for a ``.txt``/``.lgb``/``.model`` file holding a LightGBM text model."""
        return path.suffix.lower() in SUFFIXES and is_text_model(path)

    def import_path(self, path: Path, directory: Path) -> SavedModel:
        """Copy a LightGBM text model file (a raw Booster)."""
        if not self.can_import(path):
            raise UnsupportedModelError(
                f"expected a LightGBM text model ({'/'.join(SUFFIXES)} starting with 'tree') "
                f"but got {path}; write it with booster.save_model('model.txt')"
            )
        target = directory / FILE
        shutil.copyfile(path, target)
        config = {
            "file": FILE,
            "serialization": "lightgbm_text",
            "model_class": "Booster",
            "objective": read_header(target).get("objective"),
        }
        return SavedModel(flavor=self.name, config=config)

    def load(self, directory: Path, config: Mapping[str, Any]) -> Predictor:
        """Read the text model and rebuild the recorded class's predictions."""
        klass = model_class(config.get("model_class", "Booster"))
        booster = load_booster(stored_file(directory, config.get("file", FILE), "lightgbm"))
        return booster_predictor(booster, klass, config.get("classes"))


#: The instance :func:`shipyard.flavors.get_flavor` returns.
FLAVOR = LightGBMFlavor()

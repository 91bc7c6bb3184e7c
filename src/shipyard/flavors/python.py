"""Any Python object with ``predict``, stored as a pickle (the format of last resort).

An object in memory no other flavor claims is written with cloudpickle (``model.pkl``);
``.pkl``/``.pickle``/``.cloudpickle``/``.joblib`` files are copied as they are and never
opened at import. Unpickling runs arbitrary code, so every such model reports
:data:`~shipyard.flavors.base.PICKLE` as untrusted and :meth:`PythonFlavor.load` refuses
it unless the registration trusted it.

The helpers :func:`object_predictor` and :func:`load_pickle_file` serve the sklearn and
mlflow flavors too.
"""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cloudpickle
import joblib
import numpy as np
import pandas as pd

from shipyard.core.exceptions import FlavorError, UnsupportedModelError
from shipyard.flavors.base import (
    PICKLE,
    Flavor,
    Predictor,
    SavedModel,
    require_trusted,
    stored_file,
)

#: File suffix -> how the file was serialised.
SUFFIXES: dict[str, str] = {
    ".pkl": "pickle",
    ".pickle": "pickle",
    ".cloudpickle": "pickle",
    ".joblib": "joblib",
}

#: Serialisations :func:`load_pickle_file` reads (cloudpickle streams are plain pickles).
SERIALIZATIONS = ("pickle", "cloudpickle", "joblib")


def order_columns(frame: pd.DataFrame, features: Sequence[str] | None) -> pd.DataFrame:
    """``frame`` with its columns in the model's training order, when it has them all.

    A validated frame follows the signature's order; libraries that check feature names
    (XGBoost, scikit-learn) or read columns by position (LightGBM) want their own.
    """
    if features is None or len(features) == 0 or not isinstance(frame, pd.DataFrame):
        return frame  # nothing to order by, or an array (a tensor input) already in order
    names = [str(f) for f in features]
    if list(frame.columns) != names and set(names) <= set(map(str, frame.columns)):
        return frame[names]
    return frame


def object_predictor(model: Any, features: Sequence[str] | None = None) -> Predictor:
    """Wrap an object with ``predict`` (and maybe ``predict_proba`` and ``classes_``).

    ``features`` is the column order the model was trained with, when known.
    """
    predict = getattr(model, "predict", None)
    if not callable(predict):
        raise UnsupportedModelError(
            f"expected a model with a predict() method but the stored object is a "
            f"{type(model).__module__}.{type(model).__qualname__}; store a fitted model"
        )
    proba = getattr(model, "predict_proba", None)
    classes = getattr(model, "classes_", None)

    def run_predict(frame: pd.DataFrame) -> np.ndarray:
        return as_array(predict(order_columns(frame, features)))

    def run_proba(frame: pd.DataFrame) -> np.ndarray:
        assert callable(proba)  # noqa: S101 - narrows the type; the caller guarantees it
        return as_array(proba(order_columns(frame, features)))

    return Predictor(
        predict=run_predict,
        predict_proba=run_proba if callable(proba) else None,
        classes=list(classes) if classes is not None else None,
        native=model,
        predict_both=_pipeline_both(model, features) if callable(proba) else None,
    )


def _pipeline_both(
    model: Any, features: Sequence[str] | None
) -> Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]] | None:
    """For a scikit-learn ``Pipeline`` ending in a classifier: ``predict`` and
    ``predict_proba`` with its transformers run once, as ``Pipeline.predict`` runs them
    (each step's ``transform`` in turn, then the final step's method); else None."""
    steps = getattr(model, "steps", None)
    if type(model).__module__ != "sklearn.pipeline" or not isinstance(steps, list):
        return None
    final = steps[-1][1] if len(steps) > 1 else None
    predict = getattr(final, "predict", None)
    proba = getattr(final, "predict_proba", None)
    if not callable(predict) or not callable(proba):
        return None
    head = model[:-1]

    def run_both(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        matrix = head.transform(order_columns(frame, features))
        return as_array(predict(matrix)), as_array(proba(matrix))

    return run_both


def as_array(result: Any) -> np.ndarray:
    """Predictions as an array; a one-column frame becomes a vector."""
    if isinstance(result, pd.DataFrame) and result.shape[1] == 1:
        return result.iloc[:, 0].to_numpy()
    if isinstance(result, pd.DataFrame | pd.Series):
        return result.to_numpy()
    return np.asarray(result)


def load_pickle_file(path: Path, serialization: str, config: Mapping[str, Any]) -> Any:
    """Unpickle ``path`` once the registration trusted :data:`PICKLE`."""
    if serialization not in SERIALIZATIONS:
        raise FlavorError(
            f"expected a serialization among {', '.join(SERIALIZATIONS)} for {path.name} "
            f"but the config says {serialization!r}; register the model again"
        )
    require_trusted(config, [PICKLE], f"loading {path.name} (a {serialization} stream)")
    try:
        if serialization == "joblib":
            return joblib.load(path)
        with path.open("rb") as stream:
            return pickle.load(stream)  # noqa: S301 - trusted explicitly above
    except (ModuleNotFoundError, AttributeError) as exc:
        raise FlavorError(
            f"unpickling {path.name} needs code that is not importable here ({exc}); "
            "install the package (same version) that defined the model's classes"
        ) from exc
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise FlavorError(
            f"expected a {serialization} stream in {path.name} but it is unreadable ({exc}); "
            "the file is corrupt or not a pickle"
        ) from exc


class PythonFlavor(Flavor):
    """Objects with ``predict`` via cloudpickle, and pickle/joblib files."""

    name = "python"

    def can_save(self, model: object) -> bool:
        """True for an instance (not a class) with a callable ``predict``."""
        return not isinstance(model, type) and callable(getattr(model, "predict", None))

    def save(self, model: object, directory: Path) -> SavedModel:
        """Write ``model`` with cloudpickle to ``model.pkl``."""
        path = directory / "model.pkl"
        try:
            with path.open("wb") as stream:
                cloudpickle.dump(model, stream)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise UnsupportedModelError(
                f"cloudpickle cannot store this {type(model).__qualname__} ({exc}); "
                "remove unpicklable attributes (open files, locks, connections) from the model"
            ) from exc
        return SavedModel(
            flavor=self.name,
            config={"file": path.name, "serialization": "cloudpickle"},
            untrusted_types=[PICKLE],
        )

    def can_import(self, path: Path) -> bool:
        """True for a file with a pickle or joblib suffix."""
        return path.is_file() and path.suffix.lower() in SUFFIXES

    def import_path(self, path: Path, directory: Path) -> SavedModel:
        """Copy the pickle file unopened; loading it will need :data:`PICKLE` trusted."""
        suffix = path.suffix.lower()
        if not path.is_file() or suffix not in SUFFIXES:
            raise UnsupportedModelError(
                f"expected a {'/'.join(SUFFIXES)} file but got {path}; "
                "pass the pickle or joblib file itself"
            )
        target = directory / f"model{suffix}"
        shutil.copyfile(path, target)
        return SavedModel(
            flavor=self.name,
            config={"file": target.name, "serialization": SUFFIXES[suffix]},
            untrusted_types=[PICKLE],
        )

    def load(self, directory: Path, config: Mapping[str, Any]) -> Predictor:
        """Unpickle the model (after checking trust) and wrap its ``predict``."""
        path = stored_file(directory, config.get("file"), "python flavor")
        model = load_pickle_file(path, str(config.get("serialization", "pickle")), config)
        return object_predictor(model)


#: The instance :func:`shipyard.flavors.get_flavor` returns.
FLAVOR = PythonFlavor()

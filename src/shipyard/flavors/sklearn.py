"""scikit-learn estimators and pipelines, stored with skops (never pickle).

skops writes the object's state as data; loading rebuilds only types that are either on
skops' own safe list or named in ``config["trusted_types"]``. ``save`` and
``import_path`` report the types skops would need trusted (``untrusted_types``).

:func:`skops_untrusted` and :func:`load_skops` serve the mlflow flavor too.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sklearn
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from shipyard.core.exceptions import FlavorError, UnsupportedModelError, UntrustedArtifactError
from shipyard.flavors.base import Flavor, Predictor, SavedModel, require_trusted, stored_file
from shipyard.flavors.python import object_predictor
from shipyard.flavors.skops_import import skops_io

#: The file name ``save`` and ``import_path`` write.
FILE = "model.skops"


def skops_untrusted(path: Path) -> list[str]:
    """The types loading the skops file ``path`` needs trusted (read without loading)."""
    try:
        return sorted(str(t) for t in skops_io().get_untrusted_types(file=path))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise FlavorError(
            f"expected a skops file at {path.name} but it cannot be read as one ({exc}); "
            "pass a file written by skops.io.dump"
        ) from exc


def load_skops(path: Path, config: Mapping[str, Any]) -> Any:
    """Load the skops file ``path`` trusting exactly ``config["trusted_types"]``.

    skops audits the whole file before it builds anything, so it is asked to load at once
    (reading the file's tree once, not twice); only when it refuses are the types it needs
    listed, for an error that names those nobody trusted.
    """
    what = f"loading {path.name} (skops)"
    trusted = require_trusted(config, [], what)
    sio = skops_io()
    try:
        return sio.load(path, trusted=trusted)
    except sio.exceptions.UntrustedTypesFoundException as exc:
        require_trusted(config, skops_untrusted(path), what)
        raise UntrustedArtifactError(
            f"skops refused to load {path.name}: {str(exc).splitlines()[0]} "
            "Register the model again trusting these types after reviewing where it came from"
        ) from exc
    except (ImportError, AttributeError) as exc:
        raise FlavorError(
            f"loading {path.name} needs code that is not importable here ({exc}); "
            "install the library (same version) the model was built with"
        ) from exc
    except (
        sio.exceptions.UnsupportedTypeException,
        zipfile.BadZipFile,
        KeyError,
        ValueError,
    ) as exc:
        raise FlavorError(
            f"skops cannot load {path.name} ({exc}); the file is corrupt or was written "
            "by an incompatible skops version"
        ) from exc


class SklearnFlavor(Flavor):
    """scikit-learn estimators (and pipelines) in skops format."""

    name = "sklearn"

    def can_save(self, model: object) -> bool:
        """True for a scikit-learn estimator with ``predict``."""

        return isinstance(model, BaseEstimator) and callable(getattr(model, "predict", None))

    def save(self, model: object, directory: Path) -> SavedModel:
        """Write ``model`` with ``skops.io.dump`` to ``model.skops``."""

        try:
            check_is_fitted(model)
        except NotFittedError as exc:
            raise UnsupportedModelError(
                f"expected a fitted estimator but this {type(model).__qualname__} is not "
                "fitted; call fit() before saving it"
            ) from exc
        except TypeError:
            pass  # not an estimator check_is_fitted understands; skops decides below
        path = directory / FILE
        try:
            skops_io().dump(model, path)
        except Exception as exc:
            path.unlink(missing_ok=True)
            raise UnsupportedModelError(
                f"skops cannot store this {type(model).__qualname__} ({exc}); "
                'store it with flavor="python" (cloudpickle) if you accept loading a pickle'
            ) from exc
        return SavedModel(
            flavor=self.name,
            config={"file": FILE, "serialization": "skops", "sklearn_version": sklearn.__version__},
            untrusted_types=skops_untrusted(path),
        )

    def can_import(self, path: Path) -> bool:
        """True for a ``.skops`` file."""
        return path.is_file() and path.suffix.lower() == ".skops"

    def import_path(self, path: Path, directory: Path) -> SavedModel:
        """Copy a ``.skops`` file and report the types it needs trusted."""
        if not self.can_import(path):
            raise UnsupportedModelError(
                f"expected a .skops file but got {path}; save the model with skops.io.dump"
            )
        target = directory / FILE
        shutil.copyfile(path, target)
        return SavedModel(
            flavor=self.name,
            config={"file": FILE, "serialization": "skops"},
            untrusted_types=skops_untrusted(target),
        )

    def load(self, directory: Path, config: Mapping[str, Any]) -> Predictor:
        """Load the estimator with skops, trusting only ``config["trusted_types"]``."""
        path = stored_file(directory, config.get("file", FILE), "sklearn flavor")
        return object_predictor(load_skops(path, config))


#: The instance :func:`shipyard.flavors.get_flavor` returns.
FLAVOR = SklearnFlavor()

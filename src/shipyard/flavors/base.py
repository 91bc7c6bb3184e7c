"""The contract every model format (flavor) fulfils, and the loaded model users call.

A flavor turns a model into files in a folder (``save`` for an object in memory,
``import_path`` for a file or folder on disk) and back into a :class:`Predictor`
(``load``). It reports what loading would have to trust (``SavedModel.untrusted_types``:
skops type names, or ``"pickle"`` for a pickle stream); the registry records the user's
trust decision in the flavor config under ``trusted_types`` and ``load`` refuses anything
not in it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from shipyard.core.exceptions import FlavorError, SchemaError, UntrustedArtifactError
from shipyard.core.schema import Signature

#: The pseudo-type a flavor reports when loading means unpickling (which runs any code).
PICKLE = "pickle"


@dataclass
class SavedModel:
    """What a flavor wrote: its config (JSON-able, stored in the database) and trust needs."""

    flavor: str
    config: dict[str, Any]
    untrusted_types: list[str] = field(default_factory=list)
    #: A signature read from the format's own metadata (MLmodel, ONNX graph), if it has one.
    signature: Signature | None = None
    #: Example rows the format carries (MLflow's input_example.json), if any.
    input_example: pd.DataFrame | None = None
    #: Why each nullable column of ``signature`` is nullable (``"optional in the MLmodel"``).
    nullable_reasons: dict[str, str] = field(default_factory=dict)
    #: Columns the format never lets a missing value into, whatever the model handles
    #: (MLflow's integer columns).
    no_missing: tuple[str, ...] = ()
    #: Types the format's metadata says its author trusted (MLflow's
    #: ``skops_trusted_types``): shown to the user, never a trust decision.
    declared_trusted: list[str] | None = None
    #: What the user should know about the import, one sentence each.
    notes: list[str] = field(default_factory=list)


@dataclass
class Predictor:
    """A loaded native model reduced to what shipyard calls."""

    predict: Callable[[pd.DataFrame], np.ndarray]
    predict_proba: Callable[[pd.DataFrame], np.ndarray] | None = None
    classes: Sequence[Any] | None = None
    #: The native object (estimator, Booster, InferenceSession, ...), for users who need it.
    native: Any = None
    #: ``predict`` and ``predict_proba`` of the same rows in one pass, where the format can
    #: share their work (a scikit-learn pipeline's transformers run once); else None.
    predict_both: Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]] | None = None

    def answers(self, frame: pd.DataFrame, *, proba: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels, and probabilities when ``proba`` and the model gives them: in one pass
        where :attr:`predict_both` can (the labels still the model's own ``predict``)."""
        if proba and self.predict_both is not None:
            labels, both = self.predict_both(frame)
            return np.asarray(labels), np.asarray(both)
        probabilities: np.ndarray | None = None
        if proba and self.predict_proba is not None:
            probabilities = np.asarray(self.predict_proba(frame))
        return np.asarray(self.predict(frame)), probabilities


class Flavor(ABC):
    """One model format. Subclasses are stateless; one instance serves every model."""

    name: ClassVar[str]

    @abstractmethod
    def can_save(self, model: object) -> bool:
        """True when ``model`` (an object in memory) is of this format."""

    @abstractmethod
    def save(self, model: object, directory: Path) -> SavedModel:
        """Write ``model`` into the empty folder ``directory``."""

    @abstractmethod
    def can_import(self, path: Path) -> bool:
        """True when the file or folder ``path`` is of this format."""

    @abstractmethod
    def import_path(self, path: Path, directory: Path) -> SavedModel:
        """Copy (never execute) the model at ``path`` into the empty folder ``directory``."""

    @abstractmethod
    def load(self, directory: Path, config: Mapping[str, Any]) -> Predictor:
        """Load what ``save`` or ``import_path`` wrote, honouring ``config['trusted_types']``."""


def require_trusted(config: Mapping[str, Any], needed: Sequence[str], what: str) -> list[str]:
    """Return the trusted types, or refuse when ``needed`` holds one nobody trusted."""
    trusted = [str(t) for t in config.get("trusted_types", [])]
    missing = [t for t in needed if t not in trusted]
    if missing:
        raise UntrustedArtifactError(
            f"{what} needs {', '.join(missing)} trusted, but the version was registered "
            "without trusting it; register it again with --trust (Python: trust=True) "
            "after reviewing where it came from"
        )
    return trusted


def allowed_class(name: object, allowed: Mapping[str, str], library: str) -> str:
    """The canonical class name ``allowed[name]``; refuse any name not on the allow-list.

    Flavors rebuild model classes named in configs and MLmodel files from such a table,
    never by importing a string, so a tampered config cannot reach arbitrary code.
    """
    if isinstance(name, str) and name in allowed:
        return allowed[name]
    choices = ", ".join(sorted(set(allowed.values())))
    raise FlavorError(
        f"expected a {library} model class among {choices} but got {name!r}; "
        "shipyard rebuilds only these classes"
    )


def stored_file(directory: Path, name: object, what: str) -> Path:
    """The file ``name`` (from a flavor config or MLmodel) inside ``directory``, checked.

    Refuses names that are not plain relative paths inside ``directory`` (``../x``,
    absolute paths) and files that are missing, so a config can never point a loader
    at a file elsewhere on the machine.
    """
    if not isinstance(name, str) or not name:
        raise FlavorError(f"{what}: expected a file name in the model config but got {name!r}")
    root = directory.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise FlavorError(
            f"{what}: the model file {name!r} points outside the model folder {directory}; "
            "a model may only reference files inside its own folder"
        )
    if not path.exists():
        raise FlavorError(
            f"{what}: expected the model file {name!r} in {directory} but it is missing; "
            "the artifact is incomplete, register the model again"
        )
    return path


class LoadedModel:
    """A model ready to predict: input is checked against its signature first.

    ``predict(df)`` and ``predict_proba(df)`` accept a DataFrame, a list of row dicts or
    a dict of columns; they raise :class:`SchemaError` naming the column when the input
    does not match the signature.
    """

    def __init__(
        self,
        predictor: Predictor,
        signature: Signature | None,
        *,
        flavor: str,
        name: str | None = None,
        version: int | None = None,
    ) -> None:
        self.predictor = predictor
        self.signature = signature
        self.flavor = flavor
        self.name = name
        self.version = version

    def __repr__(self) -> str:
        ref = f"{self.name}:{self.version}" if self.name else "unregistered"
        return f"LoadedModel({ref}, flavor={self.flavor!r})"

    @property
    def native(self) -> Any:
        """The underlying model object."""
        return self.predictor.native

    @property
    def classes(self) -> Sequence[Any] | None:
        """Class labels of a classifier, in the order of ``predict_proba`` columns."""
        return self.predictor.classes

    @property
    def has_proba(self) -> bool:
        """True when the model gives class probabilities."""
        return self.predictor.predict_proba is not None

    def prepare(self, data: Any) -> pd.DataFrame:
        """Turn ``data`` into the frame the model takes, validated against the signature."""
        frame = to_frame(data)
        if self.signature is None or not self.signature.inputs:
            return frame
        return self.signature.validate(frame)

    def predict(self, data: Any) -> np.ndarray:
        """Predictions for each row of ``data``."""
        return np.asarray(self.predictor.predict(self.prepare(data)))

    def predict_proba(self, data: Any) -> np.ndarray:
        """Class probabilities for each row of ``data`` (classifiers only)."""
        if self.predictor.predict_proba is None:
            raise FlavorError(
                f"{self!r} gives no probabilities: it is not a classifier, or its format "
                "does not carry them; call predict() instead"
            )
        return np.asarray(self.predictor.predict_proba(self.prepare(data)))


def to_frame(data: Any) -> pd.DataFrame:
    """Accept a DataFrame, a list of row dicts or a dict of columns."""
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, Mapping) or (
        isinstance(data, list) and (not data or isinstance(data[0], Mapping))
    ):
        return pd.DataFrame(data)
    if isinstance(data, np.ndarray) and data.ndim == 2:
        return pd.DataFrame(data)
    raise SchemaError(
        f"expected a pandas DataFrame, a list of row dicts or a dict of columns, "
        f"but got {type(data).__name__}"
    )

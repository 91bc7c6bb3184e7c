"""The contract between the serving core and its protocols (native, MLflow, Open Inference v2).

A protocol module turns a request body into validated input *columns* (one 1-D array per
signature column, all the same length), awaits :meth:`ServedModel.predict`, and renders the
:class:`Prediction` in its own wire format. The core owns loading, warm-up, micro-batching
(concurrent requests to one model merge into one ``predict`` call off the event loop) and
metrics; protocols never touch pandas or the native model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from shipyard.core.schema import Signature


@dataclass(frozen=True)
class Prediction:
    """What a model answered for the rows of one request."""

    predictions: np.ndarray
    probabilities: np.ndarray | None = None
    classes: Sequence[Any] | None = None


class ServedModel(Protocol):
    """One loaded, warmed-up model version."""

    name: str
    version: int
    flavor: str
    signature: Signature | None

    def validate(self, columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Check and cast request columns (name → values); :class:`SchemaError` names the column."""
        ...

    async def predict(self, columns: Mapping[str, np.ndarray]) -> Prediction:
        """Predict validated columns; concurrent calls are merged into one batch."""
        ...


class ModelLookup(Protocol):
    """The models a server holds."""

    def get(self, name: str, version: int | None = None) -> ServedModel:
        """The model called ``name`` (a given version, or the one served by default).

        Raises :class:`~shipyard.core.exceptions.NotFoundError` naming what is served.
        """
        ...

    def served(self) -> list[ServedModel]:
        """Every served model version."""
        ...

    def route(self, model: ServedModel) -> ServedModel:
        """The model that answers this request: ``model``, or its canary challenger."""
        ...

    def ready(self) -> bool:
        """True once every model is loaded and warmed up."""
        ...

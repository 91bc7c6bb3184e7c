"""The contract between the serving core and its protocols (native, MLflow, Open Inference v2).

A protocol module finds its model through :class:`ModelLookup` (``server_state(app).models``),
turns a request body into validated input *columns* (one 1-D array per signature column, all
the same length), awaits :meth:`ServedModel.predict`, and renders the :class:`Prediction` in
its own wire format. It is written against these protocol classes only, never the concrete
manager (:mod:`shipyard.serving.models`; import-linter holds this). The core owns loading,
warm-up, micro-batching (concurrent requests to one model merge into one ``predict`` call off
the event loop) and metrics; protocols never touch the native model.
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

    def validate_records(self, records: list[Any]) -> dict[str, np.ndarray] | None:
        """Rows as objects (``[{"col": number}, ...]``) cast in one step, or ``None``.

        ``None`` when that cheap path does not apply (a text column, a key missing, a
        null...): turn the records into columns and call :meth:`validate`, which names the
        culprit. When it applies, the answer equals :meth:`validate`'s.
        """
        ...

    async def predict(self, columns: Mapping[str, np.ndarray]) -> Prediction:
        """Predict validated columns; concurrent calls are merged into one batch."""
        ...

    def describe(self) -> dict[str, Any]:
        """Name, version, flavor, aliases, input columns, classes: what ``GET /v1/models`` lists."""
        ...


class ModelLookup(Protocol):
    """The models a server holds (``ServerState.models``)."""

    def get(self, name: str, version: int | None = None, alias: str | None = None) -> ServedModel:
        """The model called ``name``: a given version, the one holding ``alias``, or its default.

        Never routed (see :meth:`route`). Raises :class:`~shipyard.core.exceptions.NotFoundError`
        naming what is served.
        """
        ...

    def resolve(self, ref: str) -> ServedModel:
        """The model for a reference text: ``NAME``, ``NAME:VERSION`` or ``NAME@ALIAS``.

        Unless the reference pins a version, the answer is routed (see :meth:`route`).
        Raises :class:`~shipyard.core.exceptions.InvalidReferenceError` for a malformed
        reference and :class:`~shipyard.core.exceptions.NotFoundError` naming what is served.
        """
        ...

    def first(self) -> ServedModel:
        """The default model of the first served reference (not routed, see :meth:`route`).

        What a protocol without a model name in its path answers, e.g. MLflow's
        ``/invocations``. Raises :class:`~shipyard.core.exceptions.NotFoundError` while
        nothing is loaded.
        """
        ...

    def served(self) -> list[ServedModel]:
        """Every served model version."""
        ...

    def describe_served(self) -> str:
        """What is served, for messages: ``churn:3 (production), fraud:1``."""
        ...

    def route(self, model: ServedModel) -> ServedModel:
        """The model that answers this request: ``model``, or its canary challenger."""
        ...

    def ready(self) -> bool:
        """True once every model is loaded and warmed up."""
        ...

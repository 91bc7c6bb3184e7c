"""The server's state: one typed object the app factory builds, read by every route.

``create_app`` puts a :class:`ServerState` on ``app.state.server``; routes and the fast path
read it with :func:`server_state` instead of looking attributes up one by one. Its models are
typed as the core's protocol (:class:`~shipyard.serving.base.ModelLookup`), so what reads the
state never depends on the model manager.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shipyard.datasets import Datasets
from shipyard.datasets.predictions import PredictionStore
from shipyard.registry import Registry
from shipyard.serving.auth import Authenticator
from shipyard.serving.base import ModelLookup
from shipyard.serving.metrics import ServingMetrics
from shipyard.serving.predlog import PredictionLog
from shipyard.serving.settings import ServeSettings


@dataclass(frozen=True)
class ServerState:
    """Everything one app holds: its models, metrics, settings and stores."""

    #: the served models, as the core's :class:`~shipyard.serving.base.ModelLookup`: what
    #: protocols and the data API see (only ``create_app`` holds the concrete manager)
    models: ModelLookup
    metrics: ServingMetrics
    settings: ServeSettings
    #: the registry the models are loaded from
    registry: Registry
    datasets: Datasets
    predictions: PredictionStore
    #: ``None`` when ``prediction_log`` is off
    prediction_log: PredictionLog | None = None
    #: ``None`` when ``auth`` is off
    auth: Authenticator | None = None


def server_state(app: Any) -> ServerState:
    """The :class:`ServerState` of an app built by ``create_app``."""
    state = app.state.server
    if not isinstance(state, ServerState):  # pragma: no cover - only create_app sets it
        raise TypeError(f"app.state.server must be a ServerState, got {type(state).__name__}")
    return state

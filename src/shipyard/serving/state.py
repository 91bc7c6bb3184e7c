"""The server's state: one typed object the app factory builds, read by every route.

``create_app`` puts a :class:`ServerState` on ``app.state.server``; routes and the fast path
read it with :func:`server_state` instead of looking attributes up one by one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from shipyard.datasets import Datasets
from shipyard.datasets.predictions import PredictionStore
from shipyard.serving.auth import Authenticator
from shipyard.serving.base import Prediction, ServedModel
from shipyard.serving.metrics import ServingMetrics
from shipyard.serving.models import ModelManager
from shipyard.serving.predlog import PredictionLog
from shipyard.serving.settings import ServeSettings


@dataclass(frozen=True)
class ServerState:
    """Everything one app holds: its models, metrics, settings and stores."""

    models: ModelManager
    metrics: ServingMetrics
    settings: ServeSettings
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


def note_prediction(
    request: Request, model: ServedModel, columns: Mapping[str, Any], prediction: Prediction
) -> None:
    """Log a prediction a FastAPI route answered (no-op when the app has no prediction log)."""
    log = server_state(request.app).prediction_log
    if log is None:
        return
    state = request.scope.get("state", {})
    started = state.get("started")
    latency = time.perf_counter() - started if started is not None else 0.0
    log.record(
        model.name, model.version, str(state.get("request_id", "")), latency, columns, prediction
    )

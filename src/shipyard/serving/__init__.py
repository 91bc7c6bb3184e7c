"""Online serving: one ASGI app speaking shipyard's native API and MLflow's scoring protocol.

``create_app(registry, refs)`` builds the app (see :mod:`shipyard.serving.app`); the
contract protocols code against is in :mod:`shipyard.serving.base`.
"""

from shipyard.serving.app import create_app
from shipyard.serving.base import ModelLookup, Prediction, ServedModel
from shipyard.serving.batching import BatchSettings, MicroBatcher, ModelFailedError
from shipyard.serving.metrics import ServingMetrics
from shipyard.serving.models import ModelManager, ServingModel
from shipyard.serving.settings import ServeSettings, WorkerConfig, resolve_serve_settings

__all__ = [
    "BatchSettings",
    "MicroBatcher",
    "ModelFailedError",
    "ModelLookup",
    "ModelManager",
    "Prediction",
    "ServeSettings",
    "ServedModel",
    "ServingMetrics",
    "ServingModel",
    "WorkerConfig",
    "create_app",
    "resolve_serve_settings",
]

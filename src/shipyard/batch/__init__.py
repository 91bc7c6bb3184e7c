"""Batch scoring: stream an input through a registered model into the predictions store.

``predict_batch(BatchRequest(...), registry=..., datasets=..., store=..., root=...,
work_root=...)`` is what ``shipyard predict`` and ``Project.predict`` call; see
:mod:`shipyard.batch.run` for how a job is cut into chunks, overlapped, resumed and
committed, and :mod:`shipyard.batch.dask_engine` for the Dask engine.
"""

from typing import TYPE_CHECKING

from shipyard.core.lazy import lazy_exports

if TYPE_CHECKING:
    from shipyard.batch.request import BatchRequest
    from shipyard.batch.run import BatchResult, predict_batch

#: Each name's module, imported on first use: ``shipyard.batch.request`` (what the CLI and
#: ``Project`` describe a job with) loads without the scoring engine.
_LAZY = {
    "BatchRequest": "shipyard.batch.request",
    "BatchResult": "shipyard.batch.run",
    "predict_batch": "shipyard.batch.run",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = ["BatchRequest", "BatchResult", "predict_batch"]

"""Batch scoring: stream an input through a registered model into the predictions store.

``predict_batch(BatchRequest(...), registry=..., datasets=..., store=..., root=...,
work_root=...)`` is what ``shipyard predict`` and ``Project.predict`` call; see
:mod:`shipyard.batch.run` for how a job is cut into chunks, overlapped, resumed and
committed, and :mod:`shipyard.batch.dask_engine` for the Dask engine.
"""

from shipyard.batch.request import BatchRequest
from shipyard.batch.run import BatchResult, predict_batch

__all__ = ["BatchRequest", "BatchResult", "predict_batch"]

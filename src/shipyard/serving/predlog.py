"""The prediction log: every answered prediction, written to the metadata database in batches.

The serving path only appends a tuple to a bounded in-memory queue (a ``deque`` length check
and an append: well under a microsecond; no JSON, no SQL, no lock). A background thread
wakes every ``flush_interval`` seconds, or as soon as ``batch_rows`` entries wait, turns the
entries into rows (inputs as records, NaN as null) and inserts them into ``prediction_log``
in one transaction per batch. So:

- a full queue drops the entry and counts it (``shipyard_prediction_log_dropped_total``);
  serving never waits for the database;
- a failed write counts its rows (``shipyard_prediction_log_errors_total``), is logged (at
  most once a minute) and the server keeps answering;
- :meth:`PredictionLog.close` (the app's shutdown) writes what is still queued.

One row per request: ``inputs`` holds the validated request rows as records
(``[{"col": value, ...}, ...]``), ``outputs`` ``{"predictions": [...]}`` plus
``"probabilities"`` and ``"classes"`` for classifiers. The table itself is owned by
:class:`~shipyard.datasets.prediction_log.PredictionLogStore` (which inserts each batch and
reads the rows back); this module only queues, encodes and hands the batches over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pandas as pd
from prometheus_client import CollectorRegistry, Counter

from shipyard.datasets.prediction_log import LogRow, PredictionLogStore
from shipyard.serving.base import Prediction
from shipyard.store import Database

logger = logging.getLogger("shipyard.serving.predlog")

DEFAULT_MAX_QUEUE = 10_000
DEFAULT_BATCH_ROWS = 500
DEFAULT_FLUSH_INTERVAL = 1.0
_ERROR_LOG_EVERY = 60.0
_YIELD_EVERY = 16

# (model, version, request id, unix time, latency s, validated columns, prediction, shadow)
_Entry = tuple[str, int, str, float, float, Mapping[str, Any], Prediction, bool]


def _default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    return str(value)


def _dumps(value: Any) -> str:
    """``value`` as JSON text: numpy arrays natively, NaN / infinity as null."""
    return orjson.dumps(value, default=_default, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def encode_entry(entry: _Entry) -> LogRow:
    """One queued entry as insert parameters, ``inputs`` as records and JSON encoded here.

    Encoding with orjson and inserting through the driver's ``executemany`` keeps the
    writer thread's hold on the GIL (which the event loop needs) to a few microseconds a row.
    """
    model, version, rid, at, latency, columns, prediction, shadow = entry
    names = list(columns)
    lists = [np.asarray(columns[name]).tolist() for name in names]
    inputs = [dict(zip(names, values, strict=True)) for values in zip(*lists, strict=True)]
    outputs: dict[str, Any] = {"predictions": prediction.predictions}
    if prediction.probabilities is not None:
        outputs["probabilities"] = prediction.probabilities
        outputs["classes"] = prediction.classes
    return (
        model,
        version,
        rid,
        datetime.fromtimestamp(at, UTC),
        round(latency * 1000, 4),
        _dumps(inputs),
        _dumps(outputs),
        shadow,
    )


class PredictionLog:
    """A bounded queue of answered predictions and the thread writing them in batches."""

    def __init__(
        self,
        database: Database,
        registry: CollectorRegistry | None = None,
        *,
        max_queue: int = DEFAULT_MAX_QUEUE,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
    ) -> None:
        self.database = database
        self.store = PredictionLogStore(database)
        self.max_queue = max(1, max_queue)
        self.batch_rows = max(1, batch_rows)
        self.flush_interval = flush_interval
        self._queue: deque[_Entry] = deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._write_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last_error_log = 0.0
        self.written = 0
        self.dropped = Counter(
            "shipyard_prediction_log_dropped_total",
            "Predictions not logged because the prediction log's queue was full.",
            registry=registry,
        )
        self.errors = Counter(
            "shipyard_prediction_log_errors_total",
            "Predictions not logged because writing them to the database failed.",
            registry=registry,
        )

    # -- the serving side (event loop) ----------------------------------------------------

    def record(
        self,
        model: str,
        version: int,
        request_id: str,
        latency: float,
        columns: Mapping[str, Any],
        prediction: Prediction,
        *,
        shadow: bool = False,
    ) -> None:
        """Queue one answered prediction (``latency`` in seconds); drop it if the queue is full."""
        queue = self._queue
        if len(queue) >= self.max_queue:
            self.dropped.inc()
            return
        queue.append(
            (model, version, request_id, time.time(), latency, columns, prediction, shadow)
        )
        if len(queue) >= self.batch_rows:
            self._wake.set()

    @property
    def pending(self) -> int:
        """Entries queued and not yet written."""
        return len(self._queue)

    # -- the writer thread ----------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name="shipyard-prediction-log", daemon=True
        )
        self._thread.start()

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop the writer thread after it wrote everything queued (the app's shutdown)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.flush()

    def flush(self) -> int:
        """Write everything queued now, in batches; the number of rows written."""
        written = 0
        with self._write_lock:
            queue = self._queue
            while queue:
                batch: list[_Entry] = []
                while queue and len(batch) < self.batch_rows:
                    batch.append(queue.popleft())
                written += self._write(batch)
        return written

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            self.flush()
        self.flush()

    def _write(self, batch: list[_Entry]) -> int:
        try:
            rows: list[LogRow] = []
            for start in range(0, len(batch), _YIELD_EVERY):
                rows.extend(encode_entry(entry) for entry in batch[start : start + _YIELD_EVERY])
                time.sleep(0)  # let the event loop have the GIL between short stretches
            written = self.store.append(rows)  # one transaction per batch
        except Exception:
            self.errors.inc(len(batch))
            now = time.monotonic()
            if now - self._last_error_log >= _ERROR_LOG_EVERY:
                self._last_error_log = now
                logger.exception(
                    "could not write %d prediction log rows (dropped; serving continues)",
                    len(batch),
                )
            return 0
        self.written += written
        return written

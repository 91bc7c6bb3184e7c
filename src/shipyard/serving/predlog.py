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
``"probabilities"`` and ``"classes"`` for classifiers. A request with more than ``max_rows``
rows (``[serving] prediction_log_max_rows``, 1,000 by default) logs its first ``max_rows``
rows and ``"rows": N``, its full count, in ``outputs``: one abusive request cannot become
an unbounded database row, and row numbers (what feedback labels name) stay the request's.
The table itself is owned by :class:`~shipyard.datasets.prediction_log.PredictionLogStore`
(which inserts each batch and reads the rows back); this module only queues, encodes and
hands the batches over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from prometheus_client import CollectorRegistry, Counter

from shipyard.datasets.prediction_log import LogRow, PredictionLogStore
from shipyard.serving.base import Prediction
from shipyard.serving.spool import Spool, read_segment, replay
from shipyard.store import Database

logger = logging.getLogger("shipyard.serving.predlog")

DEFAULT_MAX_QUEUE = 10_000
DEFAULT_BATCH_ROWS = 500
DEFAULT_FLUSH_INTERVAL = 1.0
DEFAULT_MAX_ROWS = 1_000
_ERROR_LOG_EVERY = 60.0
_YIELD_EVERY = 16

# (model, version, request id, unix time, latency s, validated columns, prediction, shadow,
#  the request's row count)
_Entry = tuple[str, int, str, float, float, Mapping[str, Any], Prediction, bool, int]


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
    model, version, rid, at, latency, columns, prediction, shadow, rows = entry
    names = list(columns)
    lists = [np.asarray(columns[name]).tolist() for name in names]
    inputs = [dict(zip(names, values, strict=True)) for values in zip(*lists, strict=True)]
    outputs: dict[str, Any] = {"predictions": prediction.predictions}
    if prediction.probabilities is not None:
        outputs["probabilities"] = prediction.probabilities
        outputs["classes"] = prediction.classes
    if rows > len(prediction.predictions):
        outputs["rows"] = rows
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


def _capped(
    columns: Mapping[str, Any], prediction: Prediction, keep: int
) -> tuple[Mapping[str, Any], Prediction]:
    """``columns`` and ``prediction`` cut to their first ``keep`` rows (copies, not views)."""
    kept = {name: np.array(np.asarray(values)[:keep]) for name, values in columns.items()}
    probabilities = prediction.probabilities
    return kept, Prediction(
        np.array(prediction.predictions[:keep]),
        None if probabilities is None else np.array(probabilities[:keep]),
        prediction.classes,
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
        max_rows: int = DEFAULT_MAX_ROWS,
        spool: Path | None = None,
    ) -> None:
        self.database = database
        self.spool_folder = spool
        self._spool: Spool | None = None
        self._spooled = 0
        self.max_rows = max(1, max_rows)
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
        """Queue one answered prediction (``latency`` in seconds); drop it if the queue is full.

        Only the first ``max_rows`` rows of a longer request are kept (copied, so the
        request's arrays are freed once it is answered).
        """
        rows = len(prediction.predictions)
        if rows > self.max_rows:
            columns, prediction = _capped(columns, prediction, self.max_rows)
        entry = (
            model,
            version,
            request_id,
            time.time(),
            latency,
            columns,
            prediction,
            shadow,
            rows,
        )
        spool = self._spool
        if spool is not None:  # on disk before the answer is sent; the writer reads it back
            spool.append(encode_entry(entry))
            self._spooled += 1
            if self._spooled >= self.batch_rows:
                self._wake.set()
            return
        queue = self._queue
        if len(queue) >= self.max_queue:
            self.dropped.inc()
            return
        queue.append(entry)
        if len(queue) >= self.batch_rows:
            self._wake.set()

    @property
    def pending(self) -> int:
        """Entries queued and not yet written."""
        return len(self._queue)

    # -- the writer thread ----------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread (idempotent); with a spool, replay what a stopped server left."""
        if self._thread is not None and self._thread.is_alive():
            return
        if self.spool_folder is not None and self._spool is None:
            replay(self.spool_folder, self.store.present, self.store.append)
            self._spool = Spool(self.spool_folder)
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
        spool = self._spool
        if spool is not None:
            spool.close()
        self.flush()
        self._spool = None

    def flush(self) -> int:
        """Write everything queued (or spooled) now, in batches; the number of rows written."""
        if self._spool is not None:
            return self._flush_spool(self._spool)
        written = 0
        with self._write_lock:
            queue = self._queue
            while queue:
                batch: list[_Entry] = []
                while queue and len(batch) < self.batch_rows:
                    batch.append(queue.popleft())
                written += self._write(batch)
        return written

    def _flush_spool(self, spool: Spool) -> int:
        """Write the closed segments (after closing the current one), deleting each once
        committed; a segment that fails stays for the next flush (nothing is dropped)."""
        written = 0
        with self._write_lock:
            if not self._stopping.is_set():
                self._spooled = 0
                spool.rotate()
            while spool.closed:
                path = spool.closed[0]
                try:
                    rows = read_segment(path)
                    written += self.store.append(rows) if rows else 0
                except Exception:
                    self._log_error(f"could not write the spooled rows of {path.name} (kept)")
                    break
                path.unlink(missing_ok=True)
                spool.closed.pop(0)
        self.written += written
        return written

    def _log_error(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= _ERROR_LOG_EVERY:
            self._last_error_log = now
            logger.exception("%s; serving continues", message)

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
            self._log_error(f"could not write {len(batch)} prediction log rows (dropped)")
            return 0
        self.written += written
        return written

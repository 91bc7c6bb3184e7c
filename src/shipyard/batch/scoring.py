"""Scoring one chunk: input rows in, a prediction table out.

The output of every chunk has the same columns, in this order:

- the job's key columns (``--key customer_id``), copied from the input, or ``row_id`` (the
  row's 0-based position in the input) when no key is given;
- ``prediction``; for classifiers one ``proba_<class>`` column per class;
- ``model``, ``model_version``, ``scored_at`` (UTC, the chunk's scoring time) and
  ``batch_id`` (the job).

A classifier's labels always come from its own ``predict``, never from the argmax of its
probabilities: the two differ for tuned thresholds (``FixedThresholdClassifier``), Platt-scaled
SVMs and custom wrappers, and rows on which they agree prove nothing about the next rows.
Calling both costs two passes over the trees; for a scikit-learn HistGradientBoosting model
(alone or at the end of a Pipeline) the scorer instead computes the raw scores once and derives
labels and probabilities from them exactly as scikit-learn's own ``predict`` and
``predict_proba`` do. How a chunk reaches the model (a row-major matrix for the trees, a plain
matrix for estimators fitted without feature names, or the validated DataFrame) is the *mode*
picked on the first chunk (:mod:`shipyard.batch.modes`): the first whose answers equal the
model's own on the chunk's first rows.

Warnings the model raises (scikit-learn's "X has feature names, but ..." and the like) are
caught while scoring and kept once each in :attr:`Scorer.notes`, which the job reports at the
end, instead of being printed for every chunk.
"""

from __future__ import annotations

import threading
import warnings
import weakref
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from shipyard.batch.modes import Answers, FrameMode, Mode, Waiting, candidates
from shipyard.core.exceptions import SchemaError
from shipyard.core.schema import PREDICTION, proba_column
from shipyard.flavors.base import LoadedModel

#: Columns every prediction row carries besides its keys and the model's answers.
META_COLUMNS = ("model", "model_version", "scored_at", "batch_id")
ROW_ID = "row_id"
#: Rows of the first chunk on which a mode must give the model's own answers to be adopted.
CHECK_ROWS = 2048


class Notes:
    """Distinct warnings raised while scoring, each kept once with how often it was raised."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def capture(self) -> Iterator[None]:
        """Keep the warnings raised inside the block instead of printing them."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            finally:
                for item in caught:
                    self.add(type(item.message).__name__, str(item.message))

    def add(self, category: str, message: str, times: int = 1) -> None:
        """Count one more ``category: message``."""
        with self._lock:
            key = (category, message)
            self._counts[key] = self._counts.get(key, 0) + times

    def merge(self, counts: Iterable[tuple[tuple[str, str], int]]) -> None:
        """Add the warnings another scorer kept (a Dask worker's :meth:`take`)."""
        for (category, message), times in counts:
            self.add(category, message, times)

    def counts(self) -> list[tuple[tuple[str, str], int]]:
        """((category, message), times), in the order first seen."""
        with self._lock:
            return list(self._counts.items())

    def take(self) -> list[tuple[tuple[str, str], int]]:
        """:meth:`counts`, forgetting them (what a Dask task hands back to the client)."""
        with self._lock:
            counts, self._counts = list(self._counts.items()), {}
        return counts

    def lines(self) -> list[str]:
        """One line per distinct warning: ``Category: message (N times)``."""
        return [
            f"{category}: {message}" + (f" ({times} times)" if times > 1 else "")
            for (category, message), times in self.counts()
        ]


class Pending:
    """A chunk being scored: :meth:`result` waits for its answers and builds its table."""

    def __init__(self, scorer: Scorer, table: pa.Table, first_row: int, answers: Waiting) -> None:
        self._scorer = scorer
        self._table = table
        self._first_row = first_row
        self._answers = answers

    def result(self) -> pa.Table:
        """The chunk's prediction table."""
        with self._scorer.notes.capture():
            labels, probabilities = self._answers()
        return self._scorer.table(self._table, self._first_row, labels, probabilities)


class Scorer:
    """Scores chunks with one loaded model for one job.

    ``threads``: how many threads the ``kernel`` mode spreads a chunk's blocks over; by
    default as many as the model's library would use (its OpenMP default, which
    ``OMP_NUM_THREADS`` and ``threadpoolctl`` limits set).
    """

    def __init__(
        self,
        model: LoadedModel,
        keys: Sequence[str],
        batch_id: str,
        *,
        threads: int | None = None,
    ) -> None:
        if model.signature is None or not model.signature.inputs:
            raise SchemaError(
                f"{model!r} has no input signature, so shipyard cannot tell its columns from "
                "the input's other columns; register it with an input example"
            )
        self.model = model
        self.keys = list(keys)
        self.batch_id = batch_id
        self.features = model.signature.columns
        classes = model.classes if model.has_proba else None
        self.classes = list(np.asarray(classes).tolist()) if classes is not None else None
        outputs = {*META_COLUMNS, PREDICTION, *(proba_column(c) for c in self.classes or [])}
        clash = [k for k in self.keys if k in outputs]
        if clash or len(set(self.keys)) != len(self.keys):
            name = clash[0] if clash else next(k for k in self.keys if self.keys.count(k) > 1)
            raise SchemaError(
                f"key column {name!r} is named twice, or like an output column "
                f"({', '.join(sorted(outputs))}); give each key once, or rename it first",
                column=name,
            )
        #: the warnings the model raised, once each (see the module docstring)
        self.notes = Notes()
        self.threads = threads if threads is not None else _library_threads()
        self._mode: Mode | None = None  # picked on the first chunk
        self._pool: ThreadPoolExecutor | None = None

    @property
    def name(self) -> str:
        """The model's name."""
        return str(self.model.name)

    @property
    def version(self) -> int:
        """The model's version."""
        return int(self.model.version or 0)

    @property
    def mode(self) -> str | None:
        """How chunks reach the model (:mod:`shipyard.batch.modes`); None before the first."""
        return self._mode.name if self._mode is not None else None

    def float_features(self) -> dict[str, pa.DataType]:
        """The floating-point features, as the Arrow type a text input should read them as."""
        signature = self.model.signature
        inputs = signature.inputs if signature is not None else ()
        return {c.name: pa.float64() for c in inputs if c.dtype.startswith("float")}

    def check_columns(self, names: Sequence[str]) -> None:
        """Refuse an input that lacks a feature or key column, naming it."""
        present = set(names)
        for column in self.features:
            if column not in present:
                raise SchemaError(
                    f"the input has no column {column!r}, which {self.name}:{self.version} "
                    f"needs; its features are {', '.join(self.features)}",
                    column=column,
                )
        for key in self.keys:
            if key not in present:
                raise SchemaError(
                    f"key column {key!r} is not in the input (its columns: "
                    f"{', '.join(names)}); name existing columns with --key",
                    column=key,
                )

    def score(self, table: pa.Table, first_row: int) -> pa.Table:
        """The prediction table of the input rows ``table`` (row ids from ``first_row``)."""
        return self.start(table, first_row).result()

    def start(self, table: pa.Table, first_row: int) -> Pending:
        """Begin scoring ``table``; the model may work on it while the caller starts the next.

        Raises the signature's errors (a missing column, a wrong type) here.
        """
        self.check_columns(table.column_names)
        with self.notes.capture():
            if self._mode is None:
                self._mode = self._pick(table)
            answers = self._mode.start(table)
        return Pending(self, table, first_row, answers)

    def close(self) -> None:
        """Stop the threads of the ``kernel`` mode (a new one starts if scoring goes on)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def table(
        self,
        table: pa.Table,
        first_row: int,
        labels: np.ndarray,
        probabilities: np.ndarray | None,
    ) -> pa.Table:
        """The output table of the input rows ``table`` and the model's answers for them."""
        columns: dict[str, Any] = {}
        if self.keys:
            for key in self.keys:
                columns[key] = table.column(key)
        else:
            columns[ROW_ID] = pa.array(
                np.arange(first_row, first_row + table.num_rows, dtype=np.int64)
            )
        columns[PREDICTION] = pa.array(_plain(labels))
        if probabilities is not None and self.classes is not None:
            for number, label in enumerate(self.classes):
                columns[proba_column(label)] = pa.array(probabilities[:, number])
        rows = table.num_rows
        now = pd.Timestamp(datetime.now(UTC))
        columns["model"] = pa.repeat(pa.scalar(self.name, pa.string()), rows)
        columns["model_version"] = pa.repeat(pa.scalar(self.version, pa.int32()), rows)
        columns["scored_at"] = pa.repeat(pa.scalar(now, pa.timestamp("us", "UTC")), rows)
        columns["batch_id"] = pa.repeat(pa.scalar(self.batch_id, pa.string()), rows)
        return pa.table(columns)

    def _pick(self, table: pa.Table) -> Mode:
        """The first mode whose answers equal the model's own on the chunk's first rows."""
        sample = self.model.prepare(table.slice(0, CHECK_ROWS).select(self.features).to_pandas())
        with_proba = self.classes is not None and self.model.has_proba
        own = FrameMode(self.model, self.features, with_proba)
        expected: Answers | None = None
        # the check's own warnings (the model fed a frame it was not fitted on, to get its
        # own answers) say nothing about scoring: they are dropped
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for mode in candidates(self.model, self.features, with_proba, self._threads):
                if isinstance(mode, FrameMode):
                    break
                if expected is None:
                    expected = own.from_frame(sample)
                try:
                    got = mode.from_frame(sample)
                except Exception:  # noqa: S112 - a library whose internals moved, a model that needs names
                    continue
                if _same(got, expected):
                    return mode
        return own

    def _threads(self) -> Executor | None:
        """The ``kernel`` mode's pool (None: score in the calling thread)."""
        if self.threads < 2:
            return None
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self.threads, thread_name_prefix="shipyard-score", initializer=_one_thread
            )
            weakref.finalize(self, self._pool.shutdown, wait=False)
        return self._pool


def _same(got: Answers, expected: Answers) -> bool:
    """Equal labels and equal probabilities (both absent, or equal to the last bit)."""
    labels, probabilities = got
    if not np.array_equal(np.asarray(labels), np.asarray(expected[0])):
        return False
    if probabilities is None or expected[1] is None:
        return probabilities is None and expected[1] is None
    return np.array_equal(probabilities, expected[1])


def _library_threads() -> int:
    """How many OpenMP threads scikit-learn would use in the calling thread."""
    try:
        from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
    except ImportError:  # pragma: no cover - a scikit-learn without the helper
        return 1
    return max(1, int(_openmp_effective_n_threads()))


def _one_thread() -> None:
    """A scoring thread runs its blocks on one OpenMP thread (its siblings take the others)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="openmp")


def _plain(values: np.ndarray) -> Any:
    """Labels as an Arrow-friendly array (object arrays of strings become strings)."""
    if values.dtype == object:
        return [
            None if v is None else (v if isinstance(v, str | int | float | bool) else str(v))
            for v in values.tolist()
        ]
    return values.reshape(-1)

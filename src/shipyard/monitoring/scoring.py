"""The model's answers on a window, scored chunk by chunk, for prediction drift.

The answers are those :func:`shipyard.registry.profiles.model_outputs` gives (``prediction``
and, for classifiers, one ``proba_<class>`` column per class), computed on
:data:`CHUNK_ROWS` rows at a time: a chunk is the only part of the window held as a pandas
frame, so memory is bounded by the chunk, not the window. Each chunk is checked against the
signature once, then given to the model's ``predict`` and ``predict_proba`` (a scikit-learn
pipeline's transformers run once for both: ``Predictor.answers``). A numeric input
that arrives as text goes to the model as objects, which the signature reads as numbers
when every value is one (as it does for the prediction log's JSON values).

When the rows do not fit the signature, the error is the one the whole window gives (a
chunk would count only its own missing values).

The model's native threads (BLAS, OpenMP) are held to one core fewer than the machine has:
the monitor computes the drift statistics on the other one meanwhile, and an OpenBLAS
thread waiting for work spins, taking that core from them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
from threadpoolctl import threadpool_limits

from shipyard.core.exceptions import SchemaError
from shipyard.core.schema import PREDICTION, Signature, proba_column
from shipyard.monitoring.parquet import ParquetRows
from shipyard.monitoring.windows import Window, as_table, chunks, to_frame

if TYPE_CHECKING:
    from shipyard.flavors import LoadedModel

#: Rows scored at once.
CHUNK_ROWS = 100_000


def score(loaded: LoadedModel, window: Window, signature: Signature) -> pa.Table:
    """The model's answers on every row of ``window``, in row order.

    Raises :class:`SchemaError` when the rows do not fit the signature.
    """
    columns = signature.columns
    missing = [c for c in columns if c not in window.columns]
    if missing:  # the signature names the first missing column
        loaded.prepare(_whole(window, [c for c in columns if c in window.columns]).head(1))
    parts: list[pa.Table] = []
    with threadpool_limits(limits=max(1, (os.cpu_count() or 1) - 1)):
        for frame in chunks(window, columns, CHUNK_ROWS):
            try:
                parts.append(answers(loaded, _numbers_as_objects(frame, signature)))
            except SchemaError as exc:
                raise _whole_window_error(loaded, window, signature, exc) from exc
    if not parts:
        return pa.table({})
    return pa.concat_tables(parts, promote_options="permissive")


def answers(loaded: LoadedModel, frame: pd.DataFrame) -> pa.Table:
    """``model_outputs(loaded, frame)`` as Arrow, with ``frame`` checked once for both calls."""
    predictor = loaded.predictor
    classes = loaded.classes if predictor.predict_proba is not None else None
    predictions, probabilities = predictor.answers(loaded.prepare(frame), proba=classes is not None)
    outputs = {PREDICTION: predictions.reshape(len(frame))}
    if classes is not None and probabilities is not None:
        for number, label in enumerate(np.asarray(classes).tolist()):
            outputs[proba_column(label)] = probabilities[:, number]
    return pa.Table.from_pandas(pd.DataFrame(outputs), preserve_index=False)


def _numbers_as_objects(frame: pd.DataFrame, signature: Signature) -> pd.DataFrame:
    """Numeric inputs held as text become objects, which the signature reads as numbers."""
    text = [
        c
        for c in frame.columns
        if signature.column(str(c)).is_numeric
        and pd.api.types.is_string_dtype(frame[c].dtype)
        and not pd.api.types.is_object_dtype(frame[c].dtype)
    ]
    if not text:
        return frame
    return frame.astype(dict.fromkeys(text, object))


def _whole(window: Window, columns: list[str]) -> pd.DataFrame:
    """The ``columns`` of every row of ``window`` as one pandas frame."""
    data = window.data
    if isinstance(data, pd.DataFrame):
        return data[columns]
    table = data.table(columns) if isinstance(data, ParquetRows) else as_table(window)
    return to_frame(table.select(columns), window.encoded)


def _whole_window_error(
    loaded: LoadedModel, window: Window, signature: Signature, error: SchemaError
) -> SchemaError:
    """The signature's error on the whole window (the chunk's when the whole one passes)."""
    try:
        loaded.prepare(_numbers_as_objects(_whole(window, signature.columns), signature))
    except SchemaError as exc:
        return exc
    return error

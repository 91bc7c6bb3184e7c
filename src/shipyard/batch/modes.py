"""How a chunk's rows reach the model: the input modes a :class:`~shipyard.batch.scoring.Scorer`
picks from.

On its first chunk the scorer tries, in this order, the modes that apply to the model and
adopts the first whose answers *equal* the model's own (``LoadedModel``'s validated DataFrame,
then the model's ``predict`` and ``predict_proba``) on the chunk's first rows:

- ``kernel``: a scikit-learn HistGradientBoosting classifier or regressor on its own. Its trees
  run once per chunk through :class:`~shipyard.flavors.kernels.HistGradientBoostingKernel` (the
  same compiled routine and arithmetic as scikit-learn's, bit-identical) on a row-major float64
  matrix. The chunk is cut into blocks of rows scored by as many threads as the library would
  use (its OpenMP default, ``OMP_NUM_THREADS``), each block on one OpenMP thread: a thread
  that finishes early takes the next block instead of waiting for its slowest sibling, and the
  next chunk's blocks queue behind, so the cores never wait for one another. Labels and
  probabilities come from the raw scores exactly as scikit-learn's ``predict`` and
  ``predict_proba`` derive them.
- ``pipeline``: a Pipeline ending in a HistGradientBoostingClassifier: its head transforms the
  rows, the trees' raw scores are computed once, labels and probabilities derived from them.
- ``array``: any scikit-learn estimator (or Pipeline) on numeric columns that was fitted
  without feature names, or whose feature names are the signature's columns in order (then a
  copy without them): one column-major numpy matrix, as scikit-learn would make of the
  DataFrame, so no DataFrame is built and no "X has feature names, but ... was fitted without
  feature names" warning is raised per chunk. ``predict`` and ``predict_proba`` are both
  called: labels never come from the argmax of probabilities (see :mod:`.scoring`).
- ``frame``: the validated DataFrame into the model's own ``predict`` and ``predict_proba``
  (a scikit-learn pipeline's transformers run once for both).

The matrix modes take a chunk straight from Arrow when its column types are exactly the
signature's numeric dtypes and it holds no missing value where the signature allows none
(validating such a chunk changes nothing); any other chunk goes through ``Signature.validate``
first, which raises the signature's errors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa

from shipyard.core.schema import Signature
from shipyard.flavors.base import LoadedModel
from shipyard.flavors.kernels import HistGradientBoostingKernel, without_feature_names

#: labels (or a regressor's values), and class probabilities when the model gives them
Answers = tuple[np.ndarray, np.ndarray | None]
#: what :meth:`Mode.start` returns: call it to wait for the chunk's answers
Waiting = Callable[[], Answers]
#: Rows per block of the ``kernel`` mode: a block keeps a thread busy ~0.1 s for 100 trees,
#: long beside the ~0.3 ms of Python per block (2,048-row blocks were ~10 % slower), short
#: enough that threads stay balanced (the next chunk's blocks queue behind a chunk's last).
BLOCK_ROWS = 16384


class Mode(ABC):
    """One way of feeding a chunk to the model."""

    name: ClassVar[str]

    def __init__(self, loaded: LoadedModel, features: Sequence[str], with_proba: bool) -> None:
        self.loaded = loaded
        self.features = list(features)
        self.with_proba = with_proba

    def start(self, table: pa.Table) -> Waiting:
        """Begin the chunk ``table``; the returned call waits for its answers."""
        answers = self.from_frame(self.validated(table))
        return lambda: answers

    @abstractmethod
    def from_frame(self, frame: pd.DataFrame) -> Answers:
        """The answers for a validated frame (every chunk that needs validation; the check)."""

    def validated(self, table: pa.Table) -> pd.DataFrame:
        """The chunk's features as the signature-validated frame (raises its errors)."""
        return self.loaded.prepare(table.select(self.features).to_pandas())


class FrameMode(Mode):
    """The validated DataFrame into the model's own ``predict`` and ``predict_proba``."""

    name = "frame"

    def from_frame(self, frame: pd.DataFrame) -> Answers:
        return self.loaded.predictor.answers(frame, proba=self.with_proba)


def exact_types(signature: Signature, names: Sequence[str]) -> dict[str, tuple[pa.DataType, bool]]:
    """Column → (the Arrow type of its signature dtype, missing values allowed); empty when a
    column is not numeric (such chunks always take the validated path)."""
    exact: dict[str, tuple[pa.DataType, bool]] = {}
    for name in names:
        spec = signature.column(name)
        if not spec.is_numeric:
            return {}
        exact[name] = (pa.from_numpy_dtype(np.dtype(spec.dtype)), spec.nullable)
    return exact


def arrow_columns(
    table: pa.Table, exact: dict[str, tuple[pa.DataType, bool]], names: Sequence[str]
) -> list[np.ndarray] | None:
    """The columns ``names`` as numpy arrays straight from Arrow, or ``None`` when the chunk
    must be validated first (a type that is not the signature's, or a missing value)."""
    if not exact:
        return None
    columns = []
    for name in names:
        column = table.column(name)
        arrow_type, nullable = exact[name]
        if column.type != arrow_type:
            return None
        if column.null_count and not (nullable and pa.types.is_floating(arrow_type)):
            return None  # validation names the column, or makes the integers floats
        values = column.to_numpy()
        if not nullable and values.dtype.kind == "f" and np.isnan(values).any():
            return None
        columns.append(values)
    return columns


def _fortran(columns: Sequence[np.ndarray], dtype: np.dtype[Any]) -> np.ndarray:
    """The column-major matrix scikit-learn makes of a DataFrame of these columns."""
    matrix = np.empty((len(columns[0]), len(columns)), dtype=dtype, order="F")
    for number, values in enumerate(columns):
        matrix[:, number] = values
    return matrix


class KernelMode(Mode):
    """A HistGradientBoosting model alone: one tree pass per block of rows, on a pool."""

    name = "kernel"

    def __init__(
        self,
        loaded: LoadedModel,
        features: Sequence[str],
        with_proba: bool,
        *,
        estimator: Any,
        kernel: HistGradientBoostingKernel,
        names: list[str],
        pool: Callable[[], Executor | None],
    ) -> None:
        super().__init__(loaded, features, with_proba)
        self.estimator = estimator
        self.kernel = kernel
        self.names = names
        self.pool = pool
        self.exact: dict[str, tuple[pa.DataType, bool]] = {}
        if loaded.signature is not None and set(names) == set(loaded.signature.columns):
            self.exact = exact_types(loaded.signature, names)

    def start(self, table: pa.Table) -> Waiting:
        columns = arrow_columns(table, self.exact, self.names)
        if columns is None:
            frame = self.validated(table)
            columns = [frame[name].to_numpy(dtype=np.float64) for name in self.names]
        rows = len(columns[0])
        pool = self.pool() if rows > BLOCK_ROWS else None
        if pool is None:
            answers = self._answers(self._raw(columns, 0, rows))
            return lambda: answers
        blocks = [
            pool.submit(self._raw, columns, first, min(first + BLOCK_ROWS, rows))
            for first in range(0, rows, BLOCK_ROWS)
        ]
        return lambda: self._answers(np.concatenate([block.result() for block in blocks]))

    def from_frame(self, frame: pd.DataFrame) -> Answers:
        columns = [frame[name].to_numpy(dtype=np.float64) for name in self.names]
        return self._answers(self._raw(columns, 0, len(frame)))

    def _raw(self, columns: Sequence[np.ndarray], first: int, stop: int) -> np.ndarray:
        # the trees walk rows: a row-major matrix is ~20 % faster than scikit-learn's own
        # column-major array of a DataFrame
        matrix = np.empty((stop - first, len(columns)), dtype=np.float64)
        for number, values in enumerate(columns):
            matrix[:, number] = values[first:stop]
        return self.kernel.raw_predict(matrix)

    def _answers(self, raw: np.ndarray) -> Answers:
        model = self.estimator
        if not self.kernel.is_classifier:  # the regressor's own predict
            return np.asarray(model._loss.link.inverse(raw.ravel())), None
        return _labels_and_probabilities(model, raw)


def _labels_and_probabilities(model: Any, raw: np.ndarray) -> Answers:
    """What a HistGradientBoostingClassifier's ``predict`` and ``predict_proba`` make of its
    raw scores."""
    binary = raw.shape[1] == 1
    encoded = (raw.ravel() > 0).astype(int) if binary else np.argmax(raw, axis=1)
    return model.classes_[encoded], np.asarray(model._loss.predict_proba(raw))


class ArrayMode(Mode):
    """A scikit-learn estimator on a column-major numpy matrix (no DataFrame, no name check)."""

    name = "array"

    def __init__(
        self, loaded: LoadedModel, features: Sequence[str], with_proba: bool, *, estimator: Any
    ) -> None:
        super().__init__(loaded, features, with_proba)
        self.estimator = estimator
        signature = loaded.signature
        assert signature is not None  # noqa: S101 - a Scorer refuses a model without one
        self.exact = exact_types(signature, self.features)
        # the dtype pandas gives a frame of these columns (what scikit-learn then receives)
        dtypes = [np.dtype(signature.column(name).dtype) for name in self.exact]
        self.dtype = np.result_type(*dtypes) if dtypes else np.dtype(np.float64)

    def start(self, table: pa.Table) -> Waiting:
        columns = arrow_columns(table, self.exact, self.features)
        if columns is None:
            return super().start(table)
        answers = self.compute(_fortran(columns, self.dtype))
        return lambda: answers

    def from_frame(self, frame: pd.DataFrame) -> Answers:
        return self.compute(np.asarray(frame[self.features]))

    def compute(self, data: Any) -> Answers:
        """The answers for the chunk's rows as the model takes them."""
        model = self.estimator
        probabilities = np.asarray(model.predict_proba(data)) if self.with_proba else None
        return np.asarray(model.predict(data)), probabilities


class PipelineMode(ArrayMode):
    """A Pipeline ending in a HistGradientBoostingClassifier: its head, then the trees once.

    It takes a plain matrix when the pipeline does (see :class:`ArrayMode`), else the
    validated frame.
    """

    name = "pipeline"

    def __init__(
        self,
        loaded: LoadedModel,
        features: Sequence[str],
        with_proba: bool,
        *,
        estimator: Any,
        matrix: bool,
    ) -> None:
        super().__init__(loaded, features, with_proba, estimator=estimator)
        self.head, self.model = estimator[:-1], estimator[-1]
        self.matrix = matrix
        if not matrix:
            self.exact = {}  # every chunk is validated, and the head gets the frame

    def from_frame(self, frame: pd.DataFrame) -> Answers:
        return self.compute(np.asarray(frame[self.features]) if self.matrix else frame)

    def compute(self, data: Any) -> Answers:
        raw = np.asarray(self.model._raw_predict(self.head.transform(data)))
        return _labels_and_probabilities(self.model, raw)


def candidates(
    loaded: LoadedModel,
    features: Sequence[str],
    with_proba: bool,
    pool: Callable[[], Executor | None],
) -> Iterator[Mode]:
    """The modes that may apply to ``loaded``, fastest first, each built only when the one
    before was not adopted; ``frame`` always comes last."""
    native = loaded.predictor.native
    try:
        from sklearn.base import BaseEstimator
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
        from sklearn.pipeline import Pipeline
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        yield FrameMode(loaded, features, with_proba)
        return
    kinds = (HistGradientBoostingClassifier, HistGradientBoostingRegressor)
    kernel = HistGradientBoostingKernel.build(native) if type(native) in kinds else None
    if kernel is not None and _has_internals(native):
        names = [str(n) for n in getattr(native, "feature_names_in_", features)]
        yield KernelMode(loaded, features, with_proba, estimator=native, kernel=kernel,
                         names=names, pool=pool)  # fmt: skip
    plain = _without_names(native, loaded.signature, features, BaseEstimator)
    if (
        with_proba
        and isinstance(native, Pipeline)
        and len(native.steps) > 1
        and type(native[-1]) is HistGradientBoostingClassifier
        and _has_internals(native[-1])
    ):
        yield PipelineMode(loaded, features, with_proba, estimator=native if plain is None
                           else plain, matrix=plain is not None)  # fmt: skip
    if plain is not None:
        yield ArrayMode(loaded, features, with_proba, estimator=plain)
    yield FrameMode(loaded, features, with_proba)


def _has_internals(model: Any) -> bool:
    """True when a HistGradientBoosting model has the private parts the one-pass modes call."""
    return hasattr(model, "_raw_predict") and hasattr(model, "_loss")


def _without_names(
    native: Any, signature: Signature | None, features: Sequence[str], base: type
) -> Any:
    """``native`` ready for a plain matrix of ``features``, or ``None`` when it cannot take one.

    A scikit-learn estimator on numeric columns qualifies when it was fitted without feature
    names (it takes the matrix as it is), or with the signature's columns in order (a copy
    without ``feature_names_in_``, so scikit-learn does not check names on every call).
    """
    if signature is None or not isinstance(native, base):
        return None
    if not all(signature.column(name).is_numeric for name in features):
        return None
    names = getattr(native, "feature_names_in_", None)
    if names is None:
        return native
    if [str(n) for n in names] == list(features):
        return without_feature_names(native)
    return None

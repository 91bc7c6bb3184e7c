"""The ``encoded`` input mode: a pipeline that starts with a ColumnTransformer, without pandas.

A scikit-learn ``Pipeline([("prepare", ColumnTransformer(...)), ..., ("model", estimator)])``
(the project template's shape: numbers passed through or scaled, text imputed and one-hot
encoded) spends most of a small batch's time in the ColumnTransformer's own machinery —
DataFrame column selection, validation, its job dispatch — rather than in the encoding.
:class:`EncodedPipeline` does the ColumnTransformer's job on the server's validated columns
(one 1-D numpy array each) directly:

- each of its fitted transformers gets its own columns stacked into one 2-D array, and the
  blocks are joined side by side, in the ColumnTransformer's order, as it joins them;
- ``"passthrough"`` (and the identity ``FunctionTransformer`` scikit-learn puts in its
  place) is the stacked columns themselves;
- a ``OneHotEncoder`` (alone, or last in a ``Pipeline`` block) is one dictionary lookup per
  value over the whole batch and one scatter of ones: categories are encoded once per batch,
  for every row at once, instead of through the encoder's per-call checks;
- any other transformer is its own ``transform`` on the stacked array (a copy that no longer
  checks feature names: :func:`~shipyard.flavors.kernels.without_feature_names`);

then the pipeline's later steps transform the matrix, and its final estimator predicts on
it (a HistGradientBoosting one through :class:`~shipyard.flavors.kernels.
HistGradientBoostingKernel`).

:meth:`EncodedPipeline.build` returns ``None`` for anything else (a sparse output, pandas
output, categories with missing values or floats, infrequent categories, a dropped
category, columns selected other than by name or position). Like every mode, it is only a
candidate: :class:`~shipyard.serving.served.ServingModel` adopts it only when its answers
equal the pipeline's own on the warm-up rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shipyard.flavors.kernels import HistGradientBoostingKernel, without_feature_names

_Transform = Callable[[np.ndarray], np.ndarray]
_NONE = np.array(None, dtype=object)  # compared element by element with text


class OneHot:
    """A fitted ``OneHotEncoder``'s ``transform``, dense, by dictionary lookups."""

    def __init__(self, encoder: Any) -> None:
        self._lookups = [
            {value: code for code, value in enumerate(c.tolist())} for c in encoder.categories_
        ]
        self._offsets = np.cumsum([0] + [len(c) for c in encoder.categories_])
        self._width = int(self._offsets[-1])
        self._dtype = np.dtype(encoder.dtype)
        self._refuse_unknown = encoder.handle_unknown == "error"

    @classmethod
    def build(cls, encoder: Any) -> OneHot | None:
        """The lookup encoder, or ``None`` when ``encoder`` does more than plain one-hot."""
        from sklearn.preprocessing import OneHotEncoder

        if type(encoder) is not OneHotEncoder or not hasattr(encoder, "categories_"):
            return None
        if encoder.drop_idx_ is not None or getattr(encoder, "_infrequent_enabled", True):
            return None
        for categories in encoder.categories_:
            kind = categories.dtype.kind
            if kind == "O" and not all(isinstance(v, str) for v in categories.tolist()):
                return None  # a missing value (None, NaN) seen as a category
            if kind not in "OiuU":
                return None
        return cls(encoder)

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """One-hot columns of the 2-D ``block`` (one column per encoded feature)."""
        rows = block.shape[0]
        out = np.zeros((rows, self._width), dtype=self._dtype)
        index = np.arange(rows)
        for number, lookup in enumerate(self._lookups):
            values = block[:, number].tolist()
            codes = np.fromiter((lookup.get(v, -1) for v in values), dtype=np.intp, count=rows)
            known = codes >= 0
            if not known.all():
                if self._refuse_unknown:
                    unknown = sorted({str(v) for v, k in zip(values, known, strict=True) if not k})
                    raise ValueError(
                        f"Found unknown categories {unknown} in column {number} during transform"
                    )
                codes, rows_at = codes[known], index[known]
            else:
                rows_at = index
            out[rows_at, self._offsets[number] + codes] = 1
        return out


@dataclass(frozen=True)
class _Block:
    """One transformer of the ColumnTransformer: its columns and what it does to them."""

    columns: tuple[str, ...]
    steps: tuple[_Transform, ...]  # empty: passthrough


class EncodedPipeline:
    """``predict`` / ``predict_proba`` of a ColumnTransformer pipeline on validated columns."""

    def __init__(self, blocks: list[_Block], steps: list[_Transform], final: Any) -> None:
        self._blocks = blocks
        self._missing_text = _missing_text()
        self._steps = steps
        self._final = HistGradientBoostingKernel.build(final) or final

    @classmethod
    def build(cls, native: Any, columns: Sequence[str]) -> EncodedPipeline | None:
        """The encoded pipeline of ``native``, or ``None`` when it does not apply."""
        try:
            from sklearn.compose import ColumnTransformer
            from sklearn.pipeline import Pipeline
        except ImportError:  # pragma: no cover - scikit-learn is a dependency
            return None
        if type(native) is not Pipeline or len(native.steps) < 2:
            return None
        prepare = native.steps[0][1]
        if type(prepare) is not ColumnTransformer or not hasattr(prepare, "transformers_"):
            return None
        if prepare.sparse_output_ or _pandas_output(prepare):
            return None
        names = [str(n) for n in getattr(prepare, "feature_names_in_", columns)]
        blocks: list[_Block] = []
        for _, transformer, selected in prepare.transformers_:
            chosen = _selected(selected, names)
            if chosen is None or any(c not in columns for c in chosen):
                return None
            if transformer == "drop" or not chosen:
                continue
            steps = _steps(transformer)
            if steps is None:
                return None
            blocks.append(_Block(tuple(chosen), tuple(steps)))
        middle = [step for _, step in native.steps[1:-1] if step != "passthrough"]
        if any(_pandas_output(step) for step in [*middle, native.steps[-1][1]]):
            return None
        transforms = [without_feature_names(step).transform for step in middle]
        return cls(blocks, transforms, native.steps[-1][1])

    def matrix(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """What the final estimator takes: every block side by side, then the middle steps."""
        parts = []
        for block in self._blocks:
            data = np.column_stack([columns[name] for name in block.columns])
            if data.dtype.kind == "O" and self._missing_text is not None:
                missing = np.equal(data, _NONE)
                if missing.any():  # as a DataFrame column holds it (pandas 3: NaN)
                    data = data.copy()
                    data[missing] = self._missing_text
            for step in block.steps:
                data = step(data)
            if hasattr(data, "toarray"):  # a sparse block: the ColumnTransformer densifies it
                data = data.toarray()
            parts.append(data)
        matrix = parts[0] if len(parts) == 1 else np.hstack(parts)
        for transform in self._steps:
            matrix = transform(matrix)
        return matrix

    def predict(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """The final estimator's ``predict``."""
        return np.asarray(self._final.predict(self.matrix(columns)))

    def predict_proba(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """The final estimator's ``predict_proba``."""
        return np.asarray(self._final.predict_proba(self.matrix(columns)))


def _missing_text() -> Any:
    """What a missing value (``None``) of a text column becomes once in a DataFrame and out
    again, as the ColumnTransformer's transformers see it: NaN with pandas 3's ``str``
    dtype, ``None`` (kept as is) before."""
    import pandas as pd

    frame = pd.DataFrame({"text": np.array(["a", None], dtype=object)}, copy=False)
    value = np.asarray(frame)[1, 0]
    return None if value is None else value


def _pandas_output(estimator: Any) -> bool:
    config = getattr(estimator, "_sklearn_output_config", None) or {}
    return config.get("transform", "default") not in ("default", None)


def _selected(selected: Any, names: list[str]) -> list[str] | None:
    """The column names a transformer takes (by name or position), or ``None``."""
    if isinstance(selected, str):
        return [selected]
    values = list(selected) if isinstance(selected, list | tuple | np.ndarray) else None
    if values is None:
        return None
    if all(isinstance(v, str) for v in values):
        return [str(v) for v in values]
    if all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values):
        return [names[int(v)] for v in values]
    return None


def _steps(transformer: Any) -> list[_Transform] | None:
    """What a fitted transformer does to its stacked columns: [] for passthrough."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    if isinstance(transformer, str):
        return [] if transformer == "passthrough" else None
    if type(transformer) is FunctionTransformer and transformer.func is None:
        return []  # the identity scikit-learn puts in place of "passthrough"
    if _pandas_output(transformer):
        return None
    parts = transformer.steps if type(transformer) is Pipeline else [(None, transformer)]
    steps: list[_Transform] = []
    for position, (_, step) in enumerate(parts):
        if step == "passthrough":
            continue
        encoder = OneHot.build(step) if position == len(parts) - 1 else None
        steps.append(encoder if encoder is not None else without_feature_names(step).transform)
    return steps

"""Leaner predict loops for estimators whose own ``predict`` spends most of its time in Python.

Shared by the model server (``serving.served``: small batches) and batch scoring
(``batch.scoring``: one tree pass per chunk on a row-major matrix).

scikit-learn's HistGradientBoosting ``predict_proba`` on a small batch costs ~0.7 ms for 100
trees, most of it per-tree Python overhead (input checks, a ``functools.partial`` and a new
output array per tree). :class:`HistGradientBoostingKernel` runs the *same* arithmetic —
``raw = zeros + baseline``, then ``raw[:, k] += tree(X)`` tree by tree in the same order
through scikit-learn's own compiled tree routine, then the model's own link / loss — on a
validated float64 matrix, so the answers are bit-identical at ~60 % of the time.

It uses scikit-learn internals, so it is only a candidate: :meth:`build` returns ``None``
when anything it needs is missing (another version, categorical features, a subclass), and
the serving model adopts it only after its answers equal the model's own on the input
example (``ServingModel.warm_up``); otherwise the next input mode is used.

Also here: :func:`without_feature_names` (the ``array`` mode's estimator copy) and
:func:`limit_model_threads` (native thread pools of the prediction threads).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np


class HistGradientBoostingKernel:
    """``predict`` / ``predict_proba`` of a fitted HistGradientBoosting model on a float matrix."""

    def __init__(self, estimator: Any, routine: Any, threads: Any) -> None:
        self._estimator = estimator
        self._routine = routine
        self._threads = threads
        self._trees = [
            (k, tree.nodes, tree.raw_left_cat_bitsets)
            for iteration in estimator._predictors
            for k, tree in enumerate(iteration)
        ]
        self._bitsets, self._feature_map = estimator._bin_mapper.make_known_categories_bitsets()
        self._baseline = estimator._baseline_prediction
        self._width = int(estimator.n_trees_per_iteration_)
        self._features = int(estimator.n_features_in_)
        self._loss = estimator._loss
        self.is_classifier = hasattr(estimator, "classes_")

    @classmethod
    def build(cls, estimator: Any) -> HistGradientBoostingKernel | None:
        """The kernel for a fitted HistGradientBoosting model, or ``None`` if it does not apply."""
        try:
            from sklearn.ensemble import (
                HistGradientBoostingClassifier,
                HistGradientBoostingRegressor,
            )
            from sklearn.ensemble._hist_gradient_boosting._predictor import (
                _predict_from_raw_data,
            )
            from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
        except ImportError:
            return None
        if type(estimator) not in (HistGradientBoostingClassifier, HistGradientBoostingRegressor):
            return None
        categorical = getattr(estimator, "is_categorical_", None)
        if categorical is not None and bool(np.any(categorical)):
            return None
        try:
            return cls(estimator, _predict_from_raw_data, _openmp_effective_n_threads)
        except (AttributeError, TypeError, ValueError):
            return None

    def raw_predict(self, matrix: np.ndarray) -> np.ndarray:
        """The raw (link-space) predictions, as ``estimator._raw_predict`` computes them."""
        data = np.ascontiguousarray(matrix, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != self._features:
            raise ValueError(f"expected {self._features} features but got shape {data.shape}")
        rows = data.shape[0]
        raw = np.zeros((rows, self._width), dtype=self._baseline.dtype, order="F")
        raw += self._baseline
        out = np.empty(rows, dtype=np.float64)
        threads = self._threads()
        routine, bitsets, feature_map = self._routine, self._bitsets, self._feature_map
        for k, nodes, categories in self._trees:
            routine(nodes, data, categories, bitsets, feature_map, threads, out)
            raw[:, k] += out
        return raw

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        """Class probabilities (classifiers only)."""
        return np.asarray(self._loss.predict_proba(self.raw_predict(matrix)))

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Labels for a classifier, values for a regressor."""
        if self.is_classifier:
            encoded = np.argmax(self.predict_proba(matrix), axis=1)
            return np.asarray(self._estimator.classes_[encoded])
        return np.asarray(self._loss.link.inverse(self.raw_predict(matrix).ravel()))


def without_feature_names(estimator: Any) -> Any:
    """A deep copy of a fitted scikit-learn estimator that no longer checks feature names.

    ``feature_names_in_`` is removed from the estimator and every estimator it holds (e.g.
    a Pipeline's steps), so it takes a plain array without sklearn's per-call name check
    and warning. Used only when those names are the signature's columns in order, and only
    after warm-up shows the answers equal the original's on the input example.
    """
    from sklearn.base import BaseEstimator

    twin = copy.deepcopy(estimator)
    seen: set[int] = set()

    def strip(value: Any, depth: int) -> None:
        if depth > 6 or id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, list | tuple):
            for item in value:
                strip(item, depth + 1)
        elif isinstance(value, BaseEstimator):
            vars(value).pop("feature_names_in_", None)
            for item in vars(value).values():
                strip(item, depth + 1)

    strip(twin, 0)
    return twin


def limit_model_threads(threads: int) -> None:
    """Cap native thread pools (OpenMP, BLAS) in the calling thread; 0 leaves them alone.

    The prediction threads call this once as they start: on a small machine, OpenMP
    threads fighting the event loop for cores cost far more than they give on small batches.
    """
    if threads > 0:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)

"""One served model version: loaded, warmed up, fed to its micro-batcher.

:class:`ModelManager` implements :class:`~shipyard.serving.base.ModelLookup`: it resolves
each reference (``churn@production``, ``fraud:3``), loads the version, warms it up and
starts its micro-batcher; it is ready only when every model is. :class:`ServingModel`
implements :class:`~shipyard.serving.base.ServedModel`.

At warm-up each model picks the cheapest way to feed its batches that gives the *same*
answers as ``LoadedModel.predict`` on the version's input example (or, for a version without
one, on rows made from its signature and reference profile: :mod:`shipyard.serving.warmup`),
trying in order:

- ``onnx`` (only with ``--compile onnx``): the model converted to ONNX at load and run with
  onnxruntime (:mod:`shipyard.serving.compile`); adopted only when its labels equal the
  original's and its probabilities agree within 1e-5 (ONNX computes in float32), otherwise
  one log line says why and the modes below are tried as usual;
- ``kernel``: the ``array`` input through a leaner predict loop with bit-identical arithmetic
  (:mod:`shipyard.flavors.kernels`, HistGradientBoosting models);
- ``array``: one 2-D numpy array straight into a scikit-learn estimator (no pandas at all):
  one fitted on arrays, or one fitted on a DataFrame whose ``feature_names_in_`` are the
  signature's columns in order (then a copy without ``feature_names_in_``, so sklearn skips
  its per-call name check; the warm-up comparison below proves the answers are the same);
- ``encoded``: a pipeline that starts with a ``ColumnTransformer`` (text one-hot encoded,
  numbers passed through...) fed the validated columns without pandas, its categories
  encoded once per batch (:mod:`shipyard.serving.encoded`);
- ``frame``: one DataFrame per batch built from the validated columns (models fitted on
  DataFrames, e.g. a ``ColumnTransformer`` selecting columns by name);
- ``checked``: the registry's own path, ``Signature.validate`` on a DataFrame per batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shipyard.core.schema import Signature
from shipyard.flavors import LoadedModel
from shipyard.flavors.kernels import (
    HistGradientBoostingKernel,
    without_feature_names,
)
from shipyard.registry import VersionInfo
from shipyard.serving.answers import SAME_MODEL, agree
from shipyard.serving.base import Prediction
from shipyard.serving.batching import BatcherClosedError, BatchSettings, MicroBatcher
from shipyard.serving.columns import ColumnCaster, records_to_columns, to_frame, to_matrix
from shipyard.serving.compile import (
    CompileError,
    OnnxModel,
    compile_onnx,
    same_answers,
)
from shipyard.serving.encoded import EncodedPipeline
from shipyard.serving.metrics import ServingMetrics
from shipyard.serving.routing import (
    ShadowMirror,
)
from shipyard.serving.warmup import synthetic_rows

if TYPE_CHECKING:  # the profile's module imports scipy.stats: not on the serving path
    from shipyard.statistics.profile import DatasetProfile

logger = logging.getLogger("shipyard.serving")


#: The ways a batch can be fed to a model, cheapest first.
MODES = ("onnx", "kernel", "array", "encoded", "frame", "checked")
_Compute = Callable[[Any], np.ndarray]


class ServingModel:
    """One loaded, warmed-up model version behind a micro-batcher."""

    def __init__(
        self,
        loaded: LoadedModel,
        info: VersionInfo,
        executor: Executor,
        batching: BatchSettings | None = None,
        metrics: ServingMetrics | None = None,
        *,
        compile_to: str | None = None,
        profile: DatasetProfile | None = None,
    ) -> None:
        #: ``"onnx"`` to try the ``onnx`` mode first (``shipyard serve --compile onnx``)
        self.compile_to = compile_to
        #: the version's reference profile: ranges and categories for warm-up rows when it
        #: has no input example (:func:`~shipyard.serving.warmup.synthetic_rows`)
        self.profile = profile
        self.name = info.name
        self.version = info.version
        self.flavor = info.flavor
        self.signature: Signature | None = loaded.signature
        self.aliases: tuple[str, ...] = info.aliases  # what it holds *here* (see ModelManager)
        self.registry_aliases: tuple[str, ...] = info.aliases  # what it held when loaded
        self.mirror: ShadowMirror | None = None  # set on a champion that has a shadow
        self.successor: ServingModel | None = None  # set when a hot swap retires this model
        self.input_example = info.input_example
        self.loaded = loaded
        classes = loaded.classes
        self.classes: list[Any] | None = (
            np.asarray(classes).tolist() if classes is not None else None
        )
        self.has_proba = loaded.has_proba
        self.mode = "checked"
        self._derive_labels = False
        self._array_model: Any = None  # what the ``array`` mode calls (see warm_up)
        self._kernel: Any = None  # what the ``kernel`` mode calls
        self._encoded: Any = None  # what the ``encoded`` mode calls
        self._onnx: OnnxModel | None = None  # what the ``onnx`` mode calls
        self._caster = ColumnCaster(self.signature)
        labels = (self.name, str(self.version))
        self._inflight = metrics.inflight.labels(*labels) if metrics else None
        batch_hist = metrics.batch_size.labels(*labels) if metrics else None
        errors = metrics.model_errors.labels(*labels) if metrics else None
        self._batcher = MicroBatcher(
            self.run_batch,
            executor,
            batching,
            label=f"model {self.name}:{self.version}",
            on_batch=(lambda rows, _n: batch_hist.observe(rows)) if batch_hist else None,
            on_error=errors.inc if errors else None,
        )

    def __repr__(self) -> str:
        return f"ServingModel({self.name}:{self.version}, flavor={self.flavor!r}, mode={self.mode})"

    @property
    def batcher(self) -> MicroBatcher:
        """The model's micro-batcher (its ``batches`` counts predict calls)."""
        return self._batcher

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/models`` shows for this model."""
        return {
            "name": self.name,
            "version": self.version,
            "flavor": self.flavor,
            "aliases": list(self.aliases),
            "inputs": [c.to_dict() for c in self.signature.inputs] if self.signature else None,
            "classes": self.classes,
            "probabilities": self.has_proba,
            "input_mode": self.mode,
        }

    # -- the ServedModel contract ---------------------------------------------------------

    def validate(self, columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Check and cast request columns; :class:`SchemaError` names the column."""
        return self._caster.cast(columns)

    def validate_records(self, records: list[Any]) -> dict[str, np.ndarray] | None:
        """Records of numbers as one matrix of columns, or ``None``: use :meth:`validate`."""
        return self._caster.cast_records(records)

    async def predict(self, columns: Mapping[str, np.ndarray]) -> Prediction:
        """Predict validated columns; concurrent calls are merged into one batch.

        A request that found this model just before a hot swap retired it is answered by
        its successor; a champion with a shadow mirrors the request once answered.
        """
        try:
            if self._inflight is None:
                result = await self._batcher.submit(columns)
            else:
                self._inflight.inc()
                try:
                    result = await self._batcher.submit(columns)
                finally:
                    self._inflight.dec()
        except BatcherClosedError:
            if self.successor is None:
                raise
            return await self.successor.predict(columns)
        if self.mirror is not None:
            self.mirror.mirror(columns, result)
        return result

    # -- running --------------------------------------------------------------------------

    def run_batch(self, columns: dict[str, np.ndarray]) -> Prediction:
        """Predict one batch synchronously (the batcher calls this in a worker thread)."""
        return self._compute(self.mode, columns, derive=self._derive_labels)

    def _compute(self, mode: str, columns: dict[str, np.ndarray], *, derive: bool) -> Prediction:
        if mode == "onnx":  # labels and probabilities from one session run, never derived
            assert self._onnx is not None  # noqa: S101 - narrows the type; the caller guarantees it
            labels, probabilities = self._onnx.run(columns)
            return Prediction(labels, probabilities, self.classes)
        if mode == "frame" and not derive:  # a pipeline's steps run once for both answers
            predictor = self.loaded.predictor
            labels, probabilities = predictor.answers(
                to_frame(columns, self.signature), proba=predictor.predict_proba is not None
            )
            return Prediction(labels, probabilities, self.classes)
        predict, proba, data = self._functions(mode, columns)
        probabilities = np.asarray(proba(data)) if proba is not None else None
        if derive and probabilities is not None and self.classes is not None:
            predictions = np.asarray(self.classes)[np.argmax(probabilities, axis=1)]
        else:
            predictions = np.asarray(predict(data))
        return Prediction(predictions, probabilities, self.classes)

    def _functions(
        self, mode: str, columns: dict[str, np.ndarray]
    ) -> tuple[_Compute, _Compute | None, Any]:
        predictor = self.loaded.predictor
        if mode == "kernel":
            kernel = self._kernel
            proba = kernel.predict_proba if predictor.predict_proba is not None else None
            return kernel.predict, proba, to_matrix(columns)
        if mode == "array":
            native = self._array_model
            proba = native.predict_proba if predictor.predict_proba is not None else None
            return native.predict, proba, to_matrix(columns)
        if mode == "encoded":
            encoded = self._encoded
            proba = encoded.predict_proba if predictor.predict_proba is not None else None
            return encoded.predict, proba, columns
        if mode == "frame":
            return predictor.predict, predictor.predict_proba, to_frame(columns, self.signature)
        loaded = self.loaded
        return (
            loaded.predict,
            loaded.predict_proba if loaded.has_proba else None,
            pd.DataFrame(columns),
        )

    def warm_up(self) -> None:
        """Pick the fastest input mode that matches the registry's answers, then warm caches.

        The rows are the version's input example, else rows made from its signature and
        reference profile (:func:`~shipyard.serving.warmup.synthetic_rows`). Without a
        signature, or when the model refuses those made-up rows, the model keeps the
        ``checked`` mode and is not exercised.
        """
        rows, source = self.input_example, "example row(s)"
        if not rows:
            rows = synthetic_rows(self.signature, self.profile)
            source = "row(s) made from its signature"
            if rows is None:
                logger.warning(
                    "%r has neither an input example nor a signature: serving it unwarmed", self
                )
                return
        frame = pd.DataFrame(rows)
        try:
            expected = np.asarray(self.loaded.predict(frame))
            expected_proba = (
                np.asarray(self.loaded.predict_proba(frame)) if self.has_proba else None
            )
            columns = self.validate(records_to_columns(rows))
        except Exception as exc:
            if self.input_example:  # the example predicted at registration: a real failure
                raise
            logger.warning(
                "%r has no input example and refuses rows made from its signature (%s: %s): "
                "serving it unwarmed; register it with an input example to warm it up",
                self,
                type(exc).__name__,
                exc,
            )
            return
        compiled = self._try_compile(columns, expected, expected_proba)
        for mode in [] if compiled else self._candidate_modes():
            try:
                got = self._compute(mode, columns, derive=False)
            except Exception as exc:  # a mode the model cannot take: try the next one
                logger.debug("%r cannot take %s input: %s", self, mode, exc)
                continue
            if agree(got.predictions, expected, SAME_MODEL) and agree(
                got.probabilities, expected_proba, SAME_MODEL
            ):
                self.mode = mode
                break
        if expected_proba is not None and self.classes is not None:
            derived = np.asarray(self.classes)[np.argmax(expected_proba, axis=1)]
            self._derive_labels = agree(derived, expected, SAME_MODEL)
        first_row = {name: values[:1] for name, values in columns.items()}
        for _ in range(3):
            self.run_batch(first_row)
            self.run_batch(columns)
        logger.info("%r warmed up on %d %s", self, len(frame), source)

    def _try_compile(
        self, columns: dict[str, np.ndarray], expected: np.ndarray, expected_proba: Any
    ) -> bool:
        """Adopt the ``onnx`` mode when requested and it matches; else log one line why not."""
        if self.compile_to is None:
            return False
        try:
            if self.compile_to != "onnx":
                raise CompileError(f"unknown compile target {self.compile_to!r} (onnx)")
            self._onnx = compile_onnx(self.loaded.predictor.native, self.signature, self.classes)
            got = self._compute("onnx", columns, derive=False)
            reason = same_answers((got.predictions, got.probabilities), (expected, expected_proba))
            if reason is not None:
                raise CompileError(f"its answers differ on the input example: {reason}")
        except Exception as exc:  # never fail the load: keep the original path
            self._onnx = None
            why = str(exc) if isinstance(exc, CompileError) else f"{type(exc).__name__}: {exc}"
            logger.warning(
                "%s:%s: --compile onnx not used, serving the model as registered: %s",
                self.name,
                self.version,
                why,
            )
            return False
        self.mode = "onnx"
        logger.info("%s:%s: serving ONNX (%s)", self.name, self.version, self._onnx.source)
        return True

    def _candidate_modes(self) -> list[str]:
        modes = ["frame", "checked"]
        native = self.loaded.predictor.native
        signature = self.signature
        if (
            signature is not None
            and _is_sklearn(native)
            and all(c.is_numeric or c.dtype == "bool" for c in signature.inputs)
        ):
            names = getattr(native, "feature_names_in_", None)
            if names is None:
                self._array_model = native
            elif [str(n) for n in names] == [c.name for c in signature.inputs]:
                self._array_model = without_feature_names(native)
            if self._array_model is not None:
                modes.insert(0, "array")
                self._kernel = HistGradientBoostingKernel.build(native)
                if self._kernel is not None:
                    modes.insert(0, "kernel")
        if signature is not None and _is_sklearn(native):
            self._encoded = EncodedPipeline.build(native, signature.columns)
            if self._encoded is not None:
                modes.insert(modes.index("frame"), "encoded")
        return modes

    def start(self) -> None:
        """Start taking requests (inside the running event loop)."""
        self._batcher.start()

    async def stop(self) -> None:
        """Answer every queued request, then stop."""
        await self._batcher.stop()

    async def retire(self, successor: ServingModel) -> None:
        """Answer what is queued, then hand any late request to ``successor`` (hot swap)."""
        self.successor = successor
        self.mirror = None
        await self._batcher.stop()


def _is_sklearn(native: object) -> bool:
    try:
        from sklearn.base import BaseEstimator
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        return False
    return isinstance(native, BaseEstimator)

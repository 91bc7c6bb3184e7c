"""``shipyard serve --compile onnx``: convert a model to ONNX at load, run it with onnxruntime.

:func:`compile_onnx` converts, in memory, the native model of a served version:

- a scikit-learn estimator or pipeline with skl2onnx (``to_onnx``), one input per signature
  column (``FloatTensorType`` for floats, ``Int64TensorType`` for integers and booleans,
  ``StringTensorType`` for strings), or, when that fails and every column is numeric, one
  2-D float tensor; classifiers without ZipMap (``options={id(model): {"zipmap": False}}``);
- a LightGBM ``Booster`` with onnxmltools ``convert_lightgbm``, an XGBoost model with
  ``convert_xgboost`` (numeric features only: one 2-D float tensor in the model's feature
  order).

The graph runs on one onnxruntime CPU session (``intra_op_num_threads=1``: the server's
prediction threads are the parallelism). Conversion is optional and never trusted blindly:
:class:`~shipyard.serving.served.ServingModel` adopts the ``onnx`` input mode only when
:func:`same_answers` holds on the version's input example, and otherwise logs why and keeps
its usual modes. Anything that goes wrong here raises :class:`CompileError` with the reason.

**Tolerance.** The converters compute in float32 (inputs are cast to float32), so answers
cannot be bit-identical to scikit-learn's float64 arithmetic. :func:`same_answers` requires
labels (integer, string and boolean predictions) to be *exactly* equal, and probabilities
and float predictions (regression) to agree within ``atol=1e-5`` (plus ``rtol=1e-5`` for
regression values, whose scale is arbitrary). The check runs on the input example only: a
row very close to a tree threshold may still round differently in float32 — serve without
``--compile`` when that matters.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from shipyard.core.schema import Signature
from shipyard.serving.answers import ONNX_PREDICTIONS, ONNX_PROBABILITIES, difference

#: The compile targets ``--compile`` accepts.
TARGETS = ("onnx",)

#: Probabilities (and float predictions) agree within this absolute tolerance (float32 math).
ONNX_ATOL = ONNX_PROBABILITIES.atol
#: Relative tolerance for float predictions (regression), on top of :data:`ONNX_ATOL`.
ONNX_RTOL = ONNX_PREDICTIONS.rtol


class CompileError(Exception):
    """The model cannot be compiled; the message says why (logged, never raised to clients)."""


@dataclass(frozen=True)
class _Feed:
    """One graph input: its name, the signature columns it takes and their numpy dtype."""

    name: str
    columns: tuple[str, ...]
    dtype: Any


class OnnxModel:
    """A converted model on an onnxruntime session, fed the server's validated columns."""

    def __init__(
        self,
        session: Any,
        feeds: list[_Feed],
        *,
        source: str,
        classes: list[Any] | None,
        labels_from_proba: bool,
    ) -> None:
        self.session = session
        self.source = source  # "skl2onnx", "onnxmltools.lightgbm", ...
        self._feeds = feeds
        self._classes = np.asarray(classes) if classes is not None else None
        self._labels_from_proba = labels_from_proba and classes is not None
        outputs = session.get_outputs()
        self._outputs = [o.name for o in outputs[:2]]
        self.has_proba = len(outputs) > 1

    def __repr__(self) -> str:
        return f"OnnxModel({self.source}, inputs={[f.name for f in self._feeds]})"

    def feed(self, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The session's inputs from validated columns."""
        result: dict[str, np.ndarray] = {}
        for feed in self._feeds:
            if len(feed.columns) == 1:
                values = np.asarray(columns[feed.columns[0]])
                if feed.dtype is object:
                    values = values.astype(str).astype(object)
                result[feed.name] = values.astype(feed.dtype, copy=False).reshape(-1, 1)
            else:
                result[feed.name] = np.column_stack(
                    [np.asarray(columns[c], dtype=feed.dtype) for c in feed.columns]
                )
        return result

    def run(self, columns: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Predictions and probabilities (``None`` for a regressor), from one session run."""
        answers = self.session.run(self._outputs, self.feed(columns))
        probabilities = None
        if self.has_proba:
            raw = answers[1]
            if isinstance(raw, list):  # a ZipMap the converter added anyway
                keys = list(raw[0]) if raw else []
                raw = [[row[k] for k in keys] for row in raw]
            probabilities = np.asarray(raw, dtype=np.float64)
            if probabilities.ndim == 1:  # P(class 1) only
                probabilities = np.column_stack((1.0 - probabilities, probabilities))
        if self._labels_from_proba and probabilities is not None:
            assert self._classes is not None  # noqa: S101 - narrows the type; the caller guarantees it
            return self._classes[np.argmax(probabilities, axis=1)], probabilities
        predictions = np.asarray(answers[0])
        if predictions.ndim == 2 and predictions.shape[1] == 1:
            predictions = predictions.ravel()
        if predictions.dtype.kind == "f":
            predictions = predictions.astype(np.float64)
        return predictions, probabilities


def same_answers(
    got: tuple[np.ndarray, np.ndarray | None],
    expected: tuple[np.ndarray, np.ndarray | None],
) -> str | None:
    """``None`` when the ONNX answers match the original's, else what differs.

    Labels must be equal; probabilities and float predictions within the module tolerance.
    """
    (labels, proba), (want_labels, want_proba) = got, expected
    what = "predictions" if np.asarray(labels).dtype.kind in "fc" else "labels"
    return difference(labels, want_labels, ONNX_PREDICTIONS, what) or difference(
        proba, want_proba, ONNX_PROBABILITIES, "probabilities"
    )


def compile_onnx(native: Any, signature: Signature | None, classes: list[Any] | None) -> OnnxModel:
    """Convert ``native`` to ONNX in memory; :class:`CompileError` says why it cannot be."""
    if signature is None or not signature.inputs:
        raise CompileError("the version has no input signature to type the ONNX inputs")
    try:
        importlib.import_module("onnxruntime")
    except ImportError as exc:
        raise CompileError("onnxruntime is not installed (pip install 'shipyard[onnx]')") from exc
    module = type(native).__module__.split(".")[0]
    if module in ("lightgbm", "xgboost"):
        return _compile_boosting(native, module, signature, classes)
    if _is_sklearn(native):
        return _compile_sklearn(native, signature, classes)
    raise CompileError(
        f"{type(native).__qualname__} models cannot be converted (scikit-learn, LightGBM and "
        "XGBoost models can)"
    )


# -- scikit-learn -------------------------------------------------------------------------


def _is_sklearn(native: object) -> bool:
    try:
        from sklearn.base import BaseEstimator
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        return False
    return isinstance(native, BaseEstimator)


def _compile_sklearn(native: Any, signature: Signature, classes: list[Any] | None) -> OnnxModel:
    try:
        skl2onnx = importlib.import_module("skl2onnx")
        types = importlib.import_module("skl2onnx.common.data_types")
    except ImportError as exc:
        raise CompileError("skl2onnx is not installed (pip install skl2onnx)") from exc
    _patch_skl2onnx_tree_nodes()
    options = _no_zipmap(native)
    per_column: list[tuple[str, Any]] = []
    feeds: list[_Feed] = []
    for column in signature.inputs:
        kind, dtype = _column_type(column.dtype)
        tensor = {
            "float": types.FloatTensorType,
            "int": types.Int64TensorType,
            "string": types.StringTensorType,
        }[kind]
        per_column.append((column.name, tensor([None, 1])))
        feeds.append(_Feed(column.name, (column.name,), dtype))
    attempts: list[tuple[list[tuple[str, Any]], list[_Feed]]] = [(per_column, feeds)]
    names = tuple(c.name for c in signature.inputs)
    if all(f.dtype is not object for f in feeds):  # one 2-D float tensor, columns in order
        attempts.append(
            ([("X", types.FloatTensorType([None, len(names)]))], [_Feed("X", names, np.float32)])
        )
    reasons: list[str] = []
    for initial_types, layout in attempts:
        try:
            graph = skl2onnx.to_onnx(native, initial_types=initial_types, options=options)
        except Exception as exc:  # skl2onnx raises RuntimeError, its own exceptions, ...
            reasons.append(_first_line(exc))
            continue
        session = _session(graph)
        return OnnxModel(
            session, layout, source="skl2onnx", classes=classes, labels_from_proba=False
        )
    raise CompileError(f"skl2onnx cannot convert {type(native).__qualname__}: {reasons[-1]}")


def _patch_skl2onnx_tree_nodes() -> None:
    """Make skl2onnx 1.20's HistGradientBoosting converter work with current onnx.

    Its tree walk passes ``nodes_missing_value_tracks_true=False`` (a Python bool) for leaves,
    which onnx's ``make_attribute`` now refuses in an ``ints`` attribute ("Expected an int, got
    a boolean"), so no HistGradientBoosting model converts. The wrapper turns the flag into
    the 0 / 1 it means; nothing else changes, and the warm-up comparison checks the result.
    """
    try:
        module = importlib.import_module("skl2onnx.common.tree_ensemble")
    except ImportError:  # a layout this shim does not know: convert as is
        return
    original = getattr(module, "add_node", None)
    if original is None or getattr(original, "_shipyard_int_flags", False):
        return

    def add_node(*args: Any, **kwargs: Any) -> Any:
        flag = kwargs.get("nodes_missing_value_tracks_true")
        if isinstance(flag, (bool, np.bool_)):
            kwargs["nodes_missing_value_tracks_true"] = int(flag)
        return original(*args, **kwargs)

    add_node._shipyard_int_flags = True  # type: ignore[attr-defined]
    module.add_node = add_node  # type: ignore[attr-defined]


def _no_zipmap(native: Any) -> dict[int, dict[str, Any]]:
    """``{"zipmap": False}`` for the model and every classifier inside it."""
    from sklearn.base import is_classifier

    found = [native]
    with contextlib.suppress(Exception):  # a broken get_params: the model itself only
        found += [v for v in native.get_params(deep=True).values() if _is_sklearn(v)]
    return {id(m): {"zipmap": False} for m in found if m is native or is_classifier(m)}


def _column_type(dtype: str) -> tuple[str, Any]:
    """``(tensor kind, numpy dtype fed)`` for a signature dtype."""
    if dtype.startswith("float"):
        return "float", np.float32
    if dtype.startswith(("int", "uint")) or dtype == "bool":
        return "int", np.int64
    return "string", object


# -- LightGBM / XGBoost -------------------------------------------------------------------


def _compile_boosting(
    native: Any, library: str, signature: Signature, classes: list[Any] | None
) -> OnnxModel:
    numeric = [c for c in signature.inputs if c.is_numeric or c.dtype == "bool"]
    if len(numeric) != len(signature.inputs):
        odd = next(c for c in signature.inputs if c not in numeric)
        raise CompileError(
            f"column {odd.name!r} is {odd.dtype}: only numeric features are converted for "
            f"{library} models"
        )
    try:
        onnxmltools = importlib.import_module("onnxmltools")
        types = importlib.import_module("onnxmltools.convert.common.data_types")
    except ImportError as exc:
        raise CompileError("onnxmltools is not installed (pip install onnxmltools)") from exc
    names = [c.name for c in signature.inputs]
    order = _feature_order(native, library, names)
    initial_types = [("X", types.FloatTensorType([None, len(order)]))]
    try:
        if library == "lightgbm":
            graph = onnxmltools.convert_lightgbm(native, initial_types=initial_types, zipmap=False)
        else:
            graph = onnxmltools.convert_xgboost(native, initial_types=initial_types)
    except Exception as exc:  # converters raise RuntimeError, ValueError, AttributeError, ...
        raise CompileError(
            f"onnxmltools cannot convert {type(native).__qualname__}: {_first_line(exc)}"
        ) from exc
    session = _session(graph)
    return OnnxModel(
        session,
        [_Feed("X", tuple(order), np.float32)],
        source=f"onnxmltools.{library}",
        classes=classes,
        labels_from_proba=True,
    )


def _feature_order(native: Any, library: str, names: list[str]) -> list[str]:
    """The signature's columns in the order the model's features are numbered."""
    if library == "lightgbm":
        booster = native.booster_ if hasattr(native, "booster_") else native
        features = list(booster.feature_name())
    else:
        found = getattr(native, "feature_names_in_", None)
        if found is None:
            found = getattr(native, "feature_names", None)
        features = list(found) if found is not None else []
    features = [str(f) for f in features]
    if sorted(features) == sorted(names):
        return features
    if not features or len(features) == len(names):  # fitted on arrays: signature order
        return names
    raise CompileError(
        f"the model has {len(features)} features but the signature {len(names)} columns"
    )


# -- running ------------------------------------------------------------------------------


def _session(graph: Any) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    # errors only: onnxmltools' LightGBM graphs declare a fixed label shape, and onnxruntime
    # would warn about it on every batch
    options.log_severity_level = 3
    try:
        return onnxruntime.InferenceSession(
            graph.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime's pybind errors
        raise CompileError(
            f"onnxruntime cannot load the converted graph: {_first_line(exc)}"
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]

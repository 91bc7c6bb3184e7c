"""Do two answers agree? One comparison, with the tolerance named for each question asked.

Labels and integers must be equal; floats agree within a tolerance, NaN agreeing with NaN.
Each caller names why it compares:

- :data:`SAME_MODEL`: one model run two ways (an input mode against the checked path) —
  only floating-point reordering may differ;
- :data:`SHADOW`: a shadow's answer against the champion's (the agreement metric);
- :data:`ONNX_PREDICTIONS` and :data:`ONNX_PROBABILITIES`: a model converted to ONNX against
  the original (float32 arithmetic inside onnxruntime).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """How far apart two float answers may be: ``|a - b| <= atol + rtol * |b|``."""

    name: str
    rtol: float
    atol: float


SAME_MODEL = Tolerance("same model", rtol=1e-9, atol=1e-12)
SHADOW = Tolerance("shadow", rtol=1e-6, atol=1e-9)
ONNX_PREDICTIONS = Tolerance("onnx predictions", rtol=1e-5, atol=1e-5)
ONNX_PROBABILITIES = Tolerance("onnx probabilities", rtol=0.0, atol=1e-5)


def difference(
    got: np.ndarray | None, expected: np.ndarray | None, tolerance: Tolerance, what: str
) -> str | None:
    """``None`` when ``got`` agrees with ``expected``, else what differs (names ``what``)."""
    if got is None or expected is None:
        if got is None and expected is None:
            return None
        return f"{what} are missing" if got is None else f"unexpected {what}"
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        return f"{what} have shape {got.shape}, expected {expected.shape}"
    if got.dtype.kind in "fc" and expected.dtype.kind in "fc":
        expected = expected.astype(np.float64)
        if np.allclose(got, expected, rtol=tolerance.rtol, atol=tolerance.atol, equal_nan=True):
            return None
        worst = float(np.nanmax(np.abs(got - expected)))
        return f"{what} differ by up to {worst:.3g} (tolerance {tolerance.atol:g})"
    if got.dtype.kind in "fc" or expected.dtype.kind in "fc":  # float against integer labels
        got, expected = got.astype(object), expected.astype(object)
    differ = int(np.sum(np.asarray(got != expected)))
    return f"{differ} of {got.size} {what} differ" if differ else None


def agree(got: np.ndarray | None, expected: np.ndarray | None, tolerance: Tolerance) -> bool:
    """Whether ``got`` agrees with ``expected`` within ``tolerance``."""
    return difference(got, expected, tolerance, "answers") is None

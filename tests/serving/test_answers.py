"""One answer comparison: equal labels, floats within the tolerance named for the question."""

from __future__ import annotations

import numpy as np

from shipyard.serving.answers import (
    ONNX_PREDICTIONS,
    ONNX_PROBABILITIES,
    SAME_MODEL,
    SHADOW,
    agree,
    difference,
)


def test_labels_must_be_equal_and_floats_close_within_the_named_tolerance() -> None:
    labels = np.array([0, 1, 1])
    assert agree(labels, np.array([0.0, 1.0, 1.0]), SAME_MODEL)  # float and integer labels
    assert difference(labels, np.array([0, 0, 1]), SAME_MODEL, "labels") == "1 of 3 labels differ"
    floats = np.array([0.25, np.nan])
    assert agree(floats + 1e-7, floats, SHADOW)
    assert not agree(floats + 1e-7, floats, SAME_MODEL)
    assert agree(floats + 5e-6, floats, ONNX_PROBABILITIES)
    assert "differ by up to" in str(difference(floats + 1e-3, floats, ONNX_PREDICTIONS, "x"))


def test_shapes_and_missing_answers_are_differences() -> None:
    assert agree(None, None, SAME_MODEL)
    assert difference(None, np.zeros(2), SAME_MODEL, "probabilities") == (
        "probabilities are missing"
    )
    assert difference(np.zeros(2), None, SAME_MODEL, "probabilities") == (
        "unexpected probabilities"
    )
    assert "have shape (3,), expected (2,)" in str(
        difference(np.zeros(3), np.zeros(2), SAME_MODEL, "labels")
    )

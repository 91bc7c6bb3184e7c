"""Rows to warm a model up on when its version has no input example.

A served model picks its input mode by predicting a few rows every way it could and keeping
the cheapest way that answers like the registry's own path
(:meth:`~shipyard.serving.served.ServingModel.warm_up`). Those rows are the version's input
example; a version registered without one (an MLflow folder saved without
``input_example``, say) gets rows made by :func:`synthetic_rows` from what is known of its
columns instead:

- numbers spread evenly over the column's range: the signature's ``minimum`` / ``maximum``,
  else the reference profile's, else a small default range (``-1..1`` for floats, ``0..5``
  for integers); integer columns get whole numbers;
- text: the signature's categories, else the reference profile's most frequent values,
  else one placeholder value (a model that refuses unknown text then stays unwarmed);
- booleans alternate; dates step a day at a time from 2024-01-01;
- the last row holds a missing value in every column that may have one, so the input modes
  are checked on missing values too.

Each column is rotated by its position, so the columns do not rise together. The rows are
only used to compare the modes with each other, so what matters is that they are valid
input, not that they are realistic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from shipyard.core.schema import ColumnSpec, Signature

if TYPE_CHECKING:  # only read here: importing the statistics would import scipy.stats
    from shipyard.statistics.profile import ColumnProfile, DatasetProfile

#: How many rows :func:`synthetic_rows` makes.
ROWS = 16
#: The value of a text column nothing is known about.
PLACEHOLDER = "shipyard-warm-up"
_DEFAULT_RANGE = {"float": (-1.0, 1.0), "int": (0.0, 5.0), "uint": (0.0, 5.0)}


def synthetic_rows(
    signature: Signature | None, profile: DatasetProfile | None = None, rows: int = ROWS
) -> list[dict[str, Any]] | None:
    """``rows`` records (``[{"col": value}, ...]``) valid for ``signature``, or ``None``
    when there is no signature to make them from."""
    if signature is None or not signature.inputs:
        return None
    columns: dict[str, list[Any]] = {}
    for position, spec in enumerate(signature.inputs):
        seen = profile.columns.get(spec.name) if profile is not None else None
        values = _values(spec, seen, rows)
        shift = position % rows
        values = values[shift:] + values[:shift]
        if spec.nullable and rows > 1:
            values[-1] = None
        columns[spec.name] = values
    return [{name: values[i] for name, values in columns.items()} for i in range(rows)]


def _values(spec: ColumnSpec, seen: ColumnProfile | None, rows: int) -> list[Any]:
    if spec.is_numeric:
        return _numbers(spec, seen, rows)
    if spec.dtype == "bool":
        return [bool(i % 2) for i in range(rows)]
    if spec.dtype == "datetime":
        start = np.datetime64("2024-01-01T00:00:00")
        return [str(start + np.timedelta64(i, "D")) for i in range(rows)]
    choices = list(spec.categories or ())
    if not choices and seen is not None and seen.frequencies:
        ranked = sorted(seen.frequencies.items(), key=lambda item: -item[1])
        choices = [value for value, _ in ranked[:rows]]
    if not choices:
        choices = [PLACEHOLDER]
    return [choices[i % len(choices)] for i in range(rows)]


def _numbers(spec: ColumnSpec, seen: ColumnProfile | None, rows: int) -> list[Any]:
    kind = spec.dtype.rstrip("0123456789")  # float64 -> float, uint8 -> uint
    low, high = spec.minimum, spec.maximum
    if (low is None or high is None) and seen is not None:
        low, high = seen.minimum, seen.maximum
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        low, high = _DEFAULT_RANGE.get(kind, _DEFAULT_RANGE["float"])
    spread = np.linspace(float(low), float(high), rows)
    if kind not in ("int", "uint"):
        return [float(v) for v in spread]
    return [int(v) for v in np.round(spread)]

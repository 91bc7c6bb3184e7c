"""Expected business value of a model, computed from its predictions on a held-out set.

Definitions (settings from ``[value]``, see :class:`~shipyard.value.settings.ValueSettings`;
each evaluation row stands for one decision):

- **value of a row**: classification: the value of its confusion-matrix cell (positive class
  1; a probability is decided positive when ``>= threshold``); regression:
  ``gain_per_decision - cost_per_unit_error * |y - ŷ|``.
- ``value_per_decision`` = mean row value; ``gain_per_period`` = ``value_per_decision *
  decisions_per_period``; ``net_per_period`` = ``gain_per_period - running_cost_per_period``,
  the model's EBITDA contribution per period.
- Over the horizon: ``total_cost`` = ``one_off_cost + running_cost_per_period * horizon_periods``,
  ``total_gain`` = ``gain_per_period * horizon_periods``, and
  ``roi`` = ``(total_gain - total_cost) / total_cost``. With no cost at all (``total_cost == 0``)
  ``roi`` is ``+inf`` if ``total_gain > 0``, ``-inf`` if ``total_gain < 0``, ``0`` if both are 0.
- ``payback_periods`` = ``one_off_cost / net_per_period`` if ``net_per_period > 0``, else
  ``inf``: the one-off cost is never earned back (0 when there is no one-off cost).
- ``ebitda_low`` / ``ebitda_high``: the ``(1 - confidence) / 2`` and ``1 - (1 - confidence) / 2``
  percentiles of ``net_per_period`` over ``bootstrap`` resamples of the evaluation rows (with
  replacement, numpy Generator seeded with ``seed``: same inputs, same interval);
  ``ebitda_mid`` is the point estimate ``net_per_period``. The interval covers the noise of a
  finite evaluation set only, not uncertainty in volume or costs.
- ``uplift_per_period`` (only with a ``baseline``, the status quo's predictions such as
  ``baseline=0`` for "no model, always negative" or the previous version's): ``gain_per_period``
  minus the baseline's. ``roi`` is not incremental: it compares the model with doing nothing.

Stored metrics (:meth:`ValueReport.metrics`) are finite floats: ``roi`` and ``payback_periods``
are clipped to ``[-UNBOUNDED, UNBOUNDED]`` (``1e9``), so an unbounded ROI passes any
``roi >= x`` rule and a payback that never comes fails any ``payback_periods <= x`` rule.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from shipyard.core.exceptions import ConfigError, InvalidArgumentError
from shipyard.value.settings import ValueSettings

#: Stored value of an infinite ``roi`` or ``payback_periods`` (sign kept).
UNBOUNDED = 1e9

#: The metric names every report stores (``uplift_per_period`` joins them with a baseline).
METRIC_NAMES = (
    "value_per_decision",
    "gain_per_period",
    "net_per_period",
    "roi",
    "payback_periods",
    "ebitda_low",
    "ebitda_mid",
    "ebitda_high",
)

_FEW_DISTINCT = 4096  # up to this many distinct row values, resample counts per value
_CHUNK = 4_000_000  # row indices drawn per batch otherwise (~32 MB)
_ENCODE_HINT = "encode the positive class as 1 and others as 0: (y == 'churned').astype(int)"
_SCORES_HINT = "to threshold scores, pass probabilities of the positive class as proba="
_BASELINE_HINT = "pass the status quo's 0/1 decisions, e.g. baseline=0 for 'always negative'"

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ValueReport:
    """A model's expected business value; the module docstring defines every field."""

    currency: str
    period: str
    horizon_periods: int
    rows: int
    confidence: float
    value_per_decision: float
    gain_per_period: float
    net_per_period: float
    total_gain: float
    total_cost: float
    roi: float
    payback_periods: float
    ebitda_low: float
    ebitda_mid: float
    ebitda_high: float
    uplift_per_period: float | None = None

    def metrics(self) -> dict[str, float]:
        """Finite float metrics to store on a model version and use in gate rules."""
        out = {name: float(getattr(self, name)) for name in METRIC_NAMES}
        for name in ("roi", "payback_periods"):
            out[name] = min(UNBOUNDED, max(-UNBOUNDED, out[name]))
        if self.uplift_per_period is not None:
            out["uplift_per_period"] = float(self.uplift_per_period)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Every field, ready for JSON: an infinite ``roi`` or ``payback_periods`` is None."""
        return {
            key: None if isinstance(item, float) and math.isinf(item) else item
            for key, item in asdict(self).items()
        }

    def summary(self) -> str:
        """One readable line: EBITDA per period with its interval, ROI, payback, uplift."""
        per = f"{self.currency}/{self.period}"
        parts = [
            f"EBITDA {_money(self.net_per_period, signed=True)} {per} "
            f"({self.confidence * 100:g}% interval "
            f"{_money(self.ebitda_low)} \u2026 {_money(self.ebitda_high)})"
        ]
        horizon = f"{self.horizon_periods} {_plural(self.period, self.horizon_periods)}"
        roi = f"{self.roi:.1f}\u00d7 over {horizon}"
        if math.isinf(self.roi):
            roi = f"{'-' if self.roi < 0 else ''}unbounded over {horizon} (no cost)"
        parts.append(f"ROI {roi}")
        payback = self.payback_periods
        if math.isinf(payback):
            parts.append("no payback (net per period is not positive)")
        else:
            parts.append(f"payback {payback:.1f} {_plural(self.period, payback)}")
        if self.uplift_per_period is not None:
            parts.append(f"uplift {_money(self.uplift_per_period, signed=True)} {per} vs baseline")
        return ", ".join(parts)


def business_value(
    settings: ValueSettings,
    y_true: Any,
    y_pred: Any = None,
    *,
    proba: Any = None,
    baseline: Any = None,
) -> ValueReport:
    """Expected business value of a model's predictions on a held-out set.

    ``y_true`` holds the true outcomes (0/1 or booleans for classification). Pass the model's
    hard predictions as ``y_pred`` or, for classification, probabilities of the positive
    class as ``proba`` (thresholded at ``[value.classification] threshold``). ``baseline`` is
    the status quo's predictions, or one number for all rows (e.g. ``0``); it adds
    ``uplift_per_period``. Raises :class:`InvalidArgumentError` for unusable inputs.
    """
    truth = _column(settings, "y_true", y_true, None, _ENCODE_HINT)
    values = _row_values(settings, truth, _predictions(settings, truth.size, y_pred, proba))

    value_per_decision = float(values.mean())
    gain = value_per_decision * settings.decisions_per_period
    net = gain - settings.running_cost_per_period
    total_cost = settings.one_off_cost + settings.running_cost_per_period * settings.horizon_periods
    total_gain = gain * settings.horizon_periods
    if total_cost > 0:
        roi = (total_gain - total_cost) / total_cost
    else:
        roi = math.copysign(math.inf, total_gain) if total_gain != 0 else 0.0
    payback = settings.one_off_cost / net if net > 0 else math.inf

    means = _bootstrap_means(values, settings.bootstrap, np.random.default_rng(settings.seed))
    nets = means * settings.decisions_per_period - settings.running_cost_per_period
    tail = (1.0 - settings.confidence) / 2.0
    low, high = np.quantile(nets, [tail, 1.0 - tail])

    uplift = None
    if baseline is not None:  # one number stands for the same decision on every row
        status_quo = np.full(truth.shape, baseline) if np.ndim(baseline) == 0 else baseline
        status_quo = _column(settings, "baseline", status_quo, truth.size, _BASELINE_HINT)
        baseline_value = float(_row_values(settings, truth, status_quo).mean())
        uplift = gain - baseline_value * settings.decisions_per_period
    return ValueReport(
        currency=settings.currency,
        period=settings.period,
        horizon_periods=settings.horizon_periods,
        rows=int(truth.size),
        confidence=settings.confidence,
        value_per_decision=value_per_decision,
        gain_per_period=gain,
        net_per_period=net,
        total_gain=total_gain,
        total_cost=total_cost,
        roi=roi,
        payback_periods=payback,
        ebitda_low=float(low),
        ebitda_mid=net,
        ebitda_high=float(high),
        uplift_per_period=uplift,
    )


def _row_values(settings: ValueSettings, truth: Floats, predicted: Floats) -> Floats:
    """The value of each row's decision (see the module docstring)."""
    if settings.classification is not None:
        cls = settings.classification
        cells = [cls.true_negative, cls.false_positive, cls.false_negative, cls.true_positive]
        return np.array(cells)[2 * truth.astype(np.intp) + predicted.astype(np.intp)]
    if settings.regression is not None:
        reg = settings.regression
        return reg.gain_per_decision - reg.cost_per_unit_error * np.abs(truth - predicted)
    raise ConfigError("[value] needs [value.classification] or [value.regression]; add one")


def _predictions(settings: ValueSettings, rows: int, y_pred: Any, proba: Any) -> Floats:
    """The model's decisions: hard predictions, or thresholded probabilities."""
    if proba is None:
        if y_pred is None:
            raise InvalidArgumentError("no predictions given; pass y_pred, or proba to threshold")
        return _column(settings, "y_pred", y_pred, rows, _SCORES_HINT)
    if settings.classification is None or y_pred is not None:
        raise InvalidArgumentError(
            "proba is for classification value models only and replaces y_pred, got "
            f"{'y_pred and proba' if y_pred is not None else 'proba with [value.regression]'}; "
            "pass either y_pred or proba"
        )
    probabilities = _vector("proba", proba, rows)
    if probabilities.min() < 0.0 or probabilities.max() > 1.0:
        raise InvalidArgumentError(
            "proba must hold probabilities between 0 and 1, got values from "
            f"{probabilities.min():g} to {probabilities.max():g}; pass predict_proba output, "
            "not raw scores or logits"
        )
    return (probabilities >= settings.classification.threshold).astype(np.float64)


def _column(settings: ValueSettings, name: str, data: Any, rows: int | None, hint: str) -> Floats:
    """``data`` as a float column, holding only 0 and 1 for a classification value model."""
    if settings.classification is None:
        return _vector(name, data, rows)
    return _binary(name, _vector(name, data, rows, hint), hint)


def _vector(name: str, data: Any, rows: int | None = None, hint: str = "") -> Floats:
    """``data`` as one finite float column of ``rows`` values (any length if None)."""
    try:
        column = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(
            f"{name} must hold numbers, got {type(data).__name__} that cannot be read as "
            f"numbers ({exc}); {hint or 'convert it to a numeric array'}"
        ) from exc
    column = column[:, 0] if column.ndim == 2 and column.shape[1] == 1 else column
    if column.ndim != 1:
        fix = "predict_proba(X)[:, 1], the positive class" if name == "proba" else "one column"
        raise InvalidArgumentError(f"{name} must be 1-D, got shape {column.shape}; pass {fix}")
    if rows is None and column.size == 0:
        raise InvalidArgumentError(f"{name} is empty; business value needs evaluation rows")
    if rows is not None and column.size != rows:
        raise InvalidArgumentError(
            f"{name} has {column.size} rows but y_true has {rows}; pass values for the same rows"
        )
    bad = np.flatnonzero(~np.isfinite(column))
    if bad.size:
        raise InvalidArgumentError(
            f"{name} holds {bad.size} NaN or infinite values (first at row {bad[0]}); "
            "drop or impute those rows before computing business value"
        )
    return column


def _binary(name: str, column: Floats, hint: str) -> Floats:
    """``column`` if it holds only 0 and 1; else an error that says how to encode it."""
    wrong = (column != 0.0) & (column != 1.0)
    if wrong.any():
        found = ", ".join(f"{v:g}" for v in np.unique(column[wrong])[:5])
        raise InvalidArgumentError(
            f"{name} must hold 0 or 1 (positive class = 1) or booleans for a classification "
            f"value model, got {found}; {hint}"
        )
    return column


def _bootstrap_means(values: Floats, resamples: int, rng: np.random.Generator) -> Floats:
    """Means of ``resamples`` resamples of ``values`` drawn with replacement, vectorised.

    With few distinct values (always for classification: four cells), drawing how often each
    value is picked from a multinomial is the same distribution as drawing rows, at a
    fraction of the cost; otherwise rows are drawn in batches of index matrices.
    """
    rows = values.size
    distinct, counts = np.unique(values, return_counts=True)
    if distinct.size <= _FEW_DISTINCT:
        picks = rng.multinomial(rows, counts / rows, size=resamples)
        return np.asarray(picks @ distinct / rows, dtype=np.float64)
    means = np.empty(resamples)
    batch = max(1, _CHUNK // rows)
    for start in range(0, resamples, batch):
        stop = min(resamples, start + batch)
        means[start:stop] = values[rng.integers(0, rows, size=(stop - start, rows))].mean(axis=1)
    return means


def _money(amount: float, *, signed: bool = False) -> str:
    """``41,200`` (or ``+41,200``); cents only for amounts below 100."""
    amount = amount if amount != 0 else 0.0  # no "-0"
    decimals = 0 if abs(amount) >= 100 else 2
    return f"{amount:{'+' if signed else ''},.{decimals}f}"


def _plural(unit: str, count: float) -> str:
    """``month`` -> ``months`` unless ``count`` is exactly 1."""
    return unit if count == 1 else f"{unit}s"

"""The value model a data scientist declares: the ``[value]`` table of shipyard.toml.

Example::

    [value]
    currency = "EUR"
    period = "month"               # label only
    horizon_periods = 12           # ROI and horizon totals are computed over this many periods
    decisions_per_period = 20000   # predictions / decisions per period (volume)
    one_off_cost = 60000           # build + deploy
    running_cost_per_period = 3000 # infra + people per period
    confidence = 0.9               # bootstrap interval (0.9 -> 5th..95th percentile)
    bootstrap = 1000               # resamples
    seed = 0

    [value.classification]         # value per decision in each confusion-matrix cell
    true_positive = 150.0
    false_positive = -25.0
    threshold = 0.5                # P(positive) >= threshold counts as a positive decision

Exactly one of ``[value.classification]`` and ``[value.regression]`` must be given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from shipyard.core.exceptions import ConfigError


class _Section(BaseModel):
    # inf and nan are valid TOML floats but never a valid amount of money.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ClassificationValue(_Section):
    """Gain (positive) or cost (negative) of one decision in each confusion-matrix cell.

    The positive class is 1. ``threshold`` turns probabilities of the positive class into
    decisions: a row is decided positive when its probability is ``>= threshold``.
    """

    true_positive: float = 0.0
    false_positive: float = 0.0
    false_negative: float = 0.0
    true_negative: float = 0.0
    threshold: float = Field(0.5, ge=0.0, le=1.0)


class RegressionValue(_Section):
    """Value of one regression decision: ``gain_per_decision - cost_per_unit_error * |y - ŷ|``."""

    cost_per_unit_error: float = Field(ge=0.0)
    gain_per_decision: float = 0.0


class ValueSettings(_Section):
    """The ``[value]`` table: volume, costs, horizon and the per-decision value model."""

    currency: str = Field(min_length=1)
    period: str = Field("month", min_length=1)
    horizon_periods: int = Field(12, ge=1)
    decisions_per_period: float = Field(ge=0.0)
    one_off_cost: float = Field(0.0, ge=0.0)
    running_cost_per_period: float = Field(0.0, ge=0.0)
    confidence: float = Field(0.9, gt=0.0, lt=1.0)
    bootstrap: int = Field(1000, ge=100)
    seed: int = Field(0, ge=0)
    classification: ClassificationValue | None = None
    regression: RegressionValue | None = None

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> ValueSettings:
        given = [
            name
            for name, section in (
                ("classification", self.classification),
                ("regression", self.regression),
            )
            if section is not None
        ]
        if len(given) != 1:
            got = "both" if given else "neither"
            raise ValueError(
                "[value] needs exactly one of [value.classification] or [value.regression], "
                f"got {got}; keep the table that matches the model's task"
            )
        return self

    @property
    def kind(self) -> Literal["classification", "regression"]:
        """Which value model is declared."""
        return "classification" if self.classification is not None else "regression"

    @classmethod
    def from_table(cls, table: Mapping[str, Any], source: str = "shipyard.toml") -> ValueSettings:
        """Validate a parsed ``[value]`` table; any problem is a :class:`ConfigError`."""
        try:
            return cls.model_validate(dict(table))
        except ValidationError as exc:
            problems = "; ".join(_describe(err) for err in exc.errors())
            raise ConfigError(
                f"{source} has an invalid [value] table: {problems}; fix it and retry"
            ) from exc


def _describe(err: ErrorDetails) -> str:
    """One pydantic error as ``value.field: what was expected (got what arrived)``."""
    where = ".".join(["value", *(str(part) for part in err["loc"])])
    if err["type"] in ("missing", "value_error"):  # the input is the whole table: not useful
        return f"{where}: {err['msg']}"
    return f"{where}: {err['msg']} (got {err['input']!r})"

"""Business value: hand-computed reports, the bootstrap interval, edge cases and clear errors."""

from __future__ import annotations

import math
import re
import tomllib
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shipyard.core.exceptions import ConfigError, InvalidArgumentError
from shipyard.registry.gates import Rule
from shipyard.value import UNBOUNDED, ValueReport, ValueSettings, business_value
from shipyard.value import model as value_model

METRIC_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Ten decisions: TP, FN, FP, TN, TP and five TN -> values 100, -50, -10, 0, 100, 0 x5.
Y_TRUE = [1, 1, 0, 0, 1, 0, 0, 0, 0, 0]
Y_PRED = [1, 0, 1, 0, 1, 0, 0, 0, 0, 0]


def classification(**overrides: Any) -> ValueSettings:
    """Settings with a classification value model; ``overrides`` replace [value] keys."""
    table: dict[str, Any] = {
        "currency": "EUR",
        "horizon_periods": 10,
        "decisions_per_period": 1000,
        "one_off_cost": 1000,
        "running_cost_per_period": 100,
        "classification": {
            "true_positive": 100.0,
            "false_positive": -10.0,
            "false_negative": -50.0,
            "true_negative": 0.0,
        },
    }
    return ValueSettings.from_table(table | overrides)


def regression(**overrides: Any) -> ValueSettings:
    """Settings with a regression value model; ``overrides`` replace [value] keys."""
    table: dict[str, Any] = {
        "currency": "USD",
        "period": "week",
        "horizon_periods": 4,
        "decisions_per_period": 100,
        "one_off_cost": 1600,
        "running_cost_per_period": 25,
        "regression": {"cost_per_unit_error": 2.0, "gain_per_decision": 10.0},
    }
    return ValueSettings.from_table(table | overrides)


def noisy_regression(rows: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.normal(size=rows)
    return y, y + rng.normal(size=rows)


# -- hand-computed reports ---------------------------------------------------------------


def test_classification_by_hand() -> None:
    report = business_value(classification(), Y_TRUE, Y_PRED)
    assert report.value_per_decision == pytest.approx(14.0)  # (100 - 50 - 10 + 100) / 10
    assert report.gain_per_period == pytest.approx(14_000.0)
    assert report.net_per_period == pytest.approx(13_900.0)
    assert report.total_cost == pytest.approx(2_000.0)  # 1000 + 100 * 10
    assert report.total_gain == pytest.approx(140_000.0)
    assert report.roi == pytest.approx(69.0)  # (140000 - 2000) / 2000
    assert report.payback_periods == pytest.approx(1000 / 13_900)
    assert report.ebitda_mid == report.net_per_period
    assert report.rows == 10
    assert report.uplift_per_period is None
    assert "uplift_per_period" not in report.metrics()


def test_regression_by_hand() -> None:
    # |errors| 0, 1, 2, 0.5 -> values 10, 8, 6, 9 -> mean 8.25
    report = business_value(regression(), [1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 1.0, 4.5])
    assert report.value_per_decision == pytest.approx(8.25)
    assert report.gain_per_period == pytest.approx(825.0)
    assert report.net_per_period == pytest.approx(800.0)
    assert report.total_cost == pytest.approx(1_700.0)  # 1600 + 25 * 4
    assert report.roi == pytest.approx((3_300.0 - 1_700.0) / 1_700.0)
    assert report.payback_periods == pytest.approx(2.0)


def test_gain_per_decision_defaults_to_zero() -> None:
    settings = regression(regression={"cost_per_unit_error": 1.0})
    report = business_value(settings, [0.0, 0.0], [1.0, 3.0])
    assert report.value_per_decision == pytest.approx(-2.0)
    assert report.payback_periods == math.inf


def test_metrics_are_flat_finite_and_named_for_gate_rules() -> None:
    metrics = business_value(classification(), Y_TRUE, Y_PRED, baseline=0).metrics()
    assert list(metrics) == [*value_model.METRIC_NAMES, "uplift_per_period"]
    for name, number in metrics.items():
        assert METRIC_NAME.fullmatch(name)
        assert type(number) is float
        assert math.isfinite(number)
    assert Rule.parse("roi >= 1.5").evaluate(metrics, lambda alias: None).passed


def test_summary_reads_as_one_line() -> None:
    line = business_value(classification(), Y_TRUE, Y_PRED, baseline=0).summary()
    assert line.startswith("EBITDA +13,900 EUR/month (90% interval ")
    assert "ROI 69.0\u00d7 over 10 months, payback 0.1 months" in line
    assert line.endswith("uplift +29,000 EUR/month vs baseline")
    assert "\n" not in line


def test_to_dict_holds_every_field() -> None:
    report = business_value(regression(), [1.0, 2.0], [1.0, 2.0])
    data = report.to_dict()
    assert data["currency"] == "USD"
    assert data["period"] == "week"
    assert data["total_cost"] == pytest.approx(1_700.0)
    assert ValueReport(**data) == report


# -- inputs ------------------------------------------------------------------------------


def test_probabilities_are_thresholded() -> None:
    proba = [0.9, 0.2, 0.5, 0.49, 0.7, 0.1, 0.0, 0.3, 0.1, 0.2]  # >= 0.5 -> same as Y_PRED
    by_proba = business_value(classification(), Y_TRUE, proba=proba)
    assert by_proba == business_value(classification(), Y_TRUE, Y_PRED)
    strict = classification()
    strict = strict.model_copy(
        update={"classification": strict.classification.model_copy(update={"threshold": 0.8})}
    )
    # at 0.8 only the first row is decided positive: TP, FN, TN, TN, FN, TN x5 -> 0
    assert business_value(strict, Y_TRUE, proba=proba).value_per_decision == pytest.approx(0.0)


def test_booleans_and_pandas_are_accepted() -> None:
    truth = pd.Series([bool(v) for v in Y_TRUE])
    pred = np.array(Y_PRED, dtype=bool).reshape(-1, 1)
    report = business_value(classification(), truth, pred)
    assert report.value_per_decision == pytest.approx(14.0)


def test_baseline_uplift() -> None:
    # "no model": every decision negative -> three FN (-50) -> -15 per decision
    report = business_value(classification(), Y_TRUE, Y_PRED, baseline=0)
    assert report.uplift_per_period == pytest.approx(14_000.0 - (-15_000.0))
    as_array = business_value(classification(), Y_TRUE, Y_PRED, baseline=np.zeros(10))
    assert as_array.uplift_per_period == report.uplift_per_period
    # regression baseline 2.5 everywhere: |errors| 1.5, 0.5, 0.5, 1.5 -> mean value 8
    report = business_value(regression(), [1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 1.0, 4.5], baseline=2.5)
    assert report.uplift_per_period == pytest.approx(825.0 - 800.0)


@pytest.mark.parametrize(
    ("y_true", "kwargs", "message"),
    [
        ([0, 1, 2], {"y_pred": [0, 1, 1]}, r"got 2; encode the positive class as 1"),
        (["yes", "no"], {"y_pred": [0, 1]}, r"y_true must hold numbers.*\(y == 'churned'\)"),
        ([0, 1], {"y_pred": [0.2, 0.9]}, r"y_pred must hold 0 or 1.*proba="),
        ([0, 1, 1], {"y_pred": [0, 1]}, r"y_pred has 2 rows but y_true has 3"),
        ([0, 1], {"proba": [0.1, 0.2, 0.3]}, r"proba has 3 rows but y_true has 2"),
        ([0, float("nan")], {"y_pred": [0, 1]}, r"y_true holds 1 NaN.*first at row 1"),
        ([0, 1], {"proba": [0.1, float("nan")]}, r"proba holds 1 NaN"),
        ([0, 1], {"proba": [0.1, 1.5]}, r"between 0 and 1, got values from 0.1 to 1.5"),
        (
            [0, 1],
            {"proba": [[0.9, 0.1], [0.2, 0.8]]},
            r"shape \(2, 2\).*predict_proba\(X\)\[:, 1\]",
        ),
        ([0, 1], {"y_pred": [0, 1], "proba": [0.1, 0.9]}, r"got y_pred and proba"),
        ([0, 1], {}, r"no predictions given"),
        ([], {"y_pred": []}, r"y_true is empty"),
        ([0, 1], {"y_pred": [0, 1], "baseline": [0, 3]}, r"baseline must hold 0 or 1"),
        ([0, 1], {"y_pred": [0, 1], "baseline": [0, 1, 1]}, r"baseline has 3 rows"),
    ],
)
def test_classification_inputs_fail_clearly(
    y_true: Any, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        business_value(classification(), y_true, **kwargs)


def test_regression_inputs_fail_clearly() -> None:
    with pytest.raises(InvalidArgumentError, match=r"proba with \[value.regression\]"):
        business_value(regression(), [1.0, 2.0], proba=[0.1, 0.2])
    with pytest.raises(InvalidArgumentError, match="no predictions given"):
        business_value(regression(), [1.0, 2.0])
    with pytest.raises(InvalidArgumentError, match=r"y_pred holds 1 NaN or infinite"):
        business_value(regression(), [1.0, 2.0], [1.0, math.inf])


# -- the bootstrap interval --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_interval_holds_the_estimate_and_narrows_with_rows(kind: str) -> None:
    def report(rows: int) -> ValueReport:
        if kind == "regression":
            return business_value(regression(), *noisy_regression(rows))
        rng = np.random.default_rng(2)
        truth = rng.random(rows) < 0.3
        return business_value(
            classification(), truth, proba=np.clip(truth * 0.4 + rng.random(rows) * 0.6, 0, 1)
        )

    small, large = report(200), report(20_000)
    for result in (small, large):
        assert result.ebitda_low < result.ebitda_mid < result.ebitda_high
    assert large.ebitda_high - large.ebitda_low < (small.ebitda_high - small.ebitda_low) / 5


def test_interval_is_deterministic_for_a_seed() -> None:
    y, pred = noisy_regression(500)
    first = business_value(regression(), y, pred)
    assert business_value(regression(), y, pred) == first
    other = business_value(regression(seed=7), y, pred)
    assert other.ebitda_mid == first.ebitda_mid
    assert (other.ebitda_low, other.ebitda_high) != (first.ebitda_low, first.ebitda_high)


def test_interval_follows_confidence() -> None:
    y, pred = noisy_regression(2_000)
    narrow = business_value(regression(confidence=0.5), y, pred)
    wide = business_value(regression(confidence=0.99), y, pred)
    assert wide.ebitda_low < narrow.ebitda_low < narrow.ebitda_high < wide.ebitda_high


def test_counting_and_drawing_rows_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    y, pred = noisy_regression(1_000)  # 1000 distinct values: resampled by counting
    counted = business_value(regression(bootstrap=4000), y, pred)
    monkeypatch.setattr(value_model, "_FEW_DISTINCT", 0)  # now by drawing row indices
    drawn = business_value(regression(bootstrap=4000), y, pred)
    width = counted.ebitda_high - counted.ebitda_low
    assert drawn.ebitda_high - drawn.ebitda_low == pytest.approx(width, rel=0.1)
    assert drawn.ebitda_low == pytest.approx(counted.ebitda_low, abs=0.1 * width)


def test_large_evaluation_sets_run() -> None:
    y, pred = noisy_regression(100_000)  # all distinct: batches of drawn indices
    report = business_value(regression(bootstrap=1000), y, pred)
    assert report.ebitda_low < report.ebitda_high
    truth = y > 0
    report = business_value(classification(bootstrap=1000), truth, proba=1 / (1 + np.exp(-pred)))
    assert report.ebitda_low < report.ebitda_high


# -- edge cases: metrics stay finite -------------------------------------------------------


def test_no_cost_and_a_gain_is_an_unbounded_roi() -> None:
    report = business_value(
        classification(one_off_cost=0, running_cost_per_period=0), Y_TRUE, Y_PRED
    )
    assert report.roi == math.inf
    assert report.payback_periods == 0.0
    assert report.metrics()["roi"] == UNBOUNDED
    assert report.to_dict()["roi"] is None
    assert "ROI unbounded over 10 months (no cost)" in report.summary()


def test_no_cost_and_no_gain_is_a_zero_roi() -> None:
    report = business_value(
        classification(one_off_cost=0, running_cost_per_period=0), [0, 0], [0, 0]
    )
    assert report.roi == 0.0
    assert report.payback_periods == math.inf
    assert report.metrics()["payback_periods"] == UNBOUNDED


def test_no_cost_and_a_loss_is_a_negative_unbounded_roi() -> None:
    settings = classification(one_off_cost=0, running_cost_per_period=0)
    report = business_value(settings, [0, 0], [1, 1])
    assert report.roi == -math.inf
    assert report.metrics()["roi"] == -UNBOUNDED
    assert not Rule.parse("roi >= 1.5").evaluate(report.metrics(), lambda alias: None).passed
    assert "ROI -unbounded" in report.summary()


def test_negative_net_never_pays_back() -> None:
    report = business_value(classification(running_cost_per_period=50_000), Y_TRUE, Y_PRED)
    assert report.net_per_period == pytest.approx(-36_000.0)
    assert report.roi == pytest.approx((140_000 - 501_000) / 501_000)
    assert report.payback_periods == math.inf
    metrics = report.metrics()
    assert all(math.isfinite(number) for number in metrics.values())
    assert metrics["payback_periods"] == UNBOUNDED
    assert report.to_dict()["payback_periods"] is None
    assert report.summary().startswith("EBITDA -36,000 EUR/month")
    assert "no payback" in report.summary()
    rule = Rule.parse("payback_periods <= 6")
    assert not rule.evaluate(metrics, lambda alias: None).passed


def test_zero_volume_is_worth_nothing() -> None:
    report = business_value(classification(decisions_per_period=0), Y_TRUE, Y_PRED)
    assert report.gain_per_period == 0.0
    assert report.ebitda_low == report.ebitda_high == pytest.approx(-100.0)


# -- the [value] table ---------------------------------------------------------------------


def test_the_documented_table_parses() -> None:
    text = """
[value]
currency = "EUR"
period = "month"
horizon_periods = 12
decisions_per_period = 20000
one_off_cost = 60000
running_cost_per_period = 3000
confidence = 0.9
bootstrap = 1000
seed = 0

[value.classification]
true_positive = 150.0
false_positive = -25.0
false_negative = 0.0
true_negative = 0.0
threshold = 0.5

"""
    settings = ValueSettings.from_table(tomllib.loads(text)["value"])
    assert settings.kind == "classification"
    assert settings.classification is not None
    assert settings.classification.true_positive == 150.0
    assert regression().kind == "regression"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"regression": {"cost_per_unit_error": 1.0}}, r"exactly one of .* got both"),
        ({"classification": None}, r"exactly one of .* got neither"),
        ({"confidence": 1.0}, r"value\.confidence: Input should be less than 1 \(got 1\.0\)"),
        ({"confidence": 0}, r"value\.confidence: Input should be greater than 0"),
        ({"horizon_periods": 0}, r"value\.horizon_periods: .*greater than or equal to 1"),
        ({"decisions_per_period": -1}, r"value\.decisions_per_period: .*greater than or equal"),
        ({"one_off_cost": -5}, r"value\.one_off_cost: .*greater than or equal to 0"),
        ({"running_cost_per_period": -5}, r"value\.running_cost_per_period"),
        ({"bootstrap": 50}, r"value\.bootstrap: .*greater than or equal to 100 \(got 50\)"),
        ({"one_off_cost": math.inf}, r"value\.one_off_cost: Input should be a finite number"),
        ({"curency": "EUR"}, r"value\.curency: Extra inputs are not permitted"),
        ({"currency": None}, r"value\.currency"),
        ({"classification": {"threshold": 1.5}}, r"value\.classification\.threshold"),
        ({"classification": {"true_positiv": 1.0}}, r"value\.classification\.true_positiv"),
    ],
)
def test_bad_tables_are_config_errors(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        classification(**overrides)
    assert "invalid [value] table" in str(caught.value)
    assert "fix it and retry" in str(caught.value)


def test_missing_required_keys_are_named() -> None:
    with pytest.raises(ConfigError, match=r"value\.currency: Field required.*value\.decisions"):
        ValueSettings.from_table({"regression": {"cost_per_unit_error": 1.0}})
    with pytest.raises(
        ConfigError, match=r"value\.regression\.cost_per_unit_error: Field required"
    ):
        regression(regression={"gain_per_decision": 1.0})

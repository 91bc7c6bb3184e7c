"""Unit tests: call the steps of pipelines/example.py on small frames (no project needed)."""

from __future__ import annotations

import pandas as pd
import pytest
from pipelines.example import add_features, churn_by_segment, report


@pytest.fixture
def customers() -> pd.DataFrame:
    """Four customers: two on monthly contracts (one churned), two on yearly ones."""
    return pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "tenure_months": [2, 30, 0, 48],
            "total_charges": [160.0, 1800.0, None, 2400.0],
            "contract": ["month-to-month", "month-to-month", "one-year", "one-year"],
            "churned": [1, 0, 0, 0],
        }
    )


def test_add_features_derives_spend_and_new_customers(customers: pd.DataFrame) -> None:
    features = add_features(customers)
    assert features["average_monthly_spend"].tolist()[:2] == [80.0, 60.0]
    assert features["new_customer"].tolist() == [True, False, True, False]
    assert "average_monthly_spend" not in customers.columns  # the input is left alone


def test_churn_by_segment_orders_segments_by_churn(customers: pd.DataFrame) -> None:
    summary = churn_by_segment(add_features(customers), segment="contract")
    assert summary["segment"].tolist() == ["month-to-month", "one-year"]
    assert summary["churn_rate"].tolist() == [0.5, 0.0]
    assert summary["customers"].tolist() == [2, 2]


def test_churn_by_segment_refuses_an_unknown_column(customers: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="segment must be a column"):
        churn_by_segment(add_features(customers), segment="planet")


def test_report_lists_every_segment(customers: pd.DataFrame) -> None:
    text = report(churn_by_segment(add_features(customers)))
    assert text.splitlines() == [
        "Churn by segment",
        "month-to-month: 50.0% churn over 2 customers",
        "one-year: 0.0% churn over 2 customers",
    ]

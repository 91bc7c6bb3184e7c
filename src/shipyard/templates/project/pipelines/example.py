"""An example pipeline written in Python: a churn summary per customer segment.

Each ``@step`` names what it reads and writes. ``raw/…`` and ``processed/…`` items are
DataFrames stored as dataset versions; ``artifacts/…`` items are any Python object. Every
parameter that is not an input has a default, which shipyard.toml can override::

    [pipelines.example.params.churn_by_segment]
    segment = "internet_service"

Run it with ``shipyard run example`` once ``raw/customers`` exists (``shipyard run train``
writes it). Steps are plain functions: tests/unit/test_steps.py calls them directly.
"""

from __future__ import annotations

import pandas as pd

from shipyard import step


@step(inputs={"customers": "raw/customers"}, outputs="processed/customer_features")
def add_features(customers: pd.DataFrame, new_customer_months: int = 6) -> pd.DataFrame:
    """Add derived columns: average monthly spend and whether the customer is new."""
    features = customers.copy()
    months = features["tenure_months"].clip(lower=1)
    features["average_monthly_spend"] = (features["total_charges"] / months).round(2)
    features["new_customer"] = features["tenure_months"] < new_customer_months
    return features


@step(inputs={"features": "processed/customer_features"}, outputs="processed/churn_by_segment")
def churn_by_segment(features: pd.DataFrame, segment: str = "contract") -> pd.DataFrame:
    """Customers, churn rate and average spend for each value of the ``segment`` column."""
    if segment not in features.columns:
        raise ValueError(f"segment must be a column of the features, got {segment!r}")
    summary = (
        features.groupby(segment, dropna=False)
        .agg(
            customers=("churned", "size"),
            churn_rate=("churned", "mean"),
            average_monthly_spend=("average_monthly_spend", "mean"),
        )
        .reset_index()
        .rename(columns={segment: "segment"})
    )
    summary["segment"] = summary["segment"].astype("string").fillna("unknown")
    return summary.sort_values("churn_rate", ascending=False).reset_index(drop=True)


@step(inputs={"segments": "processed/churn_by_segment"}, outputs="artifacts/segment_report")
def report(segments: pd.DataFrame) -> str:
    """A short text report: the segments ordered from most to least churn."""
    lines = [
        f"{row.segment}: {row.churn_rate:.1%} churn over {row.customers} customers"
        for row in segments.itertuples()
    ]
    return "\n".join(["Churn by segment", *lines])

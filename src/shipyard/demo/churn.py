"""A synthetic telecom customer-churn table (the template's data/customers.csv comes from it).

:func:`make_churn` draws customers with numpy (no downloads): tenure, contract, charges,
usage, support calls, payment method and so on, with missing values where real exports
have them. ``churned`` comes from a logistic model of those features plus noise, with a
few interactions a linear model cannot see, so a gradient-boosted model beats a logistic
regression and both land in the ROC AUC range of real churn projects (about 0.80-0.88).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

#: Numeric input columns.
NUMERIC = [
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "support_calls",
    "data_usage_gb",
    "age",
]
#: Categorical (text) input columns.
CATEGORICAL = ["contract", "internet_service", "payment_method", "region", "paperless_billing"]
#: Every model input, in order.
FEATURES = NUMERIC + CATEGORICAL
#: The label: 1 when the customer left within the quarter.
TARGET = "churned"

_CONTRACTS = ["month-to-month", "one-year", "two-year"]
_INTERNET = ["fiber optic", "DSL", "none"]
_PAYMENTS = ["electronic check", "mailed check", "bank transfer", "credit card"]
_REGIONS = ["north", "south", "east", "west"]


def make_churn(n_rows: int = 5000, seed: int = 0) -> pd.DataFrame:
    """``n_rows`` synthetic customers with a ``churned`` label, the same for the same ``seed``.

    Columns: ``customer_id``, :data:`FEATURES` and :data:`TARGET`. About 3% of
    ``total_charges`` and a few percent of ``payment_method`` and ``region`` are missing.
    """
    if n_rows < 10:
        raise ValueError(f"n_rows must be at least 10 but got {n_rows}")
    rng = np.random.default_rng(seed)
    n = n_rows
    contract = rng.choice(_CONTRACTS, size=n, p=[0.55, 0.24, 0.21])
    # Longer contracts go with longer tenure; everyone is capped at six years.
    scale = np.select([contract == "one-year", contract == "two-year"], [30.0, 48.0], 14.0)
    tenure = np.clip(np.round(rng.exponential(scale)), 0, 72).astype(np.int64)
    internet = rng.choice(_INTERNET, size=n, p=[0.44, 0.34, 0.22])
    base = np.select([internet == "fiber optic", internet == "DSL"], [80.0, 55.0], 22.0)
    monthly = np.round(base + rng.normal(0, 9, n).clip(-20, 35), 2).clip(18.0, 120.0)
    total = np.round(monthly * tenure * rng.normal(1.0, 0.04, n), 2)
    usage = np.where(internet == "none", 0.0, np.round(rng.lognormal(np.log(base / 4), 0.6, n), 1))
    age = np.clip(np.round(rng.normal(46, 15, n)), 18, 90).astype(np.int64)
    support = rng.poisson(np.where(internet == "fiber optic", 1.6, 1.0)).astype(np.int64)
    payment = rng.choice(_PAYMENTS, size=n, p=[0.34, 0.22, 0.22, 0.22])
    region = rng.choice(_REGIONS, size=n, p=[0.3, 0.25, 0.25, 0.2])
    paperless = np.where(rng.random(n) < 0.6, "yes", "no")

    m2m = contract == "month-to-month"
    logit = (
        -1.35
        + np.select([m2m, contract == "one-year"], [0.9, -0.4], -1.6)
        - 1.6 * (tenure >= 12) * m2m  # the first year decides
        - 0.5 * np.log1p(tenure / 6.0)
        + 0.045 * (monthly - 65.0) * m2m  # price matters to those free to leave
        + np.select([support >= 4, support == 3], [1.8, 0.5], 0.0)  # frustrated customers
        + 1.0 * ((internet == "fiber optic") & (payment == "electronic check"))
        + 0.3 * (paperless == "yes")
        + 1.0 * ((age >= 65) & m2m)
        + 1.4 * ((tenure < 6) & (monthly > 80))  # new customers with a big bill
        + 1.2 * ((usage < 3) & (internet != "none"))  # paying for a service they do not use
        + 0.2 * (region == "south")
        + rng.normal(0.0, 0.6, n)  # what the data does not show
    )
    churned = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)

    frame = pd.DataFrame(
        {
            "customer_id": [f"C{seed % 1000:03d}-{i:06d}" for i in range(n)],
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "total_charges": total,
            "support_calls": support,
            "data_usage_gb": usage,
            "age": age,
            "contract": contract,
            "internet_service": internet,
            "payment_method": payment,
            "region": region,
            "paperless_billing": paperless,
            TARGET: churned,
        }
    )
    # Exports lose values: billing totals not yet computed, unknown payment method or region.
    frame["total_charges"] = frame["total_charges"].mask(rng.random(n) < 0.03)
    frame["payment_method"] = frame["payment_method"].mask(rng.random(n) < 0.02)
    frame["region"] = frame["region"].mask(rng.random(n) < 0.01)
    return frame


def make_next_month(n_rows: int = 2000, seed: int = 1) -> pd.DataFrame:
    """A drifted "next month" of customers: a price rise and a wave of new fiber customers.

    Monthly charges go up by 15 %, fiber optic rises from 44 % to 70 % of customers, and a
    marketing campaign brings many new month-to-month customers (short tenure), so the
    model's inputs and its predictions move; the ``churned`` outcome follows the same rules
    as :func:`make_churn`.
    """
    pool = make_churn(n_rows * 4, seed=seed)
    rng = np.random.default_rng(seed + 1000)
    weights = np.where(pool["internet_service"] == "fiber optic", 3.0, 1.0)
    weights *= np.where((pool["contract"] == "month-to-month") & (pool["tenure_months"] < 12),
                        3.0, 1.0)  # fmt: skip
    chosen = rng.choice(len(pool), size=n_rows, replace=False, p=weights / weights.sum())
    frame = pool.iloc[np.sort(chosen)].reset_index(drop=True)
    frame["monthly_charges"] = (frame["monthly_charges"] * 1.15).round(2)
    frame["total_charges"] = (frame["total_charges"] * 1.15).round(2)
    frame["customer_id"] = [f"N{seed % 1000:03d}-{i:06d}" for i in range(n_rows)]
    return frame


def split(
    df: pd.DataFrame, seed: int = 0, test_size: float = 0.25
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and test frames, stratified on :data:`TARGET` (same ``seed``, same split)."""
    train, test = train_test_split(df, test_size=test_size, random_state=seed, stratify=df[TARGET])
    return train.reset_index(drop=True), test.reset_index(drop=True)

"""Helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipyard import Settings
from shipyard.statistics.drift import ColumnDrift, DriftReport
from shipyard.statistics.quality import QualityReport
from shipyard.statistics.report import MonitoringReport, ReportWindow


def make_settings(root: Path, database_url: str, toml: str = "") -> Settings:
    """Write shipyard.toml into ``root`` and load settings pointing at ``database_url``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "shipyard.toml").write_text(toml or '[project]\nname = "test"\n', encoding="utf-8")
    return Settings.load(
        root, environ={"SHIPYARD_DATABASE_URL": database_url, "SHIPYARD_USER": "tester"}
    )


GATES_TOML = """
[project]
name = "gated"

[gates.prototype]
rules = ["roc_auc >= 0.70"]

[gates.production]
rules = ["roc_auc >= 0.80", "roc_auc >= production.roc_auc - 0.01"]
require_tags = {business_value = "approved"}
"""


def make_frame(n_rows: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """A small tabular problem: numeric and categorical features, with missing values."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(0, 72, n_rows),
            "charges": rng.normal(70, 20, n_rows).round(2),
            "plan": rng.choice(["basic", "plus", "pro"], n_rows),
        }
    )
    frame.loc[rng.random(n_rows) < 0.05, "charges"] = np.nan
    logit = (
        -0.04 * frame["tenure"] + 0.02 * frame["charges"].fillna(70) + (frame["plan"] == "basic")
    )
    target = (rng.random(n_rows) < 1 / (1 + np.exp(-(logit - 0.5)))).astype(int).to_numpy()
    return frame, target


def monitoring_report(**changes: Any) -> MonitoringReport:
    """A typed report of ``churn:1`` over 50 rows: ``tenure`` did not drift, no quality problem,
    no ground truth; ``changes`` replace fields (``performance=Performance(...)``...)."""
    steady = ColumnDrift("tenure", "numeric", "ks", 0.5, 0.05, False, "raw", None)
    report = MonitoringReport(
        model="churn",
        version=1,
        computed_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        window=ReportWindow(),
        reference="profile of churn:1",
        current="test rows",
        reference_rows=100,
        current_rows=50,
        drift=DriftReport((steady,), 0.0, False, 0.5, 100, 50),
        prediction_drift=None,
        quality=QualityReport(50, (), 0, (), (), (), 0, 0.0),
        performance=None,
        psi={},
        settings={},
    )
    return replace(report, **changes)

"""Helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from shipyard import Settings


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

"""Acceptance tests: is the newest trained model good enough? Set the bar here.

Run after 'shipyard run train': they read the newest version of the model from the
registry and check the metrics its pipeline recorded on the held-out test set.
"""

from __future__ import annotations

import pytest

from shipyard import NotFoundError, Project
from shipyard.registry import VersionInfo

#: The registered model under test (``register_as`` in shipyard.toml).
MODEL = "churn"
#: The least ROC AUC acceptable on the test set.
MIN_ROC_AUC = 0.75
#: The least return on investment over the value horizon (see [value] in shipyard.toml).
MIN_ROI = 1.5


@pytest.fixture(scope="module")
def newest(project: Project) -> VersionInfo:
    """The newest version of the model."""
    try:
        return project.registry.get(MODEL)
    except NotFoundError:
        pytest.fail(f"no {MODEL!r} model is registered yet; run 'shipyard run train' first")


def test_roc_auc_is_high_enough(newest: VersionInfo) -> None:
    assert newest.metrics["roc_auc"] >= MIN_ROC_AUC, f"{newest.ref}: {newest.metrics}"


def test_model_pays_for_itself(newest: VersionInfo) -> None:
    assert "roi" in newest.metrics, "no business value recorded: keep the [value] table"
    assert newest.metrics["roi"] >= MIN_ROI, f"{newest.ref}: {newest.metrics}"

"""Integration tests: the model at the prototype stage loads and predicts on real rows.

The HTTP serving test (the same rows through 'shipyard serve') comes with model serving.
"""

from __future__ import annotations

import pandas as pd
import pytest

from shipyard import LoadedModel, NotFoundError, Project
from shipyard.datasets import read_source

#: The model and stage under test.
REF = "churn@prototype"
#: Columns of the source that are not model inputs.
NOT_FEATURES = ["customer_id", "churned"]


@pytest.fixture(scope="module")
def model(project: Project) -> LoadedModel:
    """The model at the prototype stage."""
    try:
        return project.registry.load(REF)
    except NotFoundError:
        pytest.fail(f"nothing holds {REF} yet; run 'shipyard run train' (its gate promotes it)")


def test_predicts_on_the_input_example(project: Project, model: LoadedModel) -> None:
    example = pd.DataFrame(project.registry.get(REF).input_example or [])
    assert len(example) > 0
    predicted = model.predict(example)
    assert len(predicted) == len(example)


def test_predicts_probabilities_on_source_rows(project: Project, model: LoadedModel) -> None:
    rows = read_source(project.sources["customers"], project.root).head(50)
    proba = model.predict_proba(rows.drop(columns=NOT_FEATURES))[:, 1]
    assert len(proba) == len(rows)
    assert ((proba >= 0.0) & (proba <= 1.0)).all()

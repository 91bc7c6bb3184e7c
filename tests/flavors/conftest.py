"""Fixtures of the flavor tests: the corpus of MLflow-written model folders, built once."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.flavors.mlflow_corpus import BUILDERS, MlflowModel


@pytest.fixture(scope="session")
def mlflow_corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, MlflowModel]:
    """Every model of :mod:`tests.flavors.mlflow_corpus`, saved by MLflow, by name."""
    root: Path = tmp_path_factory.mktemp("mlflow-corpus")
    built = [build(root) for build in BUILDERS]
    return {model.name: model for model in built}

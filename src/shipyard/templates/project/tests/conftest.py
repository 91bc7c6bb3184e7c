"""Fixtures for this project's tests: the project itself, opened once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard import Project

#: The project folder (the one holding shipyard.toml).
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def project() -> Iterator[Project]:
    """The project, with its registry and datasets (closed after the session)."""
    with Project(ROOT) as opened:
        yield opened

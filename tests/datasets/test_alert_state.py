"""The alert state store on SQLite and PostgreSQL: one claim per change of state."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shipyard.datasets.alert_state import AlertStates
from shipyard.store import Database


@pytest.fixture
def states(database_url: str) -> Iterator[AlertStates]:
    """An alert state store on a fresh, migrated database of each backend."""
    opened = Database.open(database_url)
    try:
        yield AlertStates(opened)
    finally:
        opened.dispose()


def test_a_change_of_state_is_claimed_once(states: AlertStates) -> None:
    assert states.active("drift", "churn:1") is False
    assert states.claim("drift", "churn:1", False, None) is False  # nothing to clear
    assert states.claim("drift", "churn:1", True, 0.4) is True
    assert states.claim("drift", "churn:1", True, 0.5) is False  # already active
    assert states.active("drift", "churn:1") is True
    assert states.active("drift", "churn:2") is False  # another subject, its own state
    assert states.claim("drift", "churn:1", False, 0.1) is True
    assert states.claim("drift", "churn:1", False, 0.1) is False
    assert states.active("drift", "churn:1") is False
    assert states.claim("drift", "churn:1", True, 0.6) is True  # fires again
